"""The checks of a verify job: the reference check, the backend check, determinism, and the golden's fit."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from parity import inputs as inputs_mod
from parity.compare import ToleranceSet, compare_output, difference
from parity.config import OutputKind
from parity.errors import ConfigError, GoldenStaleError, ModelError, ParityError, one_line
from parity.plan import JobPlan
from parity.results import CheckResult, DeterminismResult, Verdict, overall
from parity.sources import stale_reason

log = logging.getLogger("parity")


def compare(plan: JobPlan, check: str, batch: int, expected: Mapping[str, np.ndarray],
            candidate: Mapping[str, np.ndarray], tolerances: ToleranceSet, seconds: float) -> CheckResult:
    """Every declared output of `candidate` against the golden's, each under its own tolerance."""
    results = []
    for spec in plan.model.outputs:
        if spec.name not in candidate:
            return CheckResult(check, batch, Verdict.ERROR, f"output '{spec.name}' missing from the candidate")
        results.append(compare_output(spec.name, expected[spec.name], candidate[spec.name], tolerances(spec.name),
                                      OutputKind(spec.kind)))
    failing = [r.name for r in results if r.verdict is not Verdict.PASS]
    message = "all outputs within tolerance" if not failing else f"outside tolerance: {', '.join(failing)}"
    return CheckResult(check, batch, overall(r.verdict for r in results), message, tuple(results), seconds)


def reference(plan: JobPlan, framework: Any, model: Any, feeds: Mapping[str, np.ndarray],
              expected: Mapping[str, np.ndarray], batch: int) -> CheckResult:
    """The live source model against the golden: did the framework (or the model code) drift?"""
    start = time.perf_counter()
    try:
        live = framework.run(model, feeds, plan.input_names, plan.output_names)
    except ParityError as exc:
        return error("reference", batch, exc)
    for name, value in live.items():  # a golden of other dtypes was not made by this model: bad, not a FAIL
        stored = expected.get(name)
        if stored is not None and np.asarray(value).dtype != stored.dtype:
            raise GoldenStaleError(f"golden output '{name}' is {stored.dtype}, the model returns "
                                   f"{np.asarray(value).dtype}: the golden was not made by this model")
    return compare(plan, "reference", batch, expected, live, plan.reference_tolerance, time.perf_counter() - start)


class BackendRun(NamedTuple):
    result: CheckResult
    candidate: dict[str, np.ndarray] | None  # the backend's outputs, when it ran
    session: Any  # the open session they came from (parity.backends.base.Session), when it ran
    runtime: dict[str, Any] | None  # what really ran (session.runtime_info()), when a session opened


def backend(plan: JobPlan, cache: Any, sessions: Any, feeds: Mapping[str, np.ndarray],
            expected: Mapping[str, np.ndarray], batch: int) -> BackendRun:
    """The converted model on the backend against the golden: is the conversion right? On the session of the
    batch size's artifact (parity.conversion: the cache makes it, the pool keeps its session open)."""
    if cache.conversion.skip_reason is not None:
        return BackendRun(skipped("backend", batch, cache.conversion.skip_reason), None, None, None)
    artifact = cache.get(batch)
    if artifact.failure():
        return BackendRun(CheckResult("backend", batch, Verdict.ERROR, artifact.failure()), None, None, None)
    try:
        session = sessions.open(artifact)
    except ParityError as exc:
        return BackendRun(error("backend", batch, exc), None, None, None)
    start = time.perf_counter()
    try:
        candidate = session.infer(feeds)
    except ParityError as exc:
        runtime = session.runtime_info()  # with what a client reported before it failed
        sessions.close()  # a session whose run failed is not trusted with the next size: that one reloads
        return BackendRun(error("backend", batch, exc), None, None, runtime)
    seconds = time.perf_counter() - start
    runtime = session.runtime_info()  # after the run: an external client says what ran once it has run
    result = compare(plan, "backend", batch, expected, candidate, plan.backend_tolerance, seconds)
    return BackendRun(result, candidate, session, runtime)


def error(check: str, batch: int, exc: BaseException) -> CheckResult:
    return CheckResult(check, batch, Verdict.ERROR, one_line(exc))


def skipped(check: str, batch: int, reason: str) -> CheckResult:
    return CheckResult(check, batch, Verdict.SKIP, reason)


def determinism(session: Any, feeds: Mapping[str, np.ndarray], first: Mapping[str, np.ndarray], batch: int,
                repeats: int) -> DeterminismResult:
    """Run the session `repeats - 1` more times on the same inputs; bitwise identical, or the max difference."""
    per_output = {name: 0.0 for name in first}
    identical = True
    for _ in range(repeats - 1):
        again = session.infer(feeds)
        for name, value in first.items():
            if not np.array_equal(value, again[name], equal_nan=True):
                identical = False
                per_output[name] = max(per_output[name], difference(value, again[name])["max_abs"])
    worst = max(per_output.values(), default=0.0)
    log.info("b=%d determinism over %d runs: %s", batch, repeats,
             "bitwise identical" if identical else f"max run-to-run diff {worst:.3g}")
    return DeterminismResult(batch, repeats, identical, worst, per_output)


def holds_samples(array: np.ndarray, axis: int | None, num_samples: int) -> bool:
    """Whether `array` holds exactly `num_samples` along its batch axis (an output without one: always)."""
    return axis is None or (array.ndim > axis and array.shape[axis] == num_samples)


def reference_outputs(plan: JobPlan, outputs: Mapping[str, np.ndarray], num_samples: int) -> None:
    """What a golden may hold: finite values, and every batched output has num_samples along its batch axis."""
    for spec in plan.model.outputs:
        array = outputs[spec.name]
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array))) if inputs_mod.floating(array.dtype) else 0
        if bad:
            raise ModelError(f"reference output '{spec.name}' has {bad} NaN/Inf value(s); a golden must be finite")
        axis = spec.batch_axis
        if not holds_samples(array, axis, num_samples):
            raise ConfigError(
                f"output '{spec.name}' has shape {list(array.shape)}: axis {axis} is not the batch of {num_samples}; "
                f"set its batch_axis (null if it has none)"
            )


def golden_fits(plan: JobPlan, golden: Any, weights: str, regenerate: str, sizes: tuple[int, ...],
                weights_file: Mapping[str, Any] | None = None) -> None:
    """The golden was made from these weights (and this weights file, when one is loaded) and holds exactly the
    declared inputs and outputs, with enough samples for every batch size; GoldenStaleError (with the command
    that remakes it) or ConfigError."""
    inputs_changed = stale_reason(plan, golden.manifest)
    if inputs_changed:
        raise GoldenStaleError(f"golden is stale: {inputs_changed}; if the change is intended, regenerate with: "
                               f"{regenerate}")
    recorded = golden.manifest.get("weights_file") or {}
    now_sha = (weights_file or {}).get("sha256")
    if recorded.get("sha256") != now_sha:
        was = f"{recorded.get('path')} ({str(recorded['sha256'])[:12]}…)" if recorded.get("sha256") else "no file"
        now_is = f"{weights_file['path']} ({now_sha[:12]}…)" if weights_file else "no file"
        raise GoldenStaleError(f"golden is stale: the weights file changed (golden made from {was}, model now "
                               f"loads {now_is}); if the change is intended, regenerate with: {regenerate}")
    if not golden.manifest.get("weights_sha256"):
        raise GoldenStaleError(f"golden manifest {golden.path / 'manifest.json'} records no weights_sha256, so it "
                               f"cannot be tied to these weights; regenerate with: {regenerate}")
    if weights != golden.manifest.get("weights_sha256"):
        raise GoldenStaleError(
            f"golden is stale: weights changed (golden {str(golden.manifest.get('weights_sha256'))[:12]}…, "
            f"model now {weights[:12]}…); if the change is intended, regenerate with: {regenerate}"
        )
    declared_in = {s.name: (inputs_mod.concrete_shape(s.shape, golden.num_samples), s.dtype) for s in plan.model.inputs}
    stored_in = {k: (tuple(v.shape), str(v.dtype)) for k, v in golden.inputs.items()}
    if declared_in != stored_in:
        raise GoldenStaleError(f"golden is stale: declared inputs {declared_in} differ from the stored {stored_in}; "
                               f"regenerate with: {regenerate}")
    if set(plan.output_names) != set(golden.outputs):
        raise GoldenStaleError(f"golden is stale: declared outputs {list(plan.output_names)} differ from the stored "
                               f"{sorted(golden.outputs)}; regenerate with: {regenerate}")
    for spec in plan.model.outputs:  # every batched output holds exactly the golden's samples on its batch axis
        array, axis = golden.outputs[spec.name], spec.batch_axis
        if not holds_samples(array, axis, golden.num_samples):
            raise GoldenStaleError(
                f"golden output '{spec.name}' has shape {list(array.shape)}: axis {axis} does not hold the golden's "
                f"{golden.num_samples} samples (model.outputs batch_axis {axis}; null if it has none); if the "
                f"config is right, regenerate with: {regenerate}")
    too_big = [b for b in sizes if b > golden.num_samples]
    if too_big:
        raise ConfigError(f"batch size(s) {too_big} exceed the golden's {golden.num_samples} samples")
