"""Which stage a FAIL comes from, at its first failing batch size, from three cheap comparisons of the outputs:

- framework drift: the source model itself no longer reproduces its golden (the reference check failed);
- conversion: the artifact, run on the reference runtime (ONNX Runtime CPU, graph optimisations off), computes
  something else than the source model on the same inputs;
- runtime: the backend computes something else than the reference runtime on the same artifact.

Each stage is compared under the backend tolerance of every output. Where every stage is within tolerance of
the next although the backend fails against the golden, the class is "unlocated" and the message says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from parity import inputs as inputs_mod
from parity.checks import compare
from parity.errors import ParityError, one_line
from parity.results import CheckResult, FaultReport, Verdict

log = logging.getLogger("parity")
REFERENCE_RUNTIME = "onnxruntime CPU, graph optimisations disabled"


def first_failure(checks: list[CheckResult]) -> int | None:
    """The first batch size whose reference or backend check FAILed."""
    return next((c.batch_size for c in checks if c.verdict is Verdict.FAIL), None)


def _stage(result: CheckResult) -> dict[str, Any]:
    worst = max((o.metrics.get("max_abs", 0.0) for o in result.outputs if o.metrics), default=None)
    return {"within_tolerance": result.verdict is Verdict.PASS, "max_abs": worst, "message": result.message}


def classify(plan: Any, cache: Any, golden_inputs: Mapping[str, np.ndarray], checks: list[CheckResult],
             candidates: Mapping[int, Mapping[str, np.ndarray]]) -> FaultReport | None:
    """The fault class of a FAILing job; None when nothing FAILed."""
    batch = first_failure(checks)
    if batch is None:
        return None
    reference = next((c for c in checks if c.check == "reference" and c.batch_size == batch), None)
    stages: dict[str, Any] = {}
    if reference is not None and reference.verdict is Verdict.FAIL:
        stages["source_vs_golden"] = _stage(reference)
        return FaultReport("framework_drift", batch, "the source model no longer reproduces its golden: the "
                           "framework, the model code or its weights changed (regenerate the golden only if that "
                           "change is intended)", stages=stages)
    candidate = candidates.get(batch)
    if candidate is None:
        return FaultReport("unlocated", batch, "the backend produced no outputs to classify", stages=stages)
    feeds = inputs_mod.take(dict(golden_inputs), dict(plan.input_axes), batch)
    try:
        source = cache.framework.run(cache.model, feeds, plan.input_names, plan.output_names)
        if cache.conversion.exporter is None:  # an eager backend runs the source model itself
            runtime = compare(plan, "backend", batch, source, candidate, plan.backend_tolerance, 0.0)
            stages["backend_vs_source"] = _stage(runtime)
            if runtime.verdict is Verdict.FAIL:
                return FaultReport("runtime", batch, f"backend '{cache.conversion.backend.name}' runs the source "
                                   "model itself and computes something else than its eager CPU run", stages=stages)
            return FaultReport("unlocated", batch, "the backend agrees with the eager CPU run within tolerance, "
                               "which reproduces the golden: no stage is out of tolerance on its own", stages=stages)
        artifact = cache.get(batch)
        if artifact.kind != "onnx":
            return FaultReport("unlocated", batch, f"the artifact is {artifact.kind}, not ONNX: no reference "
                               "runtime to tell conversion from runtime", stages=stages)
        from parity.backends.onnxruntime import OrtBackend, OrtBackendConfig

        ort = OrtBackend(OrtBackendConfig(name="ort_cpu_noopt", graph_optimization_level="disable_all"))
        why = ort.availability()
        if why is not None:
            return FaultReport("unlocated", batch, f"no reference runtime here ({why})", stages=stages)
        with ort.prepare(artifact) as session:
            on_reference = session.infer(feeds)
    except ParityError as exc:
        return FaultReport("unlocated", batch, f"could not classify: {one_line(exc)}", stages=stages)
    conversion = compare(plan, "backend", batch, source, on_reference, plan.backend_tolerance, 0.0)
    runtime = compare(plan, "backend", batch, on_reference, candidate, plan.backend_tolerance, 0.0)
    stages["artifact_vs_source"] = _stage(conversion)
    stages["backend_vs_artifact"] = _stage(runtime)
    if conversion.verdict is Verdict.FAIL:
        fault = FaultReport("conversion", batch, "the artifact computes something else than the source model on "
                            "the same inputs (on the reference runtime): localize=source names the module",
                            REFERENCE_RUNTIME, stages)
    elif runtime.verdict is Verdict.FAIL:
        fault = FaultReport("runtime", batch, f"backend '{cache.conversion.backend.name}' computes something else "
                            "than the reference runtime on the same artifact: localize=all names the node",
                            REFERENCE_RUNTIME, stages)
    else:
        fault = FaultReport("unlocated", batch, "the artifact matches the source and the backend matches the "
                            "artifact, each within tolerance; their errors only add up past it against the golden",
                            REFERENCE_RUNTIME, stages)
    log.info("fault class: %s (b=%d)", fault.fault_class, batch)
    return fault
