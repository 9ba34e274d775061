"""Difference statistics of two arrays, the one tolerance rule, classification agreement (numpy only).

Every comparison in parity (output checks, determinism, layer probes, localisation, a sweep's pairwise matrix)
measures with `difference` and judges with `Tolerance.violations` / `Tolerance.accepts`.
"""

from __future__ import annotations

import math
import sys
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


SAMPLE = 1 << 16  # outputs up to this many elements get every statistic exactly (above: see difference)
COMPILED_ABOVE = SAMPLE  # outputs above this many elements take the compiled pass (numba's start-up costs ~0.5 s)
BLOCK = 4096  # elements per block of the pass: 2 × 4096 float64 values stay in L1/L2 while a block is summed
# slots of the pass's accumulators (parity.kernels.difference_pass and numpy_pass)
S_ABS, S_SQ, S_RR, S_CC, S_RC, S_REL, S_MAX_REL = range(7)
N_FINITE, N_OUTSIDE, N_REL, N_REF_NONFINITE, N_CAND_NONFINITE, N_ZEROS, N_INF_KEY = range(7)
PROFILE_WORST = 8  # the elements an output's profile lists, largest |d| first
PROFILE_BINS_PER_DECADE = 4
PROFILE_MAX_BINS = 64


def difference(reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance | None = None,
               profile: bool = False) -> dict[str, Any]:
    """Statistics of candidate - reference over the elements finite on both sides, computed in float64.

    Same shapes required. `pct_outside`, the share of elements outside atol + rtol·|reference| (non-finite ones
    always count as outside), needs a `tolerance`; without one it is None. `profile`: also the error profile
    (`error_profile`) under "profile", from the same pass.

    Above COMPILED_ABOVE elements one compiled pass over both arrays (parity.kernels), in cache-sized blocks, with
    no per-element copies (below, the same sums from numpy arrays: `numpy_pass`): max,
    mean, L2, cosine, share outside, worst element and max_rel are exact for every size. mean_rel and the medians
    are exact for outputs up to SAMPLE elements and wherever the check judges them (`mean`: the pass divides in
    every block; `median`: selection on the bit patterns, kernels.select); above SAMPLE elements otherwise they are the
    mean / median over an evenly strided sample of SAMPLE elements (every k-th element, k = ceil(size / SAMPLE)).
    """
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise ValueError(f"difference needs one shape, got {reference.shape} and {candidate.shape}")
    check = tolerance.check if tolerance is not None else None
    small = reference.size <= SAMPLE  # the sample is every element
    exact_mean_rel = small or check is Check.mean
    median_from_sample = small or check is not Check.median
    atol, rtol = (tolerance.atol, tolerance.rtol) if tolerance is not None else (0.0, 0.0)
    if reference.size > COMPILED_ABOVE:
        from parity import kernels  # numba: imported for the first large output only (not by --help)
        p = kernels.difference_pass(reference, candidate, atol, rtol, every_rel=exact_mean_rel,
                                    step=_sample_step(reference.size))
    else:
        p = numpy_pass(reference, candidate, atol, rtol)
    sums, counts, ref, cand = p["sums"], p["counts"], p["ref"], p["cand"]
    n_finite, n_rel = int(counts[N_FINITE]), int(counts[N_REL])
    max_abs = float(p["block_top"].max()) if ref.size else 0.0
    sample = _Sample(ref, cand, p.get("sample"))
    ref_norm, cand_norm = math.sqrt(sums[S_RR]), math.sqrt(sums[S_CC])
    l2 = math.sqrt(sums[S_SQ])
    if ref_norm == 0.0 and cand_norm == 0.0:
        cosine = 1.0
    elif ref_norm == 0.0 or cand_norm == 0.0:
        cosine = 0.0
    else:
        cosine = float(sums[S_RC]) / (ref_norm * cand_norm)
    # no relative error where no finite reference is non-zero: inf if some element there differs anyway
    no_rel = float("inf") if n_rel == 0 and max_abs > 0 else 0.0
    if n_rel and exact_mean_rel:
        mean_rel = float(sums[S_REL] / n_rel)
    else:
        mean_rel = float(sample.rel.mean()) if sample.rel.size else no_rel
    worst = _worst_index(p, reference.shape)
    return {
        "max_abs": max_abs,
        "mean_abs": float(sums[S_ABS] / max(n_finite, 1)),
        "median_abs": _median(sample.abs, ref, cand, n_finite, False, median_from_sample),
        "max_rel": float(sums[S_MAX_REL]) if n_rel else no_rel,
        "mean_rel": mean_rel,
        "median_rel": _median(sample.rel, ref, cand, n_rel, True, median_from_sample) if n_rel else no_rel,
        "l2_diff": l2,
        "l2_rel": l2 / ref_norm if ref_norm > 0 else (0.0 if l2 == 0 else float("inf")),
        "cosine": cosine,
        "pct_outside": (100.0 * float(counts[N_OUTSIDE]) / max(ref.size, 1)
                        if tolerance is not None else None),
        "worst_index": [int(i) for i in worst] if ref.size else [],
        "worst_reference": float(reference[worst]) if ref.size else None,
        "worst_candidate": float(candidate[worst]) if ref.size else None,
        "nonfinite": int(counts[N_CAND_NONFINITE]),
        "golden_nonfinite": int(counts[N_REF_NONFINITE]),
        **({"profile": _profile(p, sample, reference.shape, tolerance)} if profile else {}),
    }


def error_profile(reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance | None = None) -> dict[str, Any]:
    """Where an output's error lies, for reports a person reads: a histogram of |candidate - reference| on
    log-spaced bins (PROFILE_BINS_PER_DECADE per decade, from the smallest non-zero difference's decade to the
    largest's), the exact zeros and the non-finite elements or differences (counted apart), and the PROFILE_WORST
    elements with the largest difference (index, golden, candidate, |d|, and the elementwise allowance
    atol + rtol·|golden|), non-finite ones first, ties by index. Above SAMPLE elements the histogram is that of an
    evenly strided sample of SAMPLE elements ("sample" says how many; None when every element is counted); zeros,
    non-finite and the worst elements always cover every element. Float64 arithmetic: integers above 2**53 lose
    their last digits here."""
    return difference(reference, candidate, tolerance, profile=True)["profile"]


def _sample_step(size: int) -> int:
    """k of the sample: every k-th element, so that at most SAMPLE are taken."""
    return max(1, -(-size // SAMPLE))


class _Sample:
    """Every element of a small output, or every k-th of a large one: float64 values, |d| and |d| / |r| there.
    `taken`: those elements already taken (golden, candidate), as the compiled pass copies them."""

    def __init__(self, ref: np.ndarray, cand: np.ndarray, taken: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.size = ref.size
        step = _sample_step(ref.size)
        self.sampled = step > 1
        self.ref, self.cand, finite, diff = _float_diff(*(taken or (ref[::step], cand[::step])))
        self.finite = finite & np.isfinite(diff)  # a difference of two huge finite values can overflow
        self.abs = diff[finite]
        nonzero = finite & (self.ref != 0)
        self.rel, below = diff[nonzero], self.ref[nonzero]
        with np.errstate(over="ignore"):
            self.rel /= np.abs(below, out=below)  # in place, as _float_diff
        self.diff = diff


def _median(values: np.ndarray, ref: np.ndarray, cand: np.ndarray, count: int, relative: bool,
            from_sample: bool) -> float:
    """The median of |d| (or of |d| / |r|): numpy's on the sample, or exactly by selection over every element."""
    if from_sample:
        return _sample_median(values) if values.size else 0.0
    if count == 0:
        return 0.0
    from parity import kernels
    low = kernels.select(ref, cand, (count - 1) // 2, relative)
    high = low if count % 2 else kernels.select(ref, cand, count // 2, relative)
    return float((low + high) / 2)


def _sample_median(values: np.ndarray) -> float:
    """np.median of values with no NaN (finite |d|, or inf where one overflowed), by one selection: np.median's own
    two at once cost eight times as much (measured on 65 536 values)."""
    high = values.size // 2
    part = np.partition(values, high)
    if values.size % 2:
        return float(part[high])
    return float((part[:high].max() + part[high]) / 2)


def _worst_index(p: Mapping[str, Any], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The first element with the largest |d| (non-finite elements count as 0, as numpy's argmax over the masked
    differences would): the first block holding the largest block maximum, re-read."""
    if not p["ref"].size:
        return ()
    ((start, ref, cand), ) = _blocks(p["ref"], p["cand"], [int(np.argmax(p["block_top"]))])
    _, _, _, diff = _float_diff(ref, cand)
    return tuple(int(i) for i in np.unravel_index(start + int(np.argmax(diff)), shape))


def numpy_pass(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """kernels.difference_pass's result from float64 numpy arrays of the whole output (for small outputs, where
    numba's start-up would cost more than the comparison), every relative error summed."""
    ref, cand = reference.reshape(-1), candidate.reshape(-1)
    r, c, finite, diff = _float_diff(ref, cand)
    abs_ref = np.where(finite, np.abs(r), 0.0)
    nonzero = finite & (abs_ref > 0)
    rel = diff[nonzero] / abs_ref[nonzero]
    r0, c0 = np.where(finite, r, 0.0), np.where(finite, c, 0.0)
    inf_key = ~(finite & np.isfinite(diff))  # non-finite, or a float64 difference that overflows
    with np.errstate(over="ignore", invalid="ignore"):
        sums = np.array([diff.sum(), diff @ diff, r0 @ r0, c0 @ c0, r0 @ c0, rel.sum(), rel.max() if rel.size else 0])
    counts = np.array([finite.sum(), ((diff > atol + rtol * abs_ref) | ~finite).sum(), nonzero.sum(),
                       (~np.isfinite(r)).sum(), (~np.isfinite(c)).sum(), (finite & (diff == 0)).sum(), inf_key.sum()])
    blocks = -(-ref.size // BLOCK)
    pad = (0, blocks * BLOCK - ref.size)
    return {"ref": ref, "cand": cand, "sums": sums, "counts": counts,
            "block_top": np.pad(diff, pad).reshape(blocks, BLOCK).max(axis=1, initial=0.0),
            "block_inf": np.pad(inf_key, pad).reshape(blocks, BLOCK).sum(axis=1)}


def _blocks(ref: np.ndarray, cand: np.ndarray, indices: Any) -> Any:
    """(first element, golden, candidate) of the given blocks of two flat arrays, in float64, one at a time."""
    for b in indices:
        part = slice(int(b) * BLOCK, (int(b) + 1) * BLOCK)
        yield part.start, ref[part].astype(np.float64), cand[part].astype(np.float64)


def _float_diff(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, ...]:
    """Both sides in float64, where both are finite, and |candidate - reference| there (0 elsewhere)."""
    ref = reference.astype(np.float64, copy=False)
    cand = candidate.astype(np.float64, copy=False)
    finite = np.isfinite(cand)
    finite &= np.isfinite(ref)
    with np.errstate(over="ignore", invalid="ignore"):
        diff = np.subtract(cand, ref)
        np.abs(diff, out=diff)  # in place: each new array of a large sample costs its page faults
    if not finite.all():
        diff[~finite] = 0.0
    return ref, cand, finite, diff


def _profile(p: Mapping[str, Any], sample: _Sample, shape: tuple[int, ...],
             tolerance: Tolerance | None) -> dict[str, Any]:
    """error_profile from the pass (zeros, non-finite, the blocks that can hold the worst elements) and the sample
    (the histogram)."""
    positive = sample.diff[sample.finite & (sample.diff > 0)]
    edges: list[float] = []
    counts: list[int] = []
    if positive.size:
        # decades from the smallest difference's to the largest's; 1e-323 at the least (10**-324 is 0.0)
        low = max(math.floor(math.log10(float(positive.min()))), -323)
        high = max(math.ceil(math.log10(float(positive.max()))), low + 1)
        bins = min((high - low) * PROFILE_BINS_PER_DECADE, PROFILE_MAX_BINS)
        hist, exps = _histogram(np.clip(np.log10(positive), low, high), bins, low, high)
        # the top edge of differences near float64's max would be 1e309 = inf, which JSON cannot hold
        edges = [float(10.0 ** e) if e <= 308 else sys.float_info.max for e in exps]
        counts = [int(c) for c in hist]
    worst = []
    for flat, g, c, d in _worst_elements(p, min(PROFILE_WORST, p["ref"].size)):
        entry = {"index": [int(i) for i in np.unravel_index(flat, shape)], "golden": g, "candidate": c,
                 "abs_diff": d if math.isfinite(d) else None}
        if tolerance is not None:
            entry["allowed"] = tolerance.atol + tolerance.rtol * abs(g) if math.isfinite(g) else None
        worst.append(entry)
    counts_all = p["counts"]
    return {"edges": edges, "counts": counts, "sample": SAMPLE if sample.sampled else None,
            "zeros": int(counts_all[N_ZEROS]), "nonfinite": int(counts_all[N_INF_KEY]),
            "worst": worst}


def _histogram(values: np.ndarray, bins: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """np.histogram(values, bins=bins, range=(low, high)) of values within [low, high]: the same edges, and in bin i
    the values with edges[i] <= v < edges[i + 1] (the last bin also holds v == high), counted on the sorted values
    by one search per edge (a third of np.histogram's time on 65 536 values)."""
    edges = np.linspace(low, high, bins + 1)
    at = np.searchsorted(np.sort(values), edges, side="left")
    at[-1] = values.size  # the last bin is closed
    return np.diff(at), edges


def _worst_elements(p: Mapping[str, Any], k: int) -> list[tuple[int, float, float, float]]:
    """The k elements with the largest |d| (+inf for a non-finite element or difference), ties by index, as
    (flat index, golden, candidate, |d|): only the blocks that can hold them are re-read. Those are the first blocks
    with non-finite elements until they hold k of them, and the first k blocks by (largest |d| descending, index):
    an element outside both has k elements before it in the order."""
    if k == 0:
        return []
    inf_blocks = np.flatnonzero(p["block_inf"])
    enough = int(np.searchsorted(np.cumsum(p["block_inf"][inf_blocks]), k)) + 1
    chosen = np.union1d(inf_blocks[:enough], _first_largest(p["block_top"], k))
    flats, keys, refs, cands = [], [], [], []
    for start, ref, cand in _blocks(p["ref"], p["cand"], chosen):
        _, _, finite, diff = _float_diff(ref, cand)
        finite &= np.isfinite(diff)
        flats.append(np.arange(start, start + ref.size))
        keys.append(np.where(finite, diff, np.inf))
        refs.append(ref)
        cands.append(cand)
    flat, key, ref, cand = (np.concatenate(x) for x in (flats, keys, refs, cands))
    order = _first_largest(key, k)
    return [(int(flat[i]), float(ref[i]), float(cand[i]), float(key[i])) for i in order]


def _first_largest(values: np.ndarray, k: int) -> np.ndarray:
    """The indices of the k largest values (no NaN), largest first, ties by index: as
    np.lexsort((np.arange(values.size), -values))[:k], sorting only the values not below the k-th largest."""
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if values.size <= k:
        return np.lexsort((np.arange(values.size), -values))
    at_least = np.partition(values, values.size - k)[values.size - k]
    candidates = np.flatnonzero(values >= at_least)
    return candidates[np.lexsort((candidates, -values[candidates]))][:k]


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


CLASSIFICATION_CHUNK = 1 << 20  # elements (whole rows) of each side in float64 at a time


def classification_metrics(reference: np.ndarray, candidate: np.ndarray, kind: OutputKind) -> dict[str, Any]:
    """Top-1 agreement and probability differences (percentage points) over the last axis.

    The probability difference of a sample is the largest |p_ref - p_cand| over its classes;
    `prob_diff_max_pp` / `prob_diff_mean_pp` are the max / mean of that over samples. Rows are taken in chunks of
    about CLASSIFICATION_CHUNK elements, so the float64 softmax never holds more than that of either side.
    """
    classes = reference.shape[-1]
    ref_rows, cand_rows = reference.reshape(-1, classes), candidate.reshape(-1, classes)
    step = max(1, CLASSIFICATION_CHUNK // max(classes, 1))
    agree_count = samples = 0
    worst = total = 0.0
    for start in range(0, ref_rows.shape[0], step):
        ref = ref_rows[start:start + step].astype(np.float64)
        cand = cand_rows[start:start + step].astype(np.float64)
        if kind is OutputKind.logits:
            ref, cand = softmax(ref), softmax(cand)
        agree_count += int(np.count_nonzero(np.argmax(ref, axis=-1) == np.argmax(cand, axis=-1)))
        per_sample = np.max(np.abs(ref - cand), axis=-1) * 100.0
        samples += per_sample.size
        if per_sample.size:
            worst = float(np.max([worst, per_sample.max()]))  # a NaN stays NaN (and grades as a problem)
            total += float(per_sample.sum())
    return {
        "top1_agreement": agree_count / samples if samples else 1.0,
        "top1_mismatches": samples - agree_count,
        "samples": samples,
        "prob_diff_max_pp": worst,
        "prob_diff_mean_pp": total / samples if samples else 0.0,
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
