"""The typed job plan: the composed config validated once, never mutated, every derived value computed once.

`build_plan(cfg)` types each group (the plugin groups against their `_target_` class's own config dataclass),
applies the numerics option through each plugin's hook, resolves the tolerances of the backend and reference
checks per output, and derives batch sizes and batch axes. Every later stage reads the plan (or the part of
it that it needs), never the raw config. The plan is frozen; the config dataclasses it holds are plain ones
(OmegaConf builds them), which no stage writes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from omegaconf import OmegaConf

from parity import plugins
from parity.compare import Tolerance, ToleranceSet
from parity.config import (
    BATCH,
    BenchConfig,
    ChecksConfig,
    ComparePreprocessConfig,
    ExportCacheConfig,
    ExportConfig,
    GoldenConfig,
    ImportConfig,
    InputsConfig,
    ModelConfig,
    NumericsConfig,
    OutputTolerance,
    ReferenceToleranceConfig,
    ReportConfig,
    ToleranceConfig,
    typed_node,
    value_of,
)
from parity.errors import ConfigError
from parity.inputs import DTYPES, batch_axis
from parity.paths import check_segment, resolve_file



@dataclass(frozen=True)
class JobPlan:
    """Everything one job does, typed. Plugin configs have the numerics option applied already."""

    mode: str  # verify | golden | bench | verify+bench
    model: ModelConfig
    framework: str  # the model's framework (parity.frameworks)
    inputs: InputsConfig
    exporter: Any  # the exporter plugin's own config dataclass
    backend: Any
    transform: Any
    numerics: NumericsConfig
    backend_tolerance: ToleranceSet  # the backend check's tolerance per output / probe
    reference_tolerance: ToleranceSet  # the reference check's (the live model against its own golden)
    batch_sizes: tuple[int, ...] | None  # verify; None: one batch of all the golden's samples
    bench_batch_sizes: tuple[int, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_axes: Mapping[str, int | None]  # batch axis of every input (None: a fixed shape, no batch axis)
    output_axes: Mapping[str, int | None]  # batch axis of every output (None: not batched)
    localize: str  # none | all (runtime) | source (conversion) | auto (by the FAIL's fault class)
    checks: ChecksConfig
    bench: BenchConfig
    golden: GoldenConfig
    report: ReportConfig
    export_cache: ExportCacheConfig
    importing: ImportConfig  # mode=import: the files a golden is made from (paths absolute)
    exporting: ExportConfig  # mode=export: the format and directory (absolute)
    comparing: ComparePreprocessConfig  # mode=compare_preprocess: pipeline b's changes

    @property
    def makes_golden(self) -> bool:
        return self.mode == "golden"

    @property
    def verifies(self) -> bool:
        return self.mode in ("verify", "verify+bench")

    @property
    def benches(self) -> bool:
        return self.mode in ("bench", "verify+bench")

    def sizes(self, golden_samples: int) -> tuple[int, ...]:
        """The batch sizes a verify job runs against a golden of `golden_samples` samples."""
        return self.batch_sizes or (golden_samples,)

    def backend_sizes(self, verify_sizes: tuple[int, ...]) -> tuple[int, ...]:
        """Every batch size the backend will see in this job (verify's and, in verify+bench, bench's): what a
        backend building for a shape range (TensorRT's optimisation profile) must cover."""
        return tuple(sorted({*verify_sizes, *(self.bench_sizes(verify_sizes) if self.benches else ())}))

    def bench_sizes(self, verify_sizes: tuple[int, ...] | None) -> tuple[int, ...]:
        """The batch sizes a benchmark times: bench.batch_sizes, else the verify's (with inputs from files whose
        count only the golden knows: the sizes the verify ran, or 1 in mode=bench, which reads no golden)."""
        return self.bench_batch_sizes or tuple(verify_sizes or (1,))

    def input_shapes(self) -> dict[str, list[Any]]:
        """Each input's declared shape, `batch` on its batch axis."""
        return {s.name: list(s.shape) for s in self.model.inputs}


def build_plan(cfg: Any, start_dir: Path | None = None) -> JobPlan:
    """Validate the composed config and type it into a JobPlan; ConfigError (one line) for anything wrong.

    Files the config names (model.weights, …) resolve against `start_dir` (default: the working directory, the
    directory parity was started in) and are absolute in the plan."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"missing mandatory value(s): {', '.join(missing)}")
    base = Path.cwd() if start_dir is None else start_dir
    model = _with_files(typed_node(ModelConfig, cfg.model, "model"), base)
    inputs = typed_node(InputsConfig, cfg.inputs, "inputs")
    tolerance = typed_node(ToleranceConfig, cfg.tolerance, "tolerance")
    reference = typed_node(ReferenceToleranceConfig, cfg.reference_tolerance, "reference_tolerance")
    numerics = typed_node(NumericsConfig, cfg.numerics, "numerics")
    checks = typed_node(ChecksConfig, cfg.checks, "checks")
    bench = typed_node(BenchConfig, cfg.bench, "bench")
    golden = typed_node(GoldenConfig, cfg.golden, "golden")
    report = typed_node(ReportConfig, cfg.report, "report")
    export_cache = typed_node(ExportCacheConfig, cfg.get("export_cache") or {}, "export_cache")
    if export_cache.max_gb is not None and not export_cache.max_gb > 0:
        raise ConfigError(f"export_cache.max_gb must be > 0 (null: no limit), got {export_cache.max_gb}")
    framework = value_of(model.framework)
    check_segment(model.name, "model.name", "mlp")
    check_segment(inputs.name, "inputs.name")
    if not str(golden.root).strip():
        raise ConfigError("golden.root is empty; give the directory that holds the goldens (default: golden)")
    _check_model(model)
    inputs = _input_files(_unbatched(model, inputs, bench), model, base)
    per_output = _per_output(tolerance, model)
    _check_numbers(tolerance, reference, checks, bench, inputs, per_output)
    checks = _probes(checks, model, framework)
    _check_report(report)
    mode = value_of(cfg.mode)
    importing = _importing(typed_node(ImportConfig, cfg.get("import") or {}, "import"), mode, base)
    exporting = _exporting(typed_node(ExportConfig, cfg.get("export") or {}, "export"), mode, base)
    comparing = typed_node(ComparePreprocessConfig, cfg.get("compare_preprocess") or {}, "compare_preprocess")
    if mode == "compare_preprocess" and value_of(inputs.source) != "images":
        raise ConfigError("mode=compare_preprocess compares image pipelines: it needs inputs=images "
                          "inputs.path=<images> (inputs.source=images)")
    batch_sizes = tuple(inputs.batch_sizes) if inputs.batch_sizes else None
    backend_tolerance = _tolerance_set(tolerance, per_output)
    return JobPlan(
        mode=mode,
        model=model,
        framework=framework,
        inputs=inputs,
        exporter=_exporter(cfg, model, numerics, base),
        backend=plugins.typed_config("backend", cfg.backend, numerics, base),
        transform=plugins.typed_config("transform", cfg.transform, numerics, base),
        numerics=numerics,
        backend_tolerance=backend_tolerance,
        reference_tolerance=backend_tolerance if reference.inherit else _tolerance_set(reference, per_output),
        batch_sizes=batch_sizes,
        # () for an input set whose count the files decide: the verify's sizes then (see bench_sizes)
        bench_batch_sizes=tuple(bench.batch_sizes or batch_sizes or
                                ((inputs.num_samples,) if inputs.num_samples is not None else ())),
        input_names=tuple(s.name for s in model.inputs),
        output_names=tuple(o.name for o in model.outputs),
        input_axes=MappingProxyType({s.name: batch_axis(s.shape) for s in model.inputs}),
        output_axes=MappingProxyType({o.name: o.batch_axis for o in model.outputs}),
        localize=value_of(cfg.localize),
        checks=checks,
        bench=bench,
        golden=golden,
        report=report,
        export_cache=dataclasses.replace(export_cache, dir=str(resolve_file(export_cache.dir, base)))
        if export_cache.dir else export_cache,
        importing=importing,
        exporting=exporting,
        comparing=comparing,
    )


def report_settings(cfg: Any) -> ReportConfig:
    """The report settings of a job whose plan could not be built (the defaults where they are invalid too)."""
    try:
        settings = typed_node(ReportConfig, cfg.report, "report")
        _check_report(settings)
        return settings
    except ConfigError:
        return ReportConfig()


def _with_files(model: ModelConfig, base: Path) -> ModelConfig:
    """The model config with its files resolved and checked (parity.weights), and an ONNX model's inputs and
    outputs read from its graph (parity.frameworks.onnx)."""
    framework = value_of(model.framework)
    if model.weights and (framework == "onnx" or model.path):
        raise ConfigError(f"model '{model.name}' is {'an ONNX file' if framework == 'onnx' else 'a SavedModel'} "
                          f"(model.path): model.weights does not apply, the file holds its weights")
    if model.weights:
        from parity.weights import check_file

        model = dataclasses.replace(model, weights=resolve_file(model.weights, base))
        check_file(model)
    if framework == "keras" and model.path:  # a SavedModel directory is the model itself
        if model.builder:
            raise ConfigError(f"model '{model.name}' is a SavedModel (model.path): model.builder and model.weights "
                              f"do not apply")
        model = dataclasses.replace(model, path=resolve_file(model.path, base))
        if not (Path(model.path) / "saved_model.pb").is_file():
            raise ConfigError(f"model.path: {model.path} is not a SavedModel directory (no saved_model.pb in it)")
        return model
    if framework != "onnx":
        if model.path:
            raise ConfigError(f"model.path is for ONNX files (framework: onnx) and SavedModels (framework: keras); "
                              f"model '{model.name}' is {framework}: its builder makes it (model.weights loads "
                              f"trained weights)")
        return model
    if not model.path:
        raise ConfigError("an ONNX model (framework: onnx) needs model.path=<file.onnx>: the file to verify")
    if model.builder:
        raise ConfigError(f"model '{model.name}' is an ONNX file: model.builder and model.weights do not apply")
    model = dataclasses.replace(model, path=resolve_file(model.path, base))
    if not Path(model.path).is_file():
        raise ConfigError(f"model.path: no such file {model.path}")
    try:
        import onnx  # noqa: F401
    except ImportError:  # the job reports the SKIP naming the install; the declared inputs stand as they are
        return model
    from parity.frameworks.onnx import declared_io, reference_config

    reference_config(model)  # a bad model.reference_backend is a config error here, before any work
    return declared_io(model)


def _exporter(cfg: Any, model: ModelConfig, numerics: NumericsConfig, base: Path) -> Any:
    """The exporter's typed config. An ONNX model runs through exporter=prebuilt on its own file unless
    exporter.path names another one (a converted copy checked against the original's goldens)."""
    node = cfg.exporter
    if value_of(model.framework) == "onnx" and model.path:
        from parity.exporters.prebuilt import PrebuiltExporter

        target = node.get("_target_")
        if target and issubclass(plugins.plugin_class("exporter", target), PrebuiltExporter) and \
                not node.get("path"):
            node = OmegaConf.merge(node, {"path": model.path})
    return plugins.typed_config("exporter", node, numerics, base)


def _format(mode: str, fmt: str | None) -> None:
    from parity.exchange import FORMATS

    if fmt not in FORMATS:
        raise ConfigError(f"mode={mode} needs {mode}.format: one of {', '.join(FORMATS)} (got {fmt})")


def _importing(settings: ImportConfig, mode: str, base: Path) -> ImportConfig:
    if mode != "import":
        return settings
    _format(mode, settings.format)
    if not settings.path:
        raise ConfigError(f"mode=import needs import.path: the {settings.format} files to make the golden from")
    if settings.runner and settings.format != "polygraphy":
        raise ConfigError("import.runner picks a runner of Polygraphy's RunResults; import.format is "
                          f"{settings.format}")
    if settings.inputs and settings.format not in ("polygraphy", "npy"):
        raise ConfigError(f"import.inputs is for the polygraphy and npy formats; {settings.format} files hold "
                          f"their inputs beside the outputs")
    return dataclasses.replace(settings, path=resolve_file(settings.path, base),
                               inputs=resolve_file(settings.inputs, base) if settings.inputs else None)


def _exporting(settings: ExportConfig, mode: str, base: Path) -> ExportConfig:
    if mode != "export":
        return settings
    _format(mode, settings.format)
    if not settings.dir:
        raise ConfigError("mode=export needs export.dir: a new or empty directory to write the files into")
    if settings.batch_size is not None:
        if settings.format not in ("polygraphy", "onnx_test_data"):
            raise ConfigError(f"export.batch_size splits the samples into Polygraphy iterations or ONNX test data "
                              f"sets; {settings.format} files hold every sample at once")
        if settings.batch_size < 1:
            raise ConfigError(f"export.batch_size must be >= 1, got {settings.batch_size}")
    return dataclasses.replace(settings, dir=resolve_file(settings.dir, base))


def _unbatched(model: ModelConfig, inputs: InputsConfig, bench: BenchConfig) -> InputsConfig:
    """The input set of a model none of whose inputs has a batch axis: one sample, one batch."""
    if any(BATCH in list(s.shape) for s in model.inputs):
        return inputs
    for where, sizes in (("inputs.batch_sizes", inputs.batch_sizes), ("bench.batch_sizes", bench.batch_sizes)):
        if sizes and list(sizes) != [1]:
            raise ConfigError(f"{where}={list(sizes)}: no input of model '{model.name}' has a batch axis (its "
                              f"shapes are fixed), so it runs one sample at a time; leave {where} unset")
    return dataclasses.replace(inputs, num_samples=1 if inputs.num_samples is not None else None,
                               batch_sizes=None)


def _input_files(inputs: InputsConfig, model: ModelConfig, base: Path) -> InputsConfig:
    """The input set with its files resolved against `base` and its source's settings checked (the files are
    read, and their contents checked, when a golden is made: a verify runs on the golden's copy)."""
    from parity import preprocess

    source = value_of(inputs.source)
    names = [s.name for s in model.inputs]
    if source == "generated":
        for key in ("path", "files", "image_input"):
            if getattr(inputs, key):
                raise ConfigError(f"inputs.{key} is set but inputs.source is generated (values drawn from the "
                                  f"declared distributions); set inputs.source to the kind of files it names")
        if inputs.num_samples is None:
            raise ConfigError(f"inputs.num_samples is null: only an input set read from files (inputs.source) may "
                              f"leave it to the files; input set '{inputs.name}' is generated")
        return inputs
    if source == "npy" and inputs.files:
        if inputs.path:
            raise ConfigError("inputs.source=npy takes inputs.files (one .npy per input) or inputs.path (a "
                              "directory, or one .npy for a single-input model), not both")
        unknown = sorted(set(inputs.files) - set(names))
        missing = [n for n in names if n not in inputs.files]
        if unknown or missing:
            raise ConfigError(f"inputs.files names {sorted(inputs.files)}; the model's inputs are {names}")
        files = {n: resolve_file(str(p), base) for n, p in inputs.files.items()}
        return dataclasses.replace(inputs, files=files)
    if inputs.files:
        raise ConfigError(f"inputs.files is for inputs.source=npy; source {source} reads inputs.path")
    if not inputs.path:
        what = {"npy": "a directory of <input>.npy files, or one .npy", "npz": "an .npz file",
                "images": "a directory or glob of images", "onnx_test_data": "a directory of test_data_set_N",
                "polygraphy": "Polygraphy's inputs JSON"}[source]
        raise ConfigError(f"inputs.source={source} needs inputs.path: {what}")
    if source == "images":
        preprocess.check(inputs.preprocess)
        if inputs.image_input is None and len(names) > 1:
            raise ConfigError(f"model '{model.name}' has {len(names)} inputs ({', '.join(names)}); name the one the "
                              f"images fill with inputs.image_input=NAME")
        if inputs.image_input is not None and inputs.image_input not in names:
            raise ConfigError(f"inputs.image_input '{inputs.image_input}' is not an input of model '{model.name}' "
                              f"({', '.join(names)})")
        target = next(s for s in model.inputs if s.name == (inputs.image_input or names[0]))
        if list(target.shape)[:1] != [BATCH]:
            raise ConfigError(f"input '{target.name}' has shape {list(target.shape)}: images fill an input whose "
                              f"first axis is the batch ({BATCH}, then the layout's three axes)")
    elif inputs.image_input:
        raise ConfigError(f"inputs.image_input is for inputs.source=images; source {source} names its inputs")
    if source == "npy" and len(names) > 1 and str(inputs.path).endswith(".npy"):
        raise ConfigError(f"inputs.path is one .npy but model '{model.name}' has {len(names)} inputs; give "
                          f"inputs.files={{name: file.npy, ...}} or an .npz")
    return dataclasses.replace(inputs, path=resolve_file(str(inputs.path), base))


def _check_model(model: ModelConfig) -> None:
    if not model.path and "_target_" not in model.builder:
        raise ConfigError(f"model.builder needs a _target_ (model '{model.name}')")
    names = [i.name for i in model.inputs]
    if not names:
        raise ConfigError(f"model.inputs is empty; declare the inputs of model '{model.name}' (name, shape, dtype)")
    if len(set(names)) != len(names):
        raise ConfigError(f"model.inputs has duplicate names: {names}")
    for spec in model.inputs:
        shape = list(spec.shape)
        if shape.count(BATCH) > 1:
            raise ConfigError(f"input '{spec.name}': shape {shape} may contain '{BATCH}' once at most (none: a "
                              f"fixed shape without a batch axis)")
        for dim in shape:
            if dim != BATCH and not (isinstance(dim, int) and not isinstance(dim, bool) and dim > 0):
                raise ConfigError(f"input '{spec.name}': shape {shape} has a bad dimension {dim!r}")
        if spec.dtype not in DTYPES:
            raise ConfigError(f"input '{spec.name}': unknown dtype '{spec.dtype}' (one of {sorted(DTYPES)})")
    outs = [o.name for o in model.outputs]
    if not outs or len(set(outs)) != len(outs):
        raise ConfigError(f"model.outputs must be non-empty with unique names: {outs}")


def _per_output(tolerance: ToleranceConfig, model: ModelConfig) -> dict[str, OutputTolerance]:
    outs = [o.name for o in model.outputs]
    unknown = set(tolerance.per_output) - set(outs) - set(model.probes)
    if unknown:
        raise ConfigError(f"tolerance.per_output names unknown outputs {sorted(unknown)} "
                          f"(model outputs: {outs}, probes: {list(model.probes)})")
    return {name: typed_node(OutputTolerance, entry, f"tolerance.per_output.{name}")
            for name, entry in tolerance.per_output.items()}


def _probes(checks: ChecksConfig, model: Any, framework: str) -> ChecksConfig:
    """checks.probes as true, false or "auto" (the model's top-level children when it declares no probes)."""
    value = checks.probes
    text = str(value).strip().lower()
    if text not in ("true", "false", "auto"):
        raise ConfigError(f"checks.probes must be true, false or auto, got {value!r}")
    if text == "false":
        return dataclasses.replace(checks, probes=False)
    if framework != "torch":
        raise ConfigError(f"checks.probes needs a torch model (forward hooks); model '{model.name}' is {framework}")
    if text == "true" and not model.probes:
        raise ConfigError(f"checks.probes=true but model '{model.name}' declares no probes (model.probes); "
                          "checks.probes=auto picks the model's top-level children")
    return dataclasses.replace(checks, probes="auto" if text == "auto" and not model.probes else True)


def _check_numbers(tolerance: ToleranceConfig, reference: ReferenceToleranceConfig, checks: ChecksConfig,
                   bench: BenchConfig, inputs: InputsConfig, per_output: Mapping[str, OutputTolerance]) -> None:
    for where, values in (("tolerance", tolerance), ("reference_tolerance", reference)):
        for name in ("atol", "rtol", "max_prob_diff_pp"):
            _non_negative(f"{where}.{name}", getattr(values, name))
        top1 = values.min_top1_agreement
        _non_negative(f"{where}.min_top1_agreement", top1)
        if top1 is not None and top1 > 1.0:
            raise ConfigError(f"{where}.min_top1_agreement must be a fraction in [0, 1], got {top1}")
    for name, override in per_output.items():
        for key in ("atol", "rtol"):
            _non_negative(f"tolerance.per_output.{name}.{key}", getattr(override, key))
    if checks.repeats < 1:
        raise ConfigError(f"checks.repeats must be >= 1, got {checks.repeats}")
    if checks.localize_chunk < 1:
        raise ConfigError(f"checks.localize_chunk must be >= 1, got {checks.localize_chunk}")
    for key in ("runs", "max_runs"):
        if getattr(bench, key) < 1:
            raise ConfigError(f"bench.{key} must be >= 1, got {getattr(bench, key)}")
    if bench.warmup_runs < 0:
        raise ConfigError(f"bench.warmup_runs must be >= 0, got {bench.warmup_runs}")
    if bench.max_runs < bench.runs:
        raise ConfigError(f"bench.max_runs ({bench.max_runs}) is below bench.runs ({bench.runs})")
    for key in ("warmup_seconds", "min_seconds", "max_seconds", "unstable_p99_ratio", "unstable_cv"):
        _non_negative(f"bench.{key}", getattr(bench, key))
    if bench.max_seconds <= 0:
        raise ConfigError(f"bench.max_seconds must be > 0, got {bench.max_seconds}")
    if bench.min_seconds > bench.max_seconds:
        raise ConfigError(f"bench.min_seconds ({bench.min_seconds}) exceeds bench.max_seconds ({bench.max_seconds})")
    if bench.batch_sizes is not None and not bench.batch_sizes:
        raise ConfigError("bench.batch_sizes is empty; give at least one size, or null for the verify batch sizes")
    if any(b < 1 for b in bench.batch_sizes or []):
        raise ConfigError(f"bench.batch_sizes must be >= 1, got {list(bench.batch_sizes)}")
    if inputs.num_samples is not None and inputs.num_samples < 1:
        raise ConfigError(f"inputs.num_samples must be >= 1, got {inputs.num_samples}")
    if inputs.batch_sizes is not None and not inputs.batch_sizes:
        raise ConfigError("inputs.batch_sizes is empty; give at least one size, or null for one batch of all "
                          "the samples")
    for b in inputs.batch_sizes or []:
        if b < 1:
            raise ConfigError(f"inputs.batch_sizes must be >= 1, got {b}")
        if inputs.num_samples is not None and b > inputs.num_samples:
            raise ConfigError(f"batch size {b} exceeds the {inputs.num_samples} samples of input set "
                              f"'{inputs.name}'")


def _non_negative(key: str, value: float | None) -> None:
    """A finite number >= 0 (None: unset, allowed). NaN compares false with everything, so a NaN tolerance would
    pass any difference, and inf accepts everything: both are configuration errors."""
    if value is None:
        return
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")
    if value < 0:
        raise ConfigError(f"{key} must be >= 0, got {value}")


def _check_report(report: ReportConfig) -> None:
    from tabulate import tabulate_formats

    from parity.report.formats import writer_names

    unknown = [f for f in report.formats if f not in writer_names()]
    if unknown:
        raise ConfigError(f"report.formats names unknown formats {unknown} (known: {', '.join(writer_names())})")
    check_segment(report.filename, "report.filename", "report.json")  # a file in the job's own output directory, nowhere else
    if report.table_format not in tabulate_formats:
        raise ConfigError(f"report.table_format '{report.table_format}' is not a tabulate format "
                          f"(e.g. {', '.join(sorted(tabulate_formats)[:8])}, …)")
    from parity.report.formats.table import JOB_COLUMNS, SWEEP_COLUMNS

    columns = report.columns
    if not isinstance(columns, str):
        unknown = [c for c in columns if c not in JOB_COLUMNS and c not in SWEEP_COLUMNS]
        if unknown or not columns:
            raise ConfigError(f"report.columns names unknown columns {unknown} (known: compact, full, or a list of "
                              f"{', '.join(dict.fromkeys([*JOB_COLUMNS, *SWEEP_COLUMNS]))})")
    elif columns not in ("compact", "full"):
        raise ConfigError(f"report.columns must be compact, full or a list of column names, got '{columns}'")
    if report.width < 40:
        raise ConfigError(f"report.width must be at least 40 characters, got {report.width}")
    for key, value, allowed in (("skip_is", report.skip_is, ("ok", "fail")),
                                ("keep_artifacts", report.keep_artifacts, ("all", "failed", "none"))):
        if value not in allowed:
            raise ConfigError(f"report.{key} must be one of {', '.join(allowed)}, got '{value}'")


def _tolerance_set(base: Any, per_output: Mapping[str, OutputTolerance]) -> ToleranceSet:
    """`base`'s values for every name, with each per_output entry's atol / rtol / check where it sets them."""
    default = Tolerance(atol=float(base.atol), rtol=float(base.rtol), check=base.check,
                        min_top1_agreement=base.min_top1_agreement, max_prob_diff_pp=base.max_prob_diff_pp)
    per_name = {}
    for name, override in per_output.items():
        per_name[name] = Tolerance(
            atol=float(default.atol if override.atol is None else override.atol),
            rtol=float(default.rtol if override.rtol is None else override.rtol),
            check=default.check if override.check is None else override.check,
            min_top1_agreement=default.min_top1_agreement, max_prob_diff_pp=default.max_prob_diff_pp)
    return ToleranceSet(default=default, per_name=MappingProxyType(per_name))


@dataclass(frozen=True)
class JobContext:
    """Where a job runs: its output directory, the directory parity was started in (relative golden roots resolve
    against it), the command-line overrides (for the commands errors suggest), its number in a sweep, and the
    other arguments that selected its configs."""

    output_dir: Path
    start_dir: Path
    overrides: tuple[str, ...] = ()
    num: int | None = None
    # what else selected the configs (hydra.searchpath=..., --config-dir=...): the suggested commands carry it
    selectors: tuple[str, ...] = ()

    @property
    def command_overrides(self) -> tuple[str, ...]:
        """Everything a command suggested to the user must repeat to compose this job's config again."""
        return (*self.selectors, *self.overrides)
