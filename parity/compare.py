"""Difference statistics of two arrays, the one tolerance rule, classification agreement (numpy only).

Every comparison in parity (output checks, determinism, layer probes, localisation, a sweep's pairwise matrix)
measures with `difference` and judges with `Tolerance.violations` / `Tolerance.accepts`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from parity.results import OutputResult, Verdict

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


GRADES = ((1.0, "excellent"), (5.0, "good"), (10.0, "look"))  # seed 000's grading of probability diffs, in pp


@dataclass(frozen=True)
class Tolerance:
    """The resolved tolerance for one output: which statistic must hold (`check`), and its limits."""

    atol: float
    rtol: float
    check: Check = Check.elementwise
    min_top1_agreement: float | None = None
    max_prob_diff_pp: float | None = None

    def __post_init__(self) -> None:
        """A NaN limit compares false with every difference and inf accepts any: both would pass anything."""
        for name in ("atol", "rtol", "min_top1_agreement", "max_prob_diff_pp"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"tolerance {name} must be a finite number >= 0, got {value}")

    def violations(self, stats: Mapping[str, Any], classification: Mapping[str, Any] | None = None) -> list[str]:
        """Why `stats` (from `difference(reference, candidate, self)`) fail this tolerance; [] when they pass.

        NaN/Inf on either side never passes. `elementwise`: every element within atol + rtol·|reference|
        (numpy.allclose's rule); `max`/`mean`/`median`: that statistic of |d| <= atol, or of |d|/|reference| <=
        rtol (Polygraphy's check_error_stat); `l2_rel`: ||d|| / ||reference|| <= rtol. With `classification`
        (top-1 agreement, probability differences), its thresholds apply too where they are set.
        """
        problems = []
        if stats["nonfinite"]:
            problems.append(f"{stats['nonfinite']} NaN/Inf value(s) in the candidate")
        if stats["golden_nonfinite"]:
            problems.append(f"{stats['golden_nonfinite']} NaN/Inf value(s) in the golden")
        if self.check is Check.elementwise:
            if stats["pct_outside"] is None:
                raise ValueError("elementwise needs difference(..., tolerance) to count the elements outside")
            if stats["pct_outside"] > 0.0:
                problems.append(f"{stats['pct_outside']:.4g}% of elements outside atol={self.atol:g} "
                                f"rtol={self.rtol:g} (max abs {stats['max_abs']:.3g} at {stats['worst_index']})")
        elif self.check is Check.l2_rel:
            if not stats["l2_rel"] <= self.rtol:
                problems.append(f"relative L2 error {stats['l2_rel']:.3g} > rtol {self.rtol:g}")
        else:
            stat = self.check.value
            if not (stats[f"{stat}_abs"] <= self.atol or stats[f"{stat}_rel"] <= self.rtol):
                problems.append(f"{stat} abs {stats[stat + '_abs']:.3g} > atol {self.atol:g} and "
                                f"{stat} rel {stats[stat + '_rel']:.3g} > rtol {self.rtol:g}")
        if classification is not None:
            problems += self.classification_violations(classification)
        return problems

    def classification_violations(self, classification: Mapping[str, Any]) -> list[str]:
        """Why top-1 agreement / probability differences (`classification_metrics`) fail this tolerance's
        thresholds; [] when they pass or none is set."""
        problems = []
        if self.min_top1_agreement is not None and classification["top1_agreement"] < self.min_top1_agreement:
            problems.append(f"top-1 agreement {classification['top1_agreement']:.2%} < "
                            f"{self.min_top1_agreement:.2%}")
        if self.max_prob_diff_pp is not None and classification["prob_diff_max_pp"] > self.max_prob_diff_pp:
            problems.append(f"probability diff {classification['prob_diff_max_pp']:.3g} pp > "
                            f"{self.max_prob_diff_pp:g} pp")
        return problems

    def accepts(self, stats: Mapping[str, Any], classification: Mapping[str, Any] | None = None) -> bool:
        return not self.violations(stats, classification)


@dataclass(frozen=True)
class ToleranceSet:
    """Tolerances by output (or probe) name; `default` for every name without an entry of its own."""

    default: Tolerance
    per_name: Mapping[str, Tolerance]

    def __call__(self, name: str) -> Tolerance:
        return self.per_name.get(name, self.default)


def difference(reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance | None = None,
               profile: bool = False) -> dict[str, Any]:
    """Statistics of candidate - reference over the elements finite on both sides, computed in float64.

    Same shapes required. `pct_outside`, the share of elements outside atol + rtol·|reference| (non-finite ones
    always count as outside), needs a `tolerance`; without one it is None. `profile`: also the error profile
    (`error_profile`) under "profile", from the same pass.
    """
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    ref, cand, finite, diff = _float_diff(reference, candidate)
    abs_ref = np.where(finite, np.abs(ref), 0.0)
    # relative error over the elements whose reference value is non-zero (|d| / 0 says nothing and overflows sums)
    nonzero = finite & (abs_ref > 0)
    rel = diff[nonzero] / abs_ref[nonzero]
    zero_ref_diff = bool(np.any(diff[finite & (abs_ref == 0)] > 0))
    count = max(int(np.count_nonzero(finite)), 1)
    ref_f, cand_f = np.where(finite, ref, 0.0).ravel(), np.where(finite, cand, 0.0).ravel()
    ref_norm, cand_norm = float(np.linalg.norm(ref_f)), float(np.linalg.norm(cand_f))
    l2 = float(np.linalg.norm(diff))
    if ref_norm == 0.0 and cand_norm == 0.0:
        cosine = 1.0
    elif ref_norm == 0.0 or cand_norm == 0.0:
        cosine = 0.0
    else:
        cosine = float(np.dot(ref_f, cand_f) / (ref_norm * cand_norm))
    pct_outside = None
    if tolerance is not None:
        outside = (diff > tolerance.atol + tolerance.rtol * abs_ref) | ~finite
        pct_outside = 100.0 * float(outside.sum()) / max(outside.size, 1)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    no_rel = float("inf") if zero_ref_diff else 0.0
    return {
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "mean_abs": float(diff.sum() / count),
        "median_abs": float(np.median(diff[finite])) if finite.any() else 0.0,
        "max_rel": float(rel.max()) if rel.size else no_rel,
        "mean_rel": float(rel.mean()) if rel.size else no_rel,
        "median_rel": float(np.median(rel)) if rel.size else no_rel,
        "l2_diff": l2,
        "l2_rel": l2 / ref_norm if ref_norm > 0 else (0.0 if l2 == 0 else float("inf")),
        "cosine": cosine,
        "pct_outside": pct_outside,
        "worst_index": [int(i) for i in worst],
        "worst_reference": float(reference[worst]) if diff.size else None,
        "worst_candidate": float(candidate[worst]) if diff.size else None,
        "nonfinite": int(np.size(cand) - np.count_nonzero(np.isfinite(cand))),
        "golden_nonfinite": int(np.size(ref) - np.count_nonzero(np.isfinite(ref))),
        **({"profile": _profile(ref.ravel(), cand.ravel(), finite.ravel(), diff.ravel(), reference.shape,
                                tolerance)} if profile else {}),
    }


PROFILE_WORST = 8  # the elements an output's profile lists, largest |d| first
PROFILE_BINS_PER_DECADE = 4
PROFILE_MAX_BINS = 64


def error_profile(reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance | None = None) -> dict[str, Any]:
    """Where an output's error lies, for reports a person reads: a histogram of |candidate - reference| on
    log-spaced bins (PROFILE_BINS_PER_DECADE per decade, from the smallest non-zero difference's decade to the
    largest's; exact zeros, and non-finite elements or differences, counted apart), and the PROFILE_WORST
    elements with the largest difference (index, golden, candidate, |d|, and the elementwise allowance
    atol + rtol·|golden|). Float64 copies of both arrays: integers above 2**53 lose their last digits here."""
    reference = np.asarray(reference)
    ref, cand, finite, diff = _float_diff(reference, np.asarray(candidate))
    return _profile(ref.ravel(), cand.ravel(), finite.ravel(), diff.ravel(), reference.shape, tolerance)


def _float_diff(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, ...]:
    """Both sides in float64, where both are finite, and |candidate - reference| there (0 elsewhere)."""
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    finite = np.isfinite(cand) & np.isfinite(ref)
    with np.errstate(over="ignore", invalid="ignore"):
        diff = np.where(finite, np.abs(cand - ref), 0.0)
    return ref, cand, finite, diff


def _profile(ref: np.ndarray, cand: np.ndarray, finite: np.ndarray, diff: np.ndarray, shape: tuple[int, ...],
             tolerance: Tolerance | None) -> dict[str, Any]:
    """error_profile from flat float64 arrays (`_float_diff`)."""
    finite = finite & np.isfinite(diff)  # a difference of two huge finite values can overflow: counted as non-finite
    positive = diff[finite & (diff > 0)]
    edges: list[float] = []
    counts: list[int] = []
    if positive.size:
        # decades from the smallest difference's to the largest's; 1e-323 at the least (10**-324 is 0.0)
        low = max(math.floor(math.log10(float(positive.min()))), -323)
        high = max(math.ceil(math.log10(float(positive.max()))), low + 1)
        bins = min((high - low) * PROFILE_BINS_PER_DECADE, PROFILE_MAX_BINS)
        hist, exps = np.histogram(np.clip(np.log10(positive), low, high), bins=bins, range=(low, high))
        edges = [float(10.0 ** e) for e in exps]
        counts = [int(c) for c in hist]
    worst = []
    if diff.size:
        k = min(PROFILE_WORST, diff.size)
        order = np.argpartition(np.where(finite, diff, np.inf), diff.size - k)[diff.size - k:]
        order = order[np.argsort(-np.where(finite, diff, np.inf)[order], kind="stable")]
        for flat in order:
            g, c = float(ref[flat]), float(cand[flat])
            entry = {"index": [int(i) for i in np.unravel_index(int(flat), shape)], "golden": g, "candidate": c,
                     "abs_diff": float(diff[flat]) if finite[flat] else None}
            if tolerance is not None:
                entry["allowed"] = tolerance.atol + tolerance.rtol * abs(g) if math.isfinite(g) else None
            worst.append(entry)
    return {"edges": edges, "counts": counts, "zeros": int(np.count_nonzero(finite & (diff == 0))),
            "nonfinite": int(diff.size - np.count_nonzero(finite)), "worst": worst}


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
        "min_top1_agreement": tol.min_top1_agreement,
        "max_prob_diff_pp": tol.max_prob_diff_pp,
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
    metrics = difference(reference, candidate, tol, profile=reference.dtype.kind in "fiub")
    profile = metrics.pop("profile", None)
    classification = None
    if kind in (OutputKind.logits, OutputKind.probabilities) and reference.ndim >= 1 and reference.size:
        classification = classification_metrics(reference, candidate, kind)
    problems = tol.violations(metrics, classification)
    verdict = Verdict.FAIL if problems else Verdict.PASS
    message = "; ".join(problems) if problems else "within tolerance"
    return OutputResult(verdict=verdict, message=message, metrics=metrics, classification=classification,
                        profile=profile, **base)
