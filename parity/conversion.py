"""What runs the model: backend, exporter and transform built from the plan, their compatibility derived from
what each declares, and the one artifact cache (export, then transform) shared by verify, bench and probes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity import inputs as inputs_mod
from parity import plugins, progress
from parity.artifact import Artifact
from parity.errors import ConfigError, one_line
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


EXPORT_SEED_OFFSET = 7919  # export examples are drawn with the input set's seed + this: never the checked samples


class ArtifactCache:
    """The runnable model per batch-size key (and with or without probes), made on first use and kept.

    One dynamic-batch export (or the live model, for an eager backend) serves every batch size; a static-batch
    exporter gets an export per size. Exports trace fresh samples (`_example`), never the checked ones; each is
    followed by the transform, calibrated on `samples`. Verify, bench and probes all take their artifacts from
    here, so a benchmark times the very artifact verified.
    """

    def __init__(self, plan: JobPlan, conversion: Conversion, framework: Framework, model: Any,
                 samples: Mapping[str, np.ndarray], sizes: Sequence[int], work_dir: Path) -> None:
        self.plan = plan
        self.conversion = conversion
        self.framework = framework
        self.model = model
        self.samples = dict(samples)  # calibration: the golden's inputs, or the input set (export examples: fresh)
        self.sizes = list(sizes)
        self.work_dir = work_dir
        self.records: list[ExportRecord] = []  # every export, in the order made
        self._artifacts: dict[tuple[int | None, bool], Artifact] = {}

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
        log.info("%s%s%s", what, " (with probes)" if probed else "", "" if key is None else f" at batch {batch_size}")
        out_dir = self.work_dir / "artifacts" / tag
        output_axes = {**plan.output_axes, **{probe_output_name(p): 0 for p in probes}}
        with progress.working(what):
            artifact = exporter.export(model, {n: example[n] for n in plan.input_names}, dict(plan.input_axes),
                                       outputs, out_dir, batch_size, output_axes)
        if artifact.record.ok:
            log.info("exported %s (sha256 %s…, %.1fs)", artifact.path, artifact.record.sha256[:12],
                     artifact.record.seconds)
        transform = self.conversion.transform
        artifact = transform.apply(artifact, self.samples, out_dir.with_name(f"{out_dir.name}-{transform.name}"))
        self.records.append(artifact.record)
        return artifact

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
