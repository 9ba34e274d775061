"""Per-output error metrics, classification agreement, tolerances and verdicts (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from parity.config import Check, OutputKind
from parity.results import OutputResult, Verdict

GRADES = ((1.0, "excellent"), (5.0, "good"), (10.0, "look"))  # seed 000's grading of probability diffs, in pp


@dataclass(frozen=True)
class Tolerance:
    """The resolved tolerance for one output."""

    atol: float
    rtol: float
    check: Check
    min_top1_agreement: float | None = None
    max_prob_diff_pp: float | None = None


def tolerance_for(tol_cfg: Any, output_name: str) -> Tolerance:
    """Defaults of the tolerance option, overridden by its per_output entry for this output."""
    override = tol_cfg.per_output.get(output_name) if tol_cfg.per_output else None

    def pick(key: str) -> Any:
        value = getattr(override, key, None) if override is not None else None
        return getattr(tol_cfg, key) if value is None else value

    return Tolerance(
        atol=float(pick("atol")),
        rtol=float(pick("rtol")),
        check=Check(pick("check")),
        min_top1_agreement=tol_cfg.min_top1_agreement,
        max_prob_diff_pp=tol_cfg.max_prob_diff_pp,
    )


def grade(prob_diff_pp: float) -> str:
    """Seed 000's grades: < 1 pp excellent, 1-5 good, 5-10 look, > 10 problem."""
    for limit, name in GRADES:
        if prob_diff_pp < limit:
            return name
    return "problem"


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def classification_metrics(reference: np.ndarray, candidate: np.ndarray, kind: OutputKind) -> dict[str, Any]:
    """Top-1 agreement and probability differences (percentage points) over the last axis.

    The probability difference of a sample is the largest |p_ref - p_cand| over its classes;
    `prob_diff_max_pp` / `prob_diff_mean_pp` are the max / mean of that over samples.
    """
    ref = reference.astype(np.float64).reshape(-1, reference.shape[-1])
    cand = candidate.astype(np.float64).reshape(-1, candidate.shape[-1])
    if kind is OutputKind.logits:
        ref, cand = softmax(ref), softmax(cand)
    agree = np.argmax(ref, axis=-1) == np.argmax(cand, axis=-1)
    per_sample = np.max(np.abs(ref - cand), axis=-1) * 100.0
    worst = float(per_sample.max()) if per_sample.size else 0.0
    return {
        "top1_agreement": float(agree.mean()) if agree.size else 1.0,
        "top1_mismatches": int((~agree).sum()),
        "samples": int(agree.size),
        "prob_diff_max_pp": worst,
        "prob_diff_mean_pp": float(per_sample.mean()) if per_sample.size else 0.0,
        "grade": grade(worst),
    }


def error_metrics(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """Difference statistics on the elements where the candidate is finite (computed in float64)."""
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    finite = np.isfinite(cand) & np.isfinite(ref)
    nonfinite = int(np.size(cand) - np.count_nonzero(np.isfinite(cand)))
    diff = np.where(finite, np.abs(cand - ref), 0.0)
    abs_ref = np.where(finite, np.abs(ref), 0.0)
    # relative error over the elements whose golden value is non-zero (|d| / 0 says nothing and overflows sums)
    nonzero = finite & (abs_ref > 0)
    rel = diff[nonzero] / abs_ref[nonzero]
    zero_ref_diff = bool(np.any(diff[finite & (abs_ref == 0)] > 0))
    count = max(int(np.count_nonzero(finite)), 1)
    outside = (diff > atol + rtol * abs_ref) | ~finite  # non-finite on either side never counts as close
    ref_f = np.where(finite, ref, 0.0).ravel()
    cand_f = np.where(finite, cand, 0.0).ravel()
    ref_norm, cand_norm = float(np.linalg.norm(ref_f)), float(np.linalg.norm(cand_f))
    l2 = float(np.linalg.norm(diff))
    if ref_norm == 0.0 and cand_norm == 0.0:
        cosine = 1.0
    elif ref_norm == 0.0 or cand_norm == 0.0:
        cosine = 0.0
    else:
        cosine = float(np.dot(ref_f, cand_f) / (ref_norm * cand_norm))
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    return {
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "mean_abs": float(diff.sum() / count),
        "median_abs": float(np.median(diff[finite])) if finite.any() else 0.0,
        "max_rel": float(rel.max()) if rel.size else (float("inf") if zero_ref_diff else 0.0),
        "mean_rel": float(rel.mean()) if rel.size else (float("inf") if zero_ref_diff else 0.0),
        "median_rel": float(np.median(rel)) if rel.size else (float("inf") if zero_ref_diff else 0.0),
        "l2_diff": l2,
        "l2_rel": l2 / ref_norm if ref_norm > 0 else (0.0 if l2 == 0 else float("inf")),
        "cosine": cosine,
        "pct_outside": 100.0 * float(outside.sum()) / max(outside.size, 1),
        "worst_index": [int(i) for i in worst],
        "worst_reference": float(reference[worst]) if diff.size else None,
        "worst_candidate": float(candidate[worst]) if diff.size else None,
        "nonfinite": nonfinite,
        "golden_nonfinite": int(np.size(ref) - np.count_nonzero(np.isfinite(ref))),
    }


def within(metrics: dict[str, Any], tol: Tolerance) -> bool:
    """Whether error metrics satisfy the tolerance's check statistic."""
    if tol.check is Check.elementwise:
        return metrics["pct_outside"] == 0.0
    if tol.check is Check.l2_rel:
        return metrics["l2_rel"] <= tol.rtol
    stat = tol.check.value
    return metrics[f"{stat}_abs"] <= tol.atol or metrics[f"{stat}_rel"] <= tol.rtol


def compare_output(
    name: str, reference: np.ndarray, candidate: np.ndarray, tol: Tolerance, kind: OutputKind = OutputKind.tensor
) -> OutputResult:
    """Compare one output: dtype, then shape, then values; NaN/Inf in the candidate never passes."""
    reference = np.asarray(reference)
    candidate = np.asarray(candidate)
    base = {
        "name": name,
        "reference_dtype": str(reference.dtype),
        "candidate_dtype": str(candidate.dtype),
        "reference_shape": tuple(int(d) for d in reference.shape),
        "candidate_shape": tuple(int(d) for d in candidate.shape),
        "atol": tol.atol,
        "rtol": tol.rtol,
        "check": tol.check.value,
    }
    if reference.dtype != candidate.dtype:
        return OutputResult(
            verdict=Verdict.FAIL, message=f"dtype mismatch: golden {reference.dtype}, got {candidate.dtype}", **base
        )
    if reference.shape != candidate.shape:
        return OutputResult(
            verdict=Verdict.FAIL,
            message=f"shape mismatch: golden {tuple(reference.shape)}, got {tuple(candidate.shape)}",
            **base,
        )
    metrics = error_metrics(reference, candidate, tol.atol, tol.rtol)
    classification = None
    problems: list[str] = []
    if metrics["nonfinite"]:
        problems.append(f"{metrics['nonfinite']} NaN/Inf value(s) in the candidate")
    if metrics["golden_nonfinite"]:
        problems.append(f"{metrics['golden_nonfinite']} NaN/Inf value(s) in the golden")
    if not within(metrics, tol):
        if tol.check is Check.elementwise:
            problems.append(
                f"{metrics['pct_outside']:.4g}% of elements outside atol={tol.atol:g} rtol={tol.rtol:g} "
                f"(max abs {metrics['max_abs']:.3g} at {metrics['worst_index']})"
            )
        elif tol.check is Check.l2_rel:
            problems.append(f"relative L2 error {metrics['l2_rel']:.3g} > rtol {tol.rtol:g}")
        else:
            stat = tol.check.value
            problems.append(
                f"{stat} abs {metrics[stat + '_abs']:.3g} > atol {tol.atol:g} and "
                f"{stat} rel {metrics[stat + '_rel']:.3g} > rtol {tol.rtol:g}"
            )
    if kind in (OutputKind.logits, OutputKind.probabilities) and reference.ndim >= 1 and reference.size:
        classification = classification_metrics(reference, candidate, kind)
        if tol.min_top1_agreement is not None and classification["top1_agreement"] < tol.min_top1_agreement:
            problems.append(
                f"top-1 agreement {classification['top1_agreement']:.2%} < {tol.min_top1_agreement:.2%}"
            )
        if tol.max_prob_diff_pp is not None and classification["prob_diff_max_pp"] > tol.max_prob_diff_pp:
            problems.append(
                f"probability diff {classification['prob_diff_max_pp']:.3g} pp > {tol.max_prob_diff_pp:g} pp"
            )
    verdict = Verdict.FAIL if problems else Verdict.PASS
    message = "; ".join(problems) if problems else "within tolerance"
    return OutputResult(verdict=verdict, message=message, metrics=metrics, classification=classification, **base)
