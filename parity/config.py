"""Structured-config schemas of the top-level config and the model, tolerance, inputs and numerics groups.

Exporters, backends and transforms define their own schemas beside their classes (parity.plugins).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Optional, TypeVar, get_type_hints

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from parity.compare import Check, OutputKind  # the comparison's own vocabulary, used by these schemas
from parity.errors import ConfigError

T = TypeVar("T")

BATCH = "batch"  # the symbol that marks the batch axis in an input's shape


# What one job does. Functional API: "verify+bench" is a valid member name, so `mode=verify+bench` is
# checked at compose time like the others.
# import / export: a golden from / to other tools' files (README "Exchange goldens with other programs");
# compare_preprocess: two image preprocessing pipelines on the same images (README "Check on your own data").
Mode = Enum("Mode", {"verify": "verify", "golden": "golden", "bench": "bench", "verify+bench": "verify+bench",
                     "import": "import", "export": "export", "compare_preprocess": "compare_preprocess"}, type=str)


class Distribution(str, Enum):
    """How an input's values are drawn."""

    normal = "normal"  # mean, std
    uniform = "uniform"  # [low, high)
    randint = "randint"  # integers in [low, high)
    image = "image"  # uint8 pixels in [0, 255] scaled to [0, 1], then (x - mean) / std per channel
    sparse = "sparse"  # normal(mean, std) at a `density` fraction of positions, zero elsewhere (BEV pillars)


class Localize(str, Enum):
    """Where a FAIL comes from. `all` (runtime): every intermediate ONNX tensor, the backend against ONNX Runtime
    CPU on the same artifact. `source` (conversion): the source model's module outputs against the artifact's
    tensors, and the first module whose own nodes compute something else. `auto`: whichever the FAIL's fault
    class calls for (nothing when the job does not FAIL)."""

    none = "none"
    all = "all"
    source = "source"
    auto = "auto"


class Framework(str, Enum):
    """The framework a model is written in: it builds the model, hashes its weights and runs the reference."""

    torch = "torch"
    keras = "keras"  # Keras 3 on the TensorFlow backend (the `tf` extra)
    onnx = "onnx"  # an ONNX file alone (model.path): inputs and outputs read from its graph


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
    """A model: a builder called under a fixed seed (or, `framework: onnx`, an ONNX file), and its declared inputs
    and outputs."""

    name: str = MISSING
    framework: Framework = Framework.torch  # what the builder returns: torch.nn.Module, or keras.Model
    seed: int = 0
    builder: dict[str, Any] = field(default_factory=dict)  # {_target_: dotted.path.to.builder, **kwargs} -> the model
    # torch / keras: every input and output, declared. onnx: empty = read from the graph (names, element types,
    # shapes; the first symbolic dimension is the batch axis), or declared in full to replace what the graph says
    inputs: list[InputSpec] = field(default_factory=list)
    outputs: list[OutputSpec] = field(default_factory=list)
    # framework onnx: the .onnx file (relative: to the directory parity starts in); its SHA-256 with its external
    # data is the model's identity in the golden (weights_sha256). framework keras: a TensorFlow SavedModel
    # directory that is the model itself (no builder), called through `signature`
    path: Optional[str] = None
    signature: str = "serving_default"  # keras SavedModel: the signature that runs it
    # framework onnx, inputs / outputs read from the graph: name -> InputSpec / OutputSpec fields to set, e.g.
    # input_overrides: {tokens: {shape: [batch, 128], distribution: randint, high: 30000}}
    input_overrides: dict[str, Any] = field(default_factory=dict)
    output_overrides: dict[str, Any] = field(default_factory=dict)
    # framework onnx: the backend that makes its goldens and runs its reference check, as a backend config
    # ({_target_: ..., name: ..., ...}); empty: ONNX Runtime CPU with every graph optimisation disabled
    reference_backend: dict[str, Any] = field(default_factory=dict)
    # free-form values the rest of the model config interpolates, e.g. shape: [batch, 64, "${model.params.spatial}"]
    params: dict[str, Any] = field(default_factory=dict)
    # module paths (named_modules() names) whose outputs can be compared layer by layer, in forward order
    probes: list[str] = field(default_factory=list)
    # trained weights loaded into the built model (README "Verify a model you already have"). torch: a state_dict
    # in .pt/.pth (torch.load(weights_only=True)) or .safetensors; keras: .keras or .weights.h5. Relative paths
    # resolve against the directory parity was started in; the file's SHA-256 goes into the golden's manifest.
    weights: Optional[str] = None
    weights_key: Optional[str] = None  # torch: the state_dict inside a checkpoint dict ("state_dict", "model.ema")
    weights_strip_prefix: Optional[str] = None  # torch: removed from every key that starts with it ("module.")
    weights_strict: bool = True  # missing or unexpected keys are an ERROR listing them (false: a warning)
    # torch: a checkpoint that only loads with torch.load(weights_only=False) runs the pickled code inside it;
    # refused unless this is true (trust the file's author as you would trust running their script)
    weights_run_pickled_code: bool = False


@dataclass
class OutputTolerance:
    """Per-output override; unset fields inherit the tolerance option's defaults."""

    atol: Optional[float] = None
    rtol: Optional[float] = None
    check: Optional[Check] = None


@dataclass
class ReferenceToleranceConfig:
    """The reference check's tolerance: the live source model against its own golden (did the framework drift?).

    `same` (the default) judges it like the backend check; transforms select `fp32`, so that framework drift
    cannot hide behind the looser preset (fp16, int8) that judges the transformed artifact. tolerance.per_output
    entries apply either way.
    """

    name: str = MISSING
    inherit: bool = True  # true: the tolerance option's own values; false: the values below
    atol: float = 1e-4
    rtol: float = 1e-3
    check: Check = Check.elementwise
    min_top1_agreement: Optional[float] = None
    max_prob_diff_pp: Optional[float] = None


@dataclass
class ToleranceConfig:
    """How close a candidate must be to the golden."""

    name: str = MISSING
    atol: float = 1e-4
    rtol: float = 1e-3
    check: Check = Check.elementwise
    # output name -> OutputTolerance fields; a plain dict so `+tolerance.per_output.NAME.atol=X` works
    # on the command line (typed against OutputTolerance in the job plan)
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


class InputSource(str, Enum):
    """Where an input set's values come from (README "Check on your own data")."""

    generated = "generated"  # drawn from each input's declared distribution under the set's seed
    npy = "npy"  # inputs.files {input: file.npy}; or inputs.path: one .npy (a single-input model) or a directory
    npz = "npz"  # inputs.path: an .npz whose members are named like the inputs
    images = "images"  # inputs.path: a directory or glob of images, decoded and preprocessed (inputs.preprocess)
    onnx_test_data = "onnx_test_data"  # inputs.path: test_data_set_N directories (input_<i>.pb), joined in N order
    polygraphy = "polygraphy"  # inputs.path: Polygraphy's --save-inputs JSON, its iterations joined in order


@dataclass
class PreprocessConfig:
    """Image preprocessing, step by step in this order (inputs.source=images). Decoding is always Pillow's."""

    color: str = "RGB"  # RGB | BGR | L (grayscale: one channel)
    library: str = "pillow"  # the resize: pillow | opencv (opencv-python-headless)
    # pillow: nearest | bilinear | bicubic | lanczos | box | hamming (antialiased when shrinking);
    # opencv: INTER_NEAREST | INTER_LINEAR | INTER_CUBIC | INTER_AREA | INTER_LANCZOS4 | INTER_LINEAR_EXACT | ...
    interpolation: str = "bilinear"
    resize: Optional[list[int]] = None  # [height, width]: resize to exactly this
    resize_shorter: Optional[int] = None  # or: the shorter side to this, the aspect ratio kept
    crop: Optional[list[int]] = None  # then a centre crop [height, width]
    scale: float = 1.0 / 255.0  # then pixel values times this, in float32 (1/N divides by N, as torchvision) ...
    mean: list[float] = field(default_factory=list)  # ... minus the per-channel mean, divided by std ([] = none)
    std: list[float] = field(default_factory=list)
    layout: str = "NCHW"  # NCHW (channels first) | NHWC
    dtype: str = "float32"  # the input's element type (integer types round and clip to their range)


# PreprocessConfig's fields, every one optional (None: as in inputs.preprocess): the other pipeline of
# mode=compare_preprocess, e.g. compare_preprocess.against.library=opencv
PreprocessChanges = make_dataclass(
    "PreprocessChanges",
    [(f.name, Optional[get_type_hints(PreprocessConfig)[f.name]], field(default=None)) for f in fields(PreprocessConfig)])


@dataclass
class ComparePreprocessConfig:
    """mode=compare_preprocess: inputs.preprocess (pipeline a) against the same steps with `against`'s changes (b),
    on the images of inputs.path, through the source model. tolerance.min_top1_agreement and max_prob_diff_pp,
    where set, decide the verdict (unset: the comparison is reported, and PASSes)."""

    against: PreprocessChanges = field(default_factory=PreprocessChanges)


@dataclass
class InputsConfig:
    """The input set stored with the golden: where its values come from, how many samples, which batch sizes."""

    name: str = "default"
    # generated: how many samples to draw. From files: None takes every sample they hold; a number is how many
    # they must hold (a different count is an error)
    num_samples: Optional[int] = 4
    seed: int = 0
    batch_sizes: Optional[list[int]] = None  # None: one batch of all num_samples
    source: InputSource = InputSource.generated
    # the file, directory or glob the values come from (relative: to the directory parity starts in); its files'
    # SHA-256 go into the golden's manifest, and a verify that finds them changed calls the golden stale
    path: Optional[str] = None
    files: dict[str, str] = field(default_factory=dict)  # source npy: input name -> its .npy file
    image_input: Optional[str] = None  # source images: the input they fill (default: the model's only input);
    # every other input is drawn from its declared distribution
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


@dataclass
class GoldenConfig:
    """Where goldens live and whether mode=golden may replace one."""

    root: str = "golden"  # relative paths resolve against the directory parity was started in
    overwrite: bool = False


@dataclass
class ReportConfig:
    """What a job and a sweep write: the formats by name (parity/report/formats/), and where."""

    # json: report.json; table: stdout; summary: summary.md (+ $GITHUB_STEP_SUMMARY); junit: junit.xml;
    # html: report.html (one self-contained file with its plots)
    formats: list[str] = field(default_factory=lambda: ["json", "table", "summary"])
    filename: str = "report.json"
    table_format: str = "github"  # any tabulate format
    # keep each batch size's backend outputs as candidates_b<N>.npz (listed in the report): a sweep builds its
    # pairwise matrix from them
    save_outputs: bool = True
    # the job and sweep tables' columns: compact (what decides the verdict, fits `width`), full (every metric), or
    # a list of column names (parity.report.formats.table.JOB_COLUMNS / SWEEP_COLUMNS)
    columns: Any = "compact"
    width: int = 120  # the printed tables' width in characters: long names are shortened, wide grids split
    skip_is: str = "ok"  # ok: a SKIP exits 0; fail: a SKIP exits 1 (a CI job that must not go green untested)
    # what stays of a job's run directory once its report is written: all, failed (only jobs that did not
    # PASS keep their exported models and output files), none (reports and logs only)
    keep_artifacts: str = "all"


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
class ImportConfig:
    """mode=import: a golden for the model and input set (inputs.name) from another tool's files. The config key
    is `import` (a Python keyword: the schema is attached to the top-level config under that name)."""

    format: Optional[str] = None  # polygraphy | onnx_test_data | npy | raw | csv (parity.exchange.FORMATS)
    # polygraphy: RunResults JSON (--save-outputs), or a directory with inputs.json + outputs.json;
    # onnx_test_data: a directory of test_data_set_N (or one); npy: an .npz or a directory of <output>.npy (or
    # parity's npy layout with index.json); raw / csv: a directory in parity's layout with its index.json
    path: Optional[str] = None
    # the inputs the outputs were computed from, where `path` does not hold them: polygraphy: its inputs JSON
    # (--save-inputs); npy: an .npz, a directory of <input>.npy, or a directory `mode=export` wrote (npy, raw, csv)
    inputs: Optional[str] = None
    runner: Optional[str] = None  # polygraphy: the runner whose results become the golden (None: the only one)
    tool: Optional[str] = None  # the program that wrote the files, as the manifest records it ("my C++ client")


@dataclass
class ExportConfig:
    """mode=export: the golden of the model and input set written in another format, for other programs."""

    format: Optional[str] = None  # polygraphy | onnx_test_data | npy | raw | csv
    dir: Optional[str] = None  # a new or empty directory (relative: to the directory parity starts in)
    # polygraphy / onnx_test_data: samples per iteration / test data set (None: all samples in one); a model
    # built for one batch size takes that size
    batch_size: Optional[int] = None
    overwrite: bool = False  # replace a directory an earlier export wrote (one holding its index.json) only


@dataclass
class ChecksConfig:
    """Extra checks of a verify job."""

    # true: compare the model's declared probe modules (model.probes) layer by layer, torch hooks vs ONNX outputs;
    # auto: the model's top-level children, when it declares none
    probes: Any = False
    repeats: int = 1  # > 1: run the backend that many times on the same inputs and report run-to-run differences
    localize_chunk: int = 256  # localize=all / source: intermediate tensors marked per run (bounds memory)


@dataclass
class ExportCacheConfig:
    """The export cache (parity/export_cache.py): exported and transformed artifacts shared by jobs, found by
    the SHA-256 of what made them."""

    enabled: bool = True
    # None: $PARITY_EXPORT_CACHE, else $PARITY_CACHE/exports, else ~/.cache/parity/exports
    dir: Optional[str] = None
    max_gb: Optional[float] = 20.0  # least recently used entries are removed beyond this (None: no limit)


@dataclass
class ParityConfig:
    """The top-level config; group options are typed by their own base_* schemas."""

    model: Any = MISSING
    exporter: Any = MISSING
    backend: Any = MISSING
    tolerance: Any = MISSING
    reference_tolerance: Any = MISSING
    inputs: Any = MISSING
    numerics: Any = MISSING
    transform: Any = MISSING
    mode: Mode = Mode.verify
    localize: Localize = Localize.none
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    golden: GoldenConfig = field(default_factory=GoldenConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    export_cache: ExportCacheConfig = field(default_factory=ExportCacheConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    compare_preprocess: ComparePreprocessConfig = field(default_factory=ComparePreprocessConfig)
    # `import`: ImportConfig, attached by base_config() (a field cannot be named after a keyword)


def base_config() -> Any:
    """The top-level schema as a config node: ParityConfig with ImportConfig under the key `import`."""
    from omegaconf import open_dict

    node = OmegaConf.structured(ParityConfig)
    with open_dict(node):
        node["import"] = OmegaConf.structured(ImportConfig)
    return node


def register_configs() -> None:
    """Register the schemas; YAML options extend them with `defaults: [base_<name>, _self_]`.

    Exporters, backends and transforms register their own schemas (parity.plugins): each module defines its
    config dataclass beside its class.
    """
    from hydra.core.config_store import ConfigStore

    from parity import plugins

    if not OmegaConf.has_resolver("parity_run"):
        OmegaConf.register_new_resolver("parity_run", run_label)
    if not OmegaConf.has_resolver("parity_stem"):
        OmegaConf.register_new_resolver("parity_stem", file_stem)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=base_config())
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="tolerance", name="base_tolerance", node=ToleranceConfig)
    cs.store(group="reference_tolerance", name="base_reference_tolerance", node=ReferenceToleranceConfig)
    cs.store(group="inputs", name="base_inputs", node=InputsConfig)
    cs.store(group="numerics", name="base_numerics", node=NumericsConfig)
    plugins.register_schemas(cs)


def file_stem(path: Any) -> str:
    """`${parity_stem:${.path}}`: a file's name without its suffix, safe as a directory name (a model's name)."""
    from parity.paths import label

    return label(Path(str(path)).stem or "model", limit=100)


def run_label(*, _root_: Any) -> str:
    """A run folder's name for what runs: `<model>-<exporter>[-<transform>]-<backend>`, or `<model>-<backend>` for
    a backend that runs the source model itself (nothing is exported). Each part made safe for a file name."""
    from parity.paths import label

    def pick(key: str, default: str = "") -> str:
        try:
            return str(value_of(OmegaConf.select(_root_, key, default=default, throw_on_missing=False)))
        except OmegaConfBaseException:  # e.g. a name interpolating a missing model.path: the plan says so
            return default

    model, backend = pick("model.name", "model"), pick("backend.name", "backend")
    exporter, transform = pick("exporter.name", "exporter"), pick("transform.name", "none")
    eager = False
    try:
        from parity.frameworks import framework_for
        from parity.plugins import plugin_class

        framework = pick("model.framework", "torch")  # an ONNX file is already an artifact: never run as eager
        eager = framework_for(framework).artifact_kind is None and \
            framework in plugin_class("backend", pick("backend._target_")).accepts
    except Exception:  # a broken backend config: the plan says so in one line; the folder still needs a name
        pass
    parts = [model, backend] if eager else [model, exporter, *([transform] if transform != "none" else []), backend]
    return "-".join(label(p) for p in parts)


def typed_node(schema: type[T], node: Any, where: str) -> T:
    """A composed config node (interpolations resolved) as an instance of its schema dataclass: every key known
    and of its type; a one-line ConfigError naming the key otherwise."""
    try:
        plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), plain))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{where}{'.' + key if key and not key.startswith(where) else ''}: {first}") from None


def value_of(option: Any) -> str:
    """An enum-valued option (Mode, Localize, Framework) as its plain string; a string as it is."""
    return str(getattr(option, "value", option))
