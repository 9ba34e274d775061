"""Structured-config schemas for every config group, registered in Hydra's ConfigStore."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import MISSING, OmegaConf

from parity.errors import ConfigError

BATCH = "batch"  # the symbol that marks the batch axis in an input's shape


# What one job does. Functional API: "verify+bench" is a valid member name, so `mode=verify+bench` is
# checked at compose time like the others.
Mode = Enum("Mode", {"verify": "verify", "golden": "golden", "bench": "bench", "verify+bench": "verify+bench"},
            type=str)


class Distribution(str, Enum):
    """How an input's values are drawn."""

    normal = "normal"  # mean, std
    uniform = "uniform"  # [low, high)
    randint = "randint"  # integers in [low, high)
    image = "image"  # uint8 pixels in [0, 255] scaled to [0, 1], then (x - mean) / std per channel
    sparse = "sparse"  # normal(mean, std) at a `density` fraction of positions, zero elsewhere (BEV pillars)


class Localize(str, Enum):
    """ONNX-vs-ONNX localisation: `all` marks every intermediate tensor of the graph as an output."""

    none = "none"
    all = "all"


class Framework(str, Enum):
    """The framework a model is written in: it builds the model, hashes its weights and runs the reference."""

    torch = "torch"
    keras = "keras"  # Keras 3 on the TensorFlow backend (the `tf` extra)


class OutputKind(str, Enum):
    """What an output holds; logits and probabilities turn on the classification metrics."""

    tensor = "tensor"
    logits = "logits"
    probabilities = "probabilities"


class Check(str, Enum):
    """Which error statistic must hold against the tolerance (Polygraphy's check_error_stat)."""

    elementwise = "elementwise"  # every element: |d| <= atol + rtol * |ref|
    max = "max"  # max |d| <= atol, or max rel <= rtol
    mean = "mean"  # mean |d| <= atol, or mean rel <= rtol
    median = "median"  # median |d| <= atol, or median rel <= rtol
    l2_rel = "l2_rel"  # ||d||_2 / ||golden||_2 <= rtol (atol unused): reduced-precision variants


@dataclass
class InputSpec:
    """One model input: name, shape with the symbol `batch` on its batch axis, dtype, values."""

    name: str = MISSING
    shape: list[Any] = MISSING
    dtype: str = "float32"
    distribution: Distribution = Distribution.normal
    mean: float = 0.0
    std: float = 1.0
    low: float = 0.0
    high: float = 1.0
    # image: per-channel normalisation after scaling pixels to [0, 1] (ImageNet's by default)
    channel_mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    channel_std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    channel_axis: Optional[int] = None  # image: None = right after the batch axis (NCHW); -1 for NHWC
    # sparse: fraction of non-empty positions; a position is one cell across all channels (axis after batch)
    density: float = 0.1
    seed: Optional[int] = None  # None: derived from the input set's seed and the input's position


@dataclass
class OutputSpec:
    """One model output, in the order the model returns them."""

    name: str = MISSING
    kind: OutputKind = OutputKind.tensor
    batch_axis: Optional[int] = 0  # None: the output has no batch axis (same for every batch size)


@dataclass
class ModelConfig:
    """A model: a builder called under a fixed seed, and its declared inputs and outputs."""

    name: str = MISSING
    framework: Framework = Framework.torch  # what the builder returns: torch.nn.Module, or keras.Model
    seed: int = 0
    builder: dict[str, Any] = MISSING  # {_target_: dotted.path.to.builder, **kwargs} -> the model
    inputs: list[InputSpec] = MISSING
    outputs: list[OutputSpec] = MISSING
    # free-form values the rest of the model config interpolates, e.g. shape: [batch, 64, "${model.params.spatial}"]
    params: dict[str, Any] = field(default_factory=dict)
    # module paths (named_modules() names) whose outputs can be compared layer by layer, in forward order
    probes: list[str] = field(default_factory=list)


@dataclass
class ExporterConfig:
    """A torch -> ONNX exporter."""

    _target_: str = MISSING
    name: str = MISSING
    opset: Optional[int] = None  # None: the exporter's default
    dynamic_batch: bool = True  # False: re-export for every batch size
    constant_folding: bool = True
    optimize: bool = True  # dynamo only: run onnxscript's graph optimiser
    external_data: bool = True  # dynamo only: weights beside the .onnx file


@dataclass
class BackendConfig:
    """A runtime that executes the model (torch eager) or its ONNX artifact."""

    _target_: str = MISSING
    name: str = MISSING


@dataclass
class TorchBackendConfig(BackendConfig):
    """Eager torch."""

    device: str = "cpu"
    num_threads: Optional[int] = None


@dataclass
class ProviderConfig:
    """One ONNX Runtime execution provider and its options."""

    name: str = MISSING
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OrtBackendConfig(BackendConfig):
    """ONNX Runtime with an ordered list of execution providers."""

    providers: list[ProviderConfig] = field(default_factory=lambda: [ProviderConfig(name="CPUExecutionProvider")])
    graph_optimization_level: str = "all"  # disable_all | basic | extended | all
    intra_op_num_threads: int = 0  # 0: ORT's default
    inter_op_num_threads: int = 0
    execution_mode: str = "sequential"  # sequential | parallel


@dataclass
class TensorRTBackendConfig(BackendConfig):
    """TensorRT through Polygraphy."""

    fp16: bool = False
    tf32: bool = True
    workspace_mib: int = 4096
    engine_cache_dir: str = "~/.cache/parity/tensorrt"
    use_cache: bool = True
    device_id: int = 0


@dataclass
class KerasBackendConfig(BackendConfig):
    """Keras / TensorFlow eager on the CPU: the Keras model itself, or its SavedModel's serving signature."""

    signature: str = "keras"  # keras: call the Keras model | serving: export a SavedModel, reload, call `serve`
    device: str = "/CPU:0"


@dataclass
class OpenVINOBackendConfig(BackendConfig):
    """OpenVINO runtime compiling the ONNX artifact for a device."""

    device: str = "CPU"
    inference_precision: Optional[str] = None  # None: the device's default (bf16 on CPUs with AMX/AVX512-BF16)
    performance_hint: str = "LATENCY"  # LATENCY | THROUGHPUT | CUMULATIVE_THROUGHPUT
    num_threads: int = 0  # 0: OpenVINO's default (INFERENCE_NUM_THREADS)
    properties: dict[str, Any] = field(default_factory=dict)  # any other compile property, passed as given


@dataclass
class TransformConfig:
    """A post-export step on the ONNX artifact (quantization, fp16); `none` leaves it as exported."""

    _target_: str = MISSING
    name: str = MISSING


@dataclass
class QuantizeTransformConfig(TransformConfig):
    """ONNX Runtime INT8 quantization: dynamic (weights only ahead of time) or static (QDQ, calibrated)."""

    per_channel: bool = False
    reduce_range: bool = False
    weight_type: str = "qint8"  # qint8 | quint8
    activation_type: str = "quint8"  # static only: qint8 | quint8
    calibrate_method: str = "minmax"  # static only: minmax | entropy | percentile
    calibration_samples: Optional[int] = None  # static only: None = every sample of the input set
    op_types: Optional[list[str]] = None  # None: every op type the quantizer supports
    preprocess: bool = True  # run onnxruntime's quant_pre_process (shape inference + optimisation) first


@dataclass
class Float16TransformConfig(TransformConfig):
    """fp16 conversion of the ONNX graph (onnxruntime.transformers.float16)."""

    keep_io_types: bool = True  # inputs and outputs stay float32, so goldens compare as they are
    op_block_list: Optional[list[str]] = None  # None: onnxruntime's default list of ops kept in float32


@dataclass
class OutputTolerance:
    """Per-output override; unset fields inherit the tolerance option's defaults."""

    atol: Optional[float] = None
    rtol: Optional[float] = None
    check: Optional[Check] = None


@dataclass
class ToleranceConfig:
    """How close a candidate must be to the golden."""

    name: str = MISSING
    atol: float = 1e-4
    rtol: float = 1e-3
    check: Check = Check.elementwise
    # output name -> OutputTolerance fields; a plain dict so `+tolerance.per_output.NAME.atol=X` works
    # on the command line (checked against OutputTolerance in validate())
    per_output: dict[str, Any] = field(default_factory=dict)
    # classification outputs only; None: reported, not part of the verdict
    min_top1_agreement: Optional[float] = None  # fraction in [0, 1]
    max_prob_diff_pp: Optional[float] = None  # percentage points


@dataclass
class NumericsConfig:
    """Numerics switches (seed 003). None leaves the framework's / backend's own setting in force."""

    name: str = MISSING
    tf32_matmul: Optional[bool] = None  # torch.backends.cuda.matmul.allow_tf32
    tf32_cudnn: Optional[bool] = None  # torch.backends.cudnn.allow_tf32
    cudnn_deterministic: Optional[bool] = None  # torch.backends.cudnn.deterministic
    cudnn_benchmark: Optional[bool] = None  # torch.backends.cudnn.benchmark
    ort_graph_optimization_level: Optional[str] = None  # overrides the ORT backends' level: disable_all | ... | all
    export_constant_folding: Optional[bool] = None  # overrides the exporter's constant_folding
    trt_tf32: Optional[bool] = None  # TensorRT builder TF32 flag (tensorrt backend)
    openvino_precision: Optional[str] = None  # OpenVINO inference precision hint (f32 for strict)


@dataclass
class InputsConfig:
    """The input set stored with the golden: how many samples, which seed, which batch sizes."""

    name: str = "default"
    num_samples: int = 4
    seed: int = 0
    batch_sizes: Optional[list[int]] = None  # None: one batch of all num_samples


@dataclass
class GoldenConfig:
    """Where goldens live and whether mode=golden may replace one."""

    root: str = "golden"  # relative paths resolve against the directory parity was started in
    overwrite: bool = False


@dataclass
class ReportConfig:
    """Outputs of a job: the stdout table and report.json."""

    json: bool = True
    filename: str = "report.json"
    table_format: str = "github"
    print_table: bool = True
    # keep each batch size's backend outputs as candidates_b<N>.npz: a sweep builds its pairwise matrix from them
    save_outputs: bool = True


@dataclass
class BenchConfig:
    """Latency benchmark settings (mode=bench or mode=verify+bench)."""

    batch_sizes: Optional[list[int]] = None  # None: the verify batch sizes; inputs are generated, any size works
    warmup_runs: int = 10  # untimed runs first ...
    warmup_seconds: float = 0.0  # ... and at least this long
    runs: int = 100  # then at least this many timed runs ...
    min_seconds: float = 1.0  # ... and at least this long ...
    max_runs: int = 100_000  # ... but never more than this many ...
    max_seconds: float = 120.0  # ... nor longer than this per batch size
    include_transfers: bool = True  # device backends: time host<->device copies too (the report says which)
    unstable_p99_ratio: float = 2.0  # flag a batch size unstable when p99 / median exceeds this ...
    unstable_cv: float = 0.15  # ... or the coefficient of variation does
    seed: int = 0  # benchmark inputs are generated from the model's declared inputs with this seed
    plot: bool = True  # latency.png (log-log, median with p95 band) beside the report


@dataclass
class ChecksConfig:
    """Extra checks of a verify job."""

    probes: bool = False  # compare the model's declared probe modules layer by layer (torch hooks vs ONNX outputs)
    repeats: int = 1  # > 1: run the backend that many times on the same inputs and report run-to-run differences
    localize_chunk: int = 256  # localize=all: intermediate tensors marked per run (bounds memory)


@dataclass
class ParityConfig:
    """The top-level config; group options are typed by their own base_* schemas."""

    model: Any = MISSING
    exporter: Any = MISSING
    backend: Any = MISSING
    tolerance: Any = MISSING
    inputs: Any = MISSING
    numerics: Any = MISSING
    transform: Any = MISSING
    mode: Mode = Mode.verify
    localize: Localize = Localize.none
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    golden: GoldenConfig = field(default_factory=GoldenConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


def register_configs() -> None:
    """Register the schemas; YAML options extend them with `defaults: [base_<name>, _self_]`."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=ParityConfig)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="exporter", name="base_exporter", node=ExporterConfig)
    cs.store(group="backend", name="base_backend", node=BackendConfig)
    cs.store(group="backend", name="base_torch_backend", node=TorchBackendConfig)
    cs.store(group="backend", name="base_ort_backend", node=OrtBackendConfig)
    cs.store(group="backend", name="base_tensorrt_backend", node=TensorRTBackendConfig)
    cs.store(group="backend", name="base_keras_backend", node=KerasBackendConfig)
    cs.store(group="backend", name="base_openvino_backend", node=OpenVINOBackendConfig)
    cs.store(group="transform", name="base_transform", node=TransformConfig)
    cs.store(group="transform", name="base_quantize_transform", node=QuantizeTransformConfig)
    cs.store(group="transform", name="base_float16_transform", node=Float16TransformConfig)
    cs.store(group="tolerance", name="base_tolerance", node=ToleranceConfig)
    cs.store(group="inputs", name="base_inputs", node=InputsConfig)
    cs.store(group="numerics", name="base_numerics", node=NumericsConfig)


_DTYPES = {"float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool"}  # what npz can hold


def validate(cfg: Any) -> None:
    """Checks that a schema cannot express; raises ConfigError with one line."""
    model = cfg.model
    if "_target_" not in model.builder:
        raise ConfigError(f"model.builder needs a _target_ (model '{model.name}')")
    names = [i.name for i in model.inputs]
    if len(set(names)) != len(names):
        raise ConfigError(f"model.inputs has duplicate names: {names}")
    for spec in model.inputs:
        shape = list(spec.shape)
        if shape.count(BATCH) != 1:
            raise ConfigError(f"input '{spec.name}': shape {shape} must contain '{BATCH}' exactly once")
        for dim in shape:
            if dim != BATCH and not (isinstance(dim, int) and dim > 0):
                raise ConfigError(f"input '{spec.name}': shape {shape} has a bad dimension {dim!r}")
        if spec.dtype not in _DTYPES:
            raise ConfigError(f"input '{spec.name}': unknown dtype '{spec.dtype}' (one of {sorted(_DTYPES)})")
    outs = [o.name for o in model.outputs]
    if not outs or len(set(outs)) != len(outs):
        raise ConfigError(f"model.outputs must be non-empty with unique names: {outs}")
    unknown = set(cfg.tolerance.per_output) - set(outs) - set(model.probes)
    if unknown:
        raise ConfigError(f"tolerance.per_output names unknown outputs {sorted(unknown)} "
                          f"(model outputs: {outs}, probes: {list(model.probes)})")
    for name in list(cfg.tolerance.per_output):
        try:
            typed = OmegaConf.merge(OmegaConf.structured(OutputTolerance), cfg.tolerance.per_output[name])
        except Exception as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"tolerance.per_output.{name}: {first}") from None
        cfg.tolerance.per_output[name] = typed
    for name in ("atol", "rtol"):
        if getattr(cfg.tolerance, name) < 0:
            raise ConfigError(f"tolerance.{name} must be >= 0, got {getattr(cfg.tolerance, name)}")
    for name, override in cfg.tolerance.per_output.items():
        for key in ("atol", "rtol"):
            if override.get(key) is not None and override.get(key) < 0:
                raise ConfigError(f"tolerance.per_output.{name}.{key} must be >= 0")
    if cfg.checks.repeats < 1:
        raise ConfigError(f"checks.repeats must be >= 1, got {cfg.checks.repeats}")
    if cfg.checks.localize_chunk < 1:
        raise ConfigError(f"checks.localize_chunk must be >= 1, got {cfg.checks.localize_chunk}")
    if cfg.checks.probes and framework_name(model) != "torch":
        raise ConfigError(f"checks.probes needs a torch model (forward hooks); model '{model.name}' is "
                          f"{framework_name(model)}")
    if cfg.checks.probes and not cfg.model.probes:
        raise ConfigError(f"checks.probes=true but model '{cfg.model.name}' declares no probes (model.probes)")
    bench = cfg.bench
    for key in ("runs", "max_runs"):
        if getattr(bench, key) < 1:
            raise ConfigError(f"bench.{key} must be >= 1, got {getattr(bench, key)}")
    if bench.warmup_runs < 0 or bench.min_seconds < 0 or bench.warmup_seconds < 0 or bench.max_seconds <= 0:
        raise ConfigError("bench warm-up counts and durations must be >= 0 (max_seconds > 0)")
    if any(b < 1 for b in bench.batch_sizes or []):
        raise ConfigError(f"bench.batch_sizes must be >= 1, got {list(bench.batch_sizes)}")
    n = cfg.inputs.num_samples
    if n < 1:
        raise ConfigError(f"inputs.num_samples must be >= 1, got {n}")
    for b in cfg.inputs.batch_sizes or []:
        if b < 1:
            raise ConfigError(f"inputs.batch_sizes must be >= 1, got {b}")
        if b > n:
            raise ConfigError(f"batch size {b} exceeds the {n} samples of input set '{cfg.inputs.name}'")


def framework_name(model_cfg: Any) -> str:
    """The `framework` a model config declares, as a plain string ("torch" when the key is absent)."""
    value = model_cfg.get("framework", "torch")
    return str(getattr(value, "value", value))


def batch_sizes(cfg: Any) -> list[int]:
    """The batch sizes a verify job runs, in the order given."""
    return list(cfg.inputs.batch_sizes) if cfg.inputs.batch_sizes else [int(cfg.inputs.num_samples)]
