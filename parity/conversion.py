"""What runs the model: backend, exporter and transform built from the plan, their compatibility derived from
what each declares, and the one artifact cache (export, then transform) shared by verify, bench and probes."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity import __version__, plugins, progress
from parity import inputs as inputs_mod
from parity.artifact import Artifact
from parity.errors import ConfigError, one_line
from parity.export_cache import digest
from parity.frameworks import framework_names
from parity.frameworks.base import Framework
from parity.plan import JobPlan
from parity.results import ExportRecord

log = logging.getLogger("parity")


@dataclass
class Conversion:
    """The backend under test and what turns the model into something it runs.

    `exporter` is None when the backend accepts the source model itself (eager); `skip_reason` says why the
    backend check cannot run here (something is not installed, or the backend takes no such model).
    """

    backend: Any
    exporter: Any | None
    transform: Any
    skip_reason: str | None


def availability(part: Any) -> str | None:
    """`part.availability()`; a check that itself crashes (a half-installed library) is a reason too, not a crash."""
    try:
        return part.availability()
    except Exception as exc:
        return f"availability check failed: {one_line(exc)}"


def build_conversion(plan: JobPlan, framework: Framework, batch_sizes: Sequence[int]) -> Conversion:
    """Build the plugins and derive whether they fit: from the framework's name, the exporter's `source` and
    `produces`, the transform's `takes` / `produces` and the backend's `accepts`. A mismatch the user chose
    (a torch exporter for a keras model) is a ConfigError; one the backend cannot run is a SKIP reason."""
    backend = plugins.build("backend", plan.backend)
    transform = plugins.build("transform", plan.transform)
    backend.expect(plan.input_shapes(), batch_sizes)
    reason = availability(backend)
    if framework.artifact_kind is None and framework.name in backend.accepts:  # runs the live model: no export
        if reason is None and not transform.identity:
            reason = (f"transform '{transform.name}' applies to {_kind(transform.takes)} artifacts; backend "
                      f"'{backend.name}' runs the {framework.name} model itself")
        return Conversion(backend, None, transform, reason)
    exporter = plugins.build("exporter", plan.exporter)
    if not exporter.takes(framework.name):
        fitting = [c.Config.name for c in plugins.registered("exporter") if c.takes(framework.name)]
        raise ConfigError(f"exporter '{exporter.name}' takes {exporter.source} models but model '{plan.model.name}' "
                          f"is {_a(framework.name)} model (exporters for it: {', '.join(fitting) or 'none'})")
    if not transform.identity and transform.takes != exporter.produces:
        raise ConfigError(f"transform '{transform.name}' takes {transform.takes} artifacts; exporter "
                          f"'{exporter.name}' produces {exporter.produces}")
    produced = exporter.produces if transform.identity else transform.produces
    if reason is None and produced not in backend.accepts:
        kinds = " and ".join(sorted(backend.accepts))
        reason = (f"backend '{backend.name}' runs {kinds} models; model '{plan.model.name}' is {_a(framework.name)} "
                  f"model" if backend.accepts <= set(framework_names()) else
                  f"backend '{backend.name}' runs {kinds} artifacts; exporter '{exporter.name}' produces {produced}")
    for part, what in ((exporter, "exporter"), (transform, "transform")):
        why = availability(part) if reason is None else None
        if why is not None:
            reason = f"{what} '{part.name}' cannot run here: {why}"
    return Conversion(backend, exporter, transform, reason)


def _a(word: str) -> str:
    """`word` with its indefinite article ("a torch", "an onnx")."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _kind(kind: str) -> str:
    return "ONNX" if kind == "onnx" else kind


def export_store(plan: JobPlan) -> Any:
    """The export cache the plan asks for (parity.export_cache), or None (export_cache.enabled=false)."""
    from parity.export_cache import ExportCache, default_root

    settings = plan.export_cache
    if not settings.enabled:
        return None
    root = Path(settings.dir).expanduser() if settings.dir else default_root()
    return ExportCache(root, None if settings.max_gb is None else int(settings.max_gb * 1e9))


# model config keys that do not change an export, or whose effect the key has already: the name and probes (a
# probed export has the probes in its key), the reference backend, and where the weights came from (their SHA-256
# and the weights file's are in the key)
_NOT_IN_KEY = {"name", "probes", "reference_backend", "path", "weights", "weights_key", "weights_strip_prefix",
               "weights_strict", "weights_run_pickled_code"}


@functools.lru_cache(maxsize=1)
def parity_identity() -> dict[str, str]:
    """parity's version and the SHA-256 of its own source files: any change to parity (its exporters, the
    artifact hashing, the probes wrapper) is a new key."""
    root = Path(__file__).resolve().parent
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        sha.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return {"version": __version__, "code": sha.hexdigest()}


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of named arrays: name, dtype, shape and bytes of each, in name order."""
    sha = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        sha.update(f"{name}|{array.dtype.str}|{array.shape}\n".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


_FRAMEWORK_PACKAGES = {"torch", "keras", "tensorflow", "tf_keras", "builtins", "abc"}  # covered by their versions


def code_sha256(builder: Mapping[str, Any], classes: Sequence[type]) -> str:
    """SHA-256 of the source files of the model's builder and of its module classes (framework classes left
    out: their version is in the key)."""
    import importlib.util
    import inspect

    files = set()
    target = str((builder or {}).get("_target_") or "")
    module = target.rpartition(".")[0] or target.partition(":")[0]
    with contextlib.suppress(Exception):
        spec = importlib.util.find_spec(module) if module else None
        if spec is not None and spec.origin:
            files.add(spec.origin)
    for cls in classes:
        if cls.__module__.split(".")[0] in _FRAMEWORK_PACKAGES:
            continue
        with contextlib.suppress(TypeError, OSError):
            files.add(inspect.getsourcefile(cls) or "")
    sha = hashlib.sha256()
    for name in sorted(f for f in files if f and Path(f).is_file()):
        sha.update(Path(name).read_bytes())
    return sha.hexdigest()


def _part(plugin: Any) -> dict[str, Any]:
    """An exporter's or transform's share of a cache key: its class and that class's code, its settings and the
    versions of the libraries doing the work."""
    import onnx

    cls = type(plugin)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "code": code_sha256({}, list(cls.__mro__[:-1])),
            "options": plugin.options(), "versions": {"onnx": onnx.__version__, **plugin.versions()}}


EXPORT_SEED_OFFSET = 7919  # export examples are drawn with the input set's seed + this: never the checked samples


class ArtifactCache:
    """The runnable model per batch-size key (and with or without probes), made on first use and kept.

    One dynamic-batch export (or the live model, for an eager backend) serves every batch size; a static-batch
    exporter gets an export per size. Exports trace fresh samples (`_example`), never the checked ones; each is
    followed by the transform, calibrated on `samples`. Verify, bench and probes all take their artifacts from
    here, so a benchmark times the very artifact verified.
    """

    def __init__(self, plan: JobPlan, conversion: Conversion, framework: Framework, model: Any,
                 samples: Mapping[str, np.ndarray], sizes: Sequence[int], work_dir: Path,
                 source: Mapping[str, Any] | None = None) -> None:
        self.plan = plan
        self.conversion = conversion
        self.framework = framework
        self.model = model
        self.samples = dict(samples)  # calibration: the golden's inputs, or the input set (export examples: fresh)
        self.sizes = list(sizes)
        self.work_dir = work_dir
        self.records: list[ExportRecord] = []  # every export, in the order made
        self._artifacts: dict[tuple[int | None, bool], Artifact] = {}
        # the export cache (parity.export_cache) shared with other jobs, and what identifies the source model there
        self.store = export_store(plan)
        self.source = dict(source or {})

    def key(self, batch_size: int) -> int | None:
        """Which artifact serves `batch_size`: None for the one shared by every size."""
        exporter = self.conversion.exporter
        return None if exporter is None or exporter.dynamic_batch else batch_size

    def get(self, batch_size: int, probed: bool = False) -> Artifact:
        """The artifact for `batch_size`; its record says whether the export (or transform) failed."""
        slot = (self.key(batch_size), probed)
        if slot not in self._artifacts:
            self._artifacts[slot] = self._make(batch_size, probed)
        return self._artifacts[slot]

    def _make(self, batch_size: int, probed: bool) -> Artifact:
        from parity.diagnostics.probes import probe_output_name

        plan, exporter = self.plan, self.conversion.exporter
        probes = list(plan.model.probes) if probed else []
        model = self.framework.probed(self.model, probes) if probed else self.model
        outputs = [*plan.output_names, *(probe_output_name(p) for p in probes)]
        if exporter is None:
            return Artifact(kind=self.framework.name, input_names=list(plan.input_names), output_names=outputs,
                            module=model, input_axes=dict(plan.input_axes))
        key = self.key(batch_size)
        # a dynamic-batch export needs an example of at least 2 samples, or the exporter may fix the batch axis
        count = batch_size if key is not None else max(2, min(self._available(), max(self.sizes)))
        example = self._example(count)
        tag = f"{exporter.name}{'-probed' if probed else ''}{'' if key is None else f'-b{batch_size}'}"
        what = f"exporting with {exporter.name}" if exporter.writes else f"taking the file as it is ({exporter.name})"
        out_dir = self.work_dir / "artifacts" / tag
        output_axes = {**plan.output_axes, **{probe_output_name(p): 0 for p in probes}}
        feeds = {n: example[n] for n in plan.input_names}

        def export() -> Artifact:
            log.info("%s%s%s", what, " (with probes)" if probed else "",
                     "" if key is None else f" at batch {batch_size}")
            with progress.working(what):
                made = exporter.export(model, feeds, dict(plan.input_axes), outputs, out_dir, batch_size, output_axes)
            if made.record.ok:
                log.info("exported %s (sha256 %s…, %.1fs)", made.path, made.record.sha256[:12], made.record.seconds)
            return made

        if self.store is None or not exporter.writes:  # exporter=prebuilt runs the user's file: nothing to keep
            artifact = export()
        else:
            entry = digest({"stage": "export", "parity": parity_identity(), "exporter": _part(exporter),
                          "source": self._source_identity(), "example": arrays_sha256(feeds),
                          "input_axes": dict(plan.input_axes), "outputs": outputs, "output_axes": output_axes,
                          "batch_size": key, "probes": probes})
            artifact = self._cached(entry, out_dir, export, outputs, f"{plan.model.name} {tag}")
        transform = self.conversion.transform
        artifact = self._transformed(artifact, out_dir.with_name(f"{out_dir.name}-{transform.name}"))
        self.records.append(artifact.record)
        return artifact

    def _cached(self, key: str, out_dir: Path, export: Any, outputs: list[str], label: str) -> Artifact:
        """The export from the cache (a hit: its files in `out_dir`, its record as stored), else made by `export`
        and stored; the record says which (`cache`)."""
        made: list[Artifact] = []

        def make() -> tuple[bool, dict[str, Any], float]:
            made.append(export())
            record = made[0].record
            return record.ok, record.to_dict(), record.seconds or 0.0

        stored, outcome = self.store.get_or_make(key, out_dir, make, label)
        if stored is None:
            artifact = made[0]
        else:
            log.info("export cache hit: %s (key %s…, saved %.1fs)", stored["path"], key[:12], outcome.saved_s or 0)
            known = {f.name for f in dataclasses.fields(ExportRecord)} - {"files", "warnings", "exporter"}
            # this job's exporter name: configs differing only in their name share the entry
            record = ExportRecord(**{k: v for k, v in stored.items() if k in known},
                                  exporter=self.conversion.exporter.name, files=tuple(stored.get("files") or ()),
                                  warnings=tuple(stored.get("warnings") or ()))
            artifact = Artifact(kind=self.conversion.exporter.produces, input_names=list(self.plan.input_names),
                                output_names=list(outputs), path=Path(stored["path"]),
                                record=record, input_axes=dict(self.plan.input_axes))
        return dataclasses.replace(artifact, record=dataclasses.replace(artifact.record, cache=outcome.to_dict()))

    def _transformed(self, artifact: Artifact, out_dir: Path) -> Artifact:
        """The transform applied (from the cache where it holds the same transform of the same export)."""
        transform = self.conversion.transform
        record = artifact.record
        if self.store is None or transform.identity or record is None or not record.ok or \
                artifact.kind != transform.takes:
            return transform.apply(artifact, self.samples, out_dir)
        key = digest({"stage": "transform", "parity": parity_identity(), "transform": _part(transform),
                      "artifact": record.sha256, "input_axes": dict(artifact.input_axes),
                      "batch_size": record.batch_size,
                      "calibration": arrays_sha256(self.samples) if transform.calibrates else None})
        made: list[Artifact] = []

        def make() -> tuple[bool, dict[str, Any], float]:
            made.append(transform.apply(artifact, self.samples, out_dir))
            done = made[0].record.transform or {}
            return bool(done.get("ok")), done, float(done.get("seconds") or 0.0)

        stored, outcome = self.store.get_or_make(key, out_dir, make, f"{self.plan.model.name} {transform.name}")
        if stored is None:
            result = made[0]
        else:
            log.info("export cache hit: %s transform %s (key %s…)", stored["path"], transform.name, key[:12])
            result = dataclasses.replace(artifact, kind=transform.produces, path=Path(stored["path"]),
                                         record=dataclasses.replace(record, transform={**stored,
                                                                                       "name": transform.name}))
        done = {**(result.record.transform or {}), "cache": outcome.to_dict()}
        return dataclasses.replace(result, record=dataclasses.replace(result.record, transform=done))

    def _source_identity(self) -> dict[str, Any]:
        """What decides the source model's graph: its weights (and weights file), its config, and the code of its
        builder and module classes (an edited forward() with the same weights exports differently)."""
        from parity.results import jsonable

        model = {k: v for k, v in jsonable(dataclasses.asdict(self.plan.model)).items() if k not in _NOT_IN_KEY}
        return {"framework": self.framework.name, **self.source, "model": model,
                "code": code_sha256(self.plan.model.builder, self.framework.code_classes(self.model))}

    def _example(self, count: int) -> dict[str, np.ndarray]:
        """The export example: `count` samples drawn afresh from the declared inputs (a seed of their own), never
        the samples the checks compare. An artifact that merely reproduces its example (a trace frozen into
        constants) then fails every check instead of passing on the very inputs it was traced with."""
        return inputs_mod.generate(self.plan.model.inputs, count, self.plan.inputs.seed + EXPORT_SEED_OFFSET)

    def _available(self) -> int:
        """How many samples the calibration set holds (1 for a model without a batch axis)."""
        axes = self.plan.input_axes
        name = next((n for n in self.samples if axes.get(n) is not None), None)
        return int(self.samples[name].shape[axes[name]]) if name is not None else 1


class Sessions:
    """At most one open session on a backend, kept while the artifact stays the same (every batch size of a
    dynamic-batch export runs in one session)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._stack = contextlib.ExitStack()
        self._artifact: Artifact | None = None
        self._session: Any = None

    def open(self, artifact: Artifact) -> Any:
        """The session on `artifact`, opening it (and closing the previous one) if needed; BackendError if it
        cannot be loaded."""
        if self._session is not None and self._artifact is artifact:
            return self._session
        self.close()
        self._session = self._stack.enter_context(self.backend.prepare(artifact))
        self._artifact = artifact
        return self._session

    def close(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._artifact, self._session = None, None

    def __enter__(self) -> Sessions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
