"""mode=compare_preprocess: two image preprocessing pipelines on the same images, and what their difference does to
the model's outputs (seed 000: OpenCV INTER_LINEAR against a triangle filter; seed 001 compared its PyTorch and
JavaScript preprocessing before anything else).

Pipeline a is inputs.preprocess; pipeline b is the same with compare_preprocess.against's changes. Per image and
over all of them: the tensors' max / mean |a - b| and the share of values that differ at all; the source model
(its own framework, eager, CPU) on both: per classification output the top-1 of each, their agreement and the
probability difference in percentage points with seed 000's grades; per other output its max |a - b|.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from parity import preprocess
from parity.compare import classification_metrics
from parity.config import OutputKind, PreprocessConfig
from parity.errors import ConfigError, DataError
from parity.inputs import generate
from parity.sources import check, image_input
from parity.results import Verdict

log = logging.getLogger("parity")
_SIZES = ("resize", "resize_shorter")  # one replaces the other


def pipeline_b(plan: Any) -> PreprocessConfig:
    """inputs.preprocess with compare_preprocess.against's set fields (resize and resize_shorter replace each
    other); ConfigError when b is invalid or the same as a."""
    changes = {k: v for k, v in dataclasses.asdict(plan.comparing.against).items() if v is not None}
    if not changes:
        raise ConfigError("mode=compare_preprocess needs the other pipeline: set compare_preprocess.against.<step> "
                          "(e.g. compare_preprocess.against.library=opencv "
                          "compare_preprocess.against.interpolation=INTER_LINEAR)")
    base = plan.inputs.preprocess
    for size in _SIZES:
        if size in changes:
            other = _SIZES[1 - _SIZES.index(size)]
            changes.setdefault(other, None)
    b = dataclasses.replace(base, **changes)
    preprocess.check(b, "compare_preprocess.against")
    if preprocess.steps(b) == preprocess.steps(base):
        raise ConfigError("compare_preprocess.against changes nothing: pipeline b equals inputs.preprocess")
    return b


def run(plan: Any, framework: Any, model: Any) -> dict[str, Any]:
    """Both pipelines on every image of inputs.path, and the model on both; the comparison as the report holds it."""
    a_steps, b_steps = plan.inputs.preprocess, pipeline_b(plan)
    files = preprocess.image_files(plan.inputs.path)
    name = image_input(plan)
    log.info("preprocessing %d image(s) through pipeline a (%s %s) and b (%s %s)", len(files), a_steps.library,
             a_steps.interpolation, b_steps.library, b_steps.interpolation)
    a, b = preprocess.run(files, a_steps), preprocess.run(files, b_steps)
    if a.shape != b.shape:
        raise DataError(f"the pipelines make tensors of different shapes (a {list(a.shape)}, b {list(b.shape)}); "
                        f"the model takes one")
    others = generate([s for s in plan.model.inputs if s.name != name], len(files), plan.inputs.seed)
    feeds_a, feeds_b = {name: a, **others}, {name: b, **others}
    for feeds in (feeds_a, feeds_b):
        check(plan, feeds, f"inputs.path {plan.inputs.path}", expected=None)
    outs_a = framework.run(model, feeds_a, plan.input_names, plan.output_names)
    outs_b = framework.run(model, feeds_b, plan.input_names, plan.output_names)
    tolerances = plan.backend_tolerance  # per output: tolerance.per_output entries apply
    rows = []
    for index, path in enumerate(files):
        row = {"image": path.name, **_tensor_stats(a[index], b[index]), "outputs": {}}
        for spec in plan.model.outputs:
            row["outputs"][spec.name] = _output_stats(outs_a[spec.name], outs_b[spec.name], spec, index)
        rows.append(row)
    overall = {"image": "all", **_tensor_stats(a, b), "outputs": {}}
    problems = []
    for spec in plan.model.outputs:
        stats = _output_stats(outs_a[spec.name], outs_b[spec.name], spec, None)
        overall["outputs"][spec.name] = stats
        if "top1_agreement" in stats:
            problems += [f"{spec.name}: {p}" for p in tolerances(spec.name).classification_violations(stats)]
    judged = any(tolerances(s.name).min_top1_agreement is not None or tolerances(s.name).max_prob_diff_pp is not None
                 for s in plan.model.outputs)
    message = "; ".join(problems) if problems else \
        ("within tolerance" if judged else "reported (no tolerance.min_top1_agreement / max_prob_diff_pp set)")
    return {"a": preprocess.describe(a_steps), "b": preprocess.describe(b_steps), "image_input": name,
            "images": rows, "overall": overall, "verdict": (Verdict.FAIL if problems else Verdict.PASS).value,
            "message": message}


def _tensor_stats(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return {"max_abs": float(diff.max()) if diff.size else 0.0, "mean_abs": float(diff.mean()) if diff.size else 0.0,
            "pct_differ": float(100.0 * np.count_nonzero(a != b) / a.size) if a.size else 0.0}


def _output_stats(out_a: np.ndarray, out_b: np.ndarray, spec: Any, index: int | None) -> dict[str, Any]:
    axis = spec.batch_axis
    if index is not None and axis is not None:
        out_a, out_b = np.take(out_a, [index], axis=axis), np.take(out_b, [index], axis=axis)
    kind = OutputKind(spec.kind)
    diff = np.abs(np.asarray(out_a, dtype=np.float64) - np.asarray(out_b, dtype=np.float64))
    stats: dict[str, Any] = {"max_abs": float(diff.max()) if diff.size else 0.0}
    if kind in (OutputKind.logits, OutputKind.probabilities) and out_a.ndim >= 1 and out_a.size:
        metrics = classification_metrics(out_a, out_b, kind)
        stats.update({"top1_agreement": metrics["top1_agreement"], "prob_diff_max_pp": metrics["prob_diff_max_pp"],
                      "prob_diff_mean_pp": metrics["prob_diff_mean_pp"], "grade": metrics["grade"]})
        if index is not None:  # one image: the class each pipeline's input made the model pick
            stats["top1_a"] = int(np.argmax(out_a.reshape(-1, out_a.shape[-1])[0]))
            stats["top1_b"] = int(np.argmax(out_b.reshape(-1, out_b.shape[-1])[0]))
    return stats
