"""Both passes behind parity.compare.difference (the compiled one of parity.kernels, above COMPILED_ABOVE elements,
and numpy_pass below) against the plain numpy rule, written out here the way compare.py computed it before: float64
copies of both arrays, masks, np.median."""

from __future__ import annotations

import math

import numpy as np
import pytest

from parity import compare, kernels
from parity.compare import SAMPLE, Tolerance, difference, error_profile
from parity.config import Check

TOL = Tolerance(atol=1e-4, rtol=1e-3)


@np.errstate(all="ignore")
def plain(reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance) -> dict:
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    finite = np.isfinite(cand) & np.isfinite(ref)
    with np.errstate(over="ignore", invalid="ignore"):
        diff = np.where(finite, np.abs(cand - ref), 0.0)
    abs_ref = np.where(finite, np.abs(ref), 0.0)
    nonzero = finite & (abs_ref > 0)
    rel = diff[nonzero] / abs_ref[nonzero]
    no_rel = float("inf") if np.any(diff[finite & (abs_ref == 0)] > 0) else 0.0
    ref_f, cand_f = np.where(finite, ref, 0.0).ravel(), np.where(finite, cand, 0.0).ravel()
    ref_norm, cand_norm, l2 = np.linalg.norm(ref_f), np.linalg.norm(cand_f), np.linalg.norm(diff)
    if ref_norm == 0 and cand_norm == 0:
        cosine = 1.0
    elif ref_norm == 0 or cand_norm == 0:
        cosine = 0.0
    else:
        cosine = float(np.dot(ref_f, cand_f) / (ref_norm * cand_norm))
    outside = (diff > tolerance.atol + tolerance.rtol * abs_ref) | ~finite
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    return {
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "mean_abs": float(diff.sum() / max(int(finite.sum()), 1)),
        "median_abs": float(np.median(diff[finite])) if finite.any() else 0.0,
        "max_rel": float(rel.max()) if rel.size else no_rel,
        "mean_rel": float(rel.mean()) if rel.size else no_rel,
        "median_rel": float(np.median(rel)) if rel.size else no_rel,
        "l2_diff": float(l2),
        "l2_rel": float(l2 / ref_norm) if ref_norm > 0 else (0.0 if l2 == 0 else float("inf")),
        "cosine": cosine,
        "pct_outside": 100.0 * float(outside.sum()) / max(outside.size, 1),
        "worst_index": [int(i) for i in worst],
        "nonfinite": int(np.size(cand) - np.count_nonzero(np.isfinite(cand))),
        "golden_nonfinite": int(np.size(ref) - np.count_nonzero(np.isfinite(ref))),
        "zeros": int(np.count_nonzero(finite & np.isfinite(diff) & (diff == 0))),
        "inf_key": int(diff.size - np.count_nonzero(finite & np.isfinite(diff))),
        "key": np.where(finite & np.isfinite(diff), diff, np.inf).ravel(),
    }


EXACT = ("max_abs", "max_rel", "pct_outside", "worst_index", "nonfinite", "golden_nonfinite")
SUMS = ("mean_abs", "mean_rel", "l2_diff", "l2_rel", "cosine")  # float64 sums in another order: a few ulp


def agrees(got: dict, want: dict, sampled: bool = False) -> None:
    """`sampled`: the output is above SAMPLE elements, where mean_rel and the medians come from the sample."""
    for key in EXACT + (() if sampled else ("median_abs", "median_rel")):
        assert got[key] == want[key] or (math.isnan(got[key]) and math.isnan(want[key])), key
    for key in SUMS if not sampled else [k for k in SUMS if k != "mean_rel"]:
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-300, nan_ok=True), key
    profile = got["profile"]
    assert profile["zeros"] == want["zeros"] and profile["nonfinite"] == want["inf_key"]
    # the worst elements: largest key first, ties by the lowest index
    order = np.lexsort((np.arange(want["key"].size), -want["key"]))[:len(profile["worst"])]
    shape = got["shape"]
    assert [w["index"] for w in profile["worst"]] == [[int(i) for i in np.unravel_index(f, shape)] for f in order]


@pytest.fixture(params=["compiled", "numpy"])
def which_pass(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every small output through the compiled pass too (it takes outputs above COMPILED_ABOVE elements)."""
    if request.param == "compiled":
        monkeypatch.setattr(compare, "COMPILED_ABOVE", 0)
    return request.param


def adversarial(n: int, dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(n) < 0.5, rng.random(n) < 0.5
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        ref = rng.integers(max(info.min, -1000), min(info.max, 1000), n).astype(dtype)
        cand = ref.copy()
        cand[rng.random(n) < 0.1] += 1
        cand[:3] = (info.max, info.min, 0)
        return ref, cand
    finfo = np.finfo(dtype)
    ref = rng.standard_normal(n).astype(dtype)
    cand = (ref + rng.standard_normal(n) * 1e-3).astype(dtype)
    picks = rng.choice(n, size=min(n, 12), replace=False)
    # huge values: float32's and float16's largest; for float64 1e150, whose squares still sum (above ~1e154 the
    # norms overflow, and where an overflowing sum lands depends on the order of the additions)
    huge = 1e150 if dtype == "float64" else finfo.max
    values = [np.nan, np.inf, -np.inf, 0.0, finfo.tiny / 4, -finfo.tiny / 8, huge, -huge]
    for i, v in zip(picks, values):
        (ref if i % 2 else cand)[i] = v
    ref[picks[-4:]] = 0.0  # zero references: no relative error there
    cand[picks[-2:]] = 0.0
    return ref, cand


@pytest.mark.parametrize("n, dtype", [(1, "float32"), (4095, "float32"), (4097, "float64"), (3 * 4096 + 5, "float16"),
                                      (5000, "int64"), (4099, "uint8"), (4101, "bool")])
def test_both_passes_match_the_plain_rule(n: int, dtype: str, which_pass: str) -> None:
    for seed in range(2):
        ref, cand = adversarial(n, dtype, seed)
        got = difference(ref, cand, TOL, profile=True) | {"shape": ref.shape}
        agrees(got, plain(ref, cand, TOL))


def test_all_nan_all_equal_all_zero_and_empty(which_pass: str) -> None:
    for ref, cand in [(np.full(5000, np.nan, np.float32), np.zeros(5000, np.float32)),
                      (np.ones((70, 70), np.float32), np.ones((70, 70), np.float32)),
                      (np.zeros(4096, np.float32), np.full(4096, 1e-3, np.float32)),
                      (np.array(2.0), np.array(2.5))]:
        agrees(difference(ref, cand, TOL, profile=True) | {"shape": ref.shape}, plain(ref, cand, TOL))
    empty = difference(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), TOL, profile=True)
    assert empty["max_abs"] == 0.0 and empty["worst_index"] == [] and empty["profile"]["worst"] == []


def test_float64_differences_that_overflow_are_infinite_and_counted_apart(which_pass: str) -> None:
    ref = np.zeros(5000)
    cand = np.zeros(5000)
    ref[4500], cand[4500] = -1e308, 1e308  # both finite, |d| overflows to inf
    got = difference(ref, cand, TOL, profile=True) | {"shape": ref.shape}
    agrees(got, plain(ref, cand, TOL))
    assert got["max_abs"] == math.inf and got["profile"]["worst"][0]["index"] == [4500]


def test_a_large_output_is_exact_except_the_sampled_statistics() -> None:
    rng = np.random.default_rng(7)
    n = 4 * SAMPLE + 4097
    ref = rng.standard_normal(n).astype(np.float32)
    cand = ref + (rng.standard_normal(n) * 10.0 ** rng.uniform(-7, -2, n)).astype(np.float32)
    cand[123_457] = np.nan
    want = plain(ref, cand, TOL)
    got = difference(ref, cand, TOL, profile=True) | {"shape": ref.shape}
    agrees(got, want, sampled=True)
    profile = got["profile"]
    assert profile["sample"] == SAMPLE and sum(profile["counts"]) <= SAMPLE
    # the sample's medians: within a few percent of the exact ones on this smooth error distribution
    assert got["median_abs"] == pytest.approx(want["median_abs"], rel=0.05)
    assert got["mean_rel"] == pytest.approx(want["mean_rel"], rel=0.2)
    # where the verdict is the median (or the mean), it is exact
    exact = difference(ref, cand, Tolerance(atol=1e-4, rtol=1e-3, check=Check.median))
    assert exact["median_abs"] == want["median_abs"] and exact["median_rel"] == want["median_rel"]
    mean = difference(ref, cand, Tolerance(atol=1e-4, rtol=1e-3, check=Check.mean))
    assert mean["mean_rel"] == pytest.approx(want["mean_rel"], rel=1e-12)


def test_selection_finds_every_rank_exactly() -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(3001).astype(np.float32)
    cand = ref + rng.standard_normal(3001).astype(np.float32) * 1e-4
    cand[::7] = ref[::7]  # ties at zero
    diff = np.sort(np.abs(cand.astype(np.float64) - ref))
    for rank in (0, 1, 428, 1500, 3000):
        assert kernels.select(ref, cand, rank) == diff[rank]
    with pytest.raises(ValueError, match="beyond"):
        kernels.select(ref, cand, 3001)


def test_the_error_profile_of_a_small_output_is_unchanged_by_sampling() -> None:
    rng = np.random.default_rng(2)
    ref = rng.standard_normal(SAMPLE).astype(np.float32)
    cand = ref + rng.standard_normal(SAMPLE).astype(np.float32) * 1e-3
    profile = error_profile(ref, cand, TOL)
    assert profile["sample"] is None and sum(profile["counts"]) + profile["zeros"] == SAMPLE


def gated_blocks() -> tuple[np.ndarray, np.ndarray]:
    """Blocks of float32 that take each way through the compiled pass's gates (kernels._pass): every |d| within
    atol (nothing counted again), some outside, zero references with equal candidates there and with other
    candidates there, the largest relative error early (raising the floor) and a larger one later."""
    rng = np.random.default_rng(11)
    block = compare.BLOCK
    ref = rng.uniform(1.0, 2.0, 8 * block).astype(np.float32)
    cand = ref + rng.uniform(-1e-5, 1e-5, ref.size).astype(np.float32)  # within atol everywhere: the gates close
    cand[0 * block + 5] = ref[0 * block + 5] * 1.5  # a large relative error first
    cand[1 * block + 7::97] += np.float32(1e-2)  # outside atol + rtol·|r|
    ref[2 * block + 3::50] = cand[2 * block + 3::50] = 0.0  # zero references, nothing to divide
    ref[3 * block + 9::40] = 0.0  # zero references, candidates not zero: no relative error there
    cand[4 * block + 11] = ref[4 * block + 11] * 3.0  # a larger relative error later
    cand[5 * block + 13] = ref[5 * block + 13] * 2.0  # below the largest so far
    ref[6 * block + 1::300], cand[6 * block + 1::300] = 0.0, 1e-3  # zeros and a difference above atol
    cand[7 * block + 15] = ref[7 * block + 15] * (3.0 + 1e-6)  # above the largest by a few float32 ulp
    return ref, cand


@pytest.mark.parametrize("tolerance", [TOL, Tolerance(atol=0.0, rtol=1e-3), Tolerance(atol=1.0, rtol=0.0)])
def test_the_compiled_pass_gates_agree_with_the_plain_rule(tolerance: Tolerance, which_pass: str) -> None:
    ref, cand = gated_blocks()
    want = plain(ref, cand, tolerance)
    got = difference(ref, cand, tolerance, profile=True) | {"shape": ref.shape}
    agrees(got, want)
    mean = difference(ref, cand, Tolerance(atol=tolerance.atol, rtol=tolerance.rtol, check=Check.mean))
    assert mean["mean_rel"] == pytest.approx(want["mean_rel"], rel=1e-12)
    assert want["max_rel"] == pytest.approx(2.0 + 1e-6, rel=1e-6) and want["pct_outside"] > 0


@pytest.mark.parametrize("n, dtype", [(4 * SAMPLE + 4097, "float32"), (kernels.CHUNK + 5 * 4096 + 3, "float16")])
def test_the_sample_the_compiled_pass_takes_is_every_kth_element(n: int, dtype: str) -> None:
    """The pass copies every k-th element while its block is in cache (float16 in chunks of kernels.CHUNK, whose
    starts are not multiples of k): the same elements as reference.reshape(-1)[::k]."""
    rng = np.random.default_rng(5)
    ref = rng.standard_normal(n).astype(dtype)
    cand = (ref + rng.standard_normal(n) * 1e-3).astype(dtype)
    step = -(-n // SAMPLE)
    taken = kernels.difference_pass(ref, cand, 1e-4, 1e-3, step=step)["sample"]
    assert np.array_equal(taken[0], ref[::step].astype(np.float64))
    assert np.array_equal(taken[1], cand[::step].astype(np.float64))
    strided = np.abs(cand[::step].astype(np.float64) - ref[::step])
    assert difference(ref, cand, TOL)["median_abs"] == float(np.median(strided))


def test_a_relative_error_where_floor_times_the_reference_is_subnormal_is_not_missed() -> None:
    """After 1.6 / 1 the floor is about 0.6; 0.6 · 1.5e-323 = 9e-324 rounds up to the subnormal 1e-323, which is |d|
    itself: the strict test |d| > fl(floor·|r|) would miss the relative error 2/3 in that block (found by review)."""
    ref, cand = np.ones(SAMPLE + 1), np.ones(SAMPLE + 1)
    cand[0] = 1.6
    ref[4097], cand[4097] = 1.5e-323, 2.5e-323
    want = plain(ref, cand, TOL)
    got = difference(ref, cand, TOL, profile=True) | {"shape": ref.shape}
    agrees(got, want, sampled=True)
    assert got["max_rel"] == want["max_rel"] == pytest.approx(2 / 3)
    assert not Tolerance(atol=0.0, rtol=0.65, check=Check.max).accepts(got)


def test_the_elementwise_rule_rounds_the_product_first_as_numpy_does(which_pass: str) -> None:
    """atol + rtol·|r| fused into one multiply-add rounds once, where numpy rounds rtol·|r| first: on these values
    the two sides of |d| <= atol + rtol·|r| differ (found by review)."""
    ref = np.full(5000, 1.1441596127196338)
    cand = np.full(5000, 1.587407496535524)
    tolerance = Tolerance(atol=0.1, rtol=0.3)
    got = difference(ref, cand, tolerance, profile=True) | {"shape": ref.shape}
    agrees(got, plain(ref, cand, tolerance))
    assert got["pct_outside"] == 0.0
    cand[7] = np.nan  # the masked block's own count of the rule, too
    agrees(difference(ref, cand, tolerance, profile=True) | {"shape": ref.shape}, plain(ref, cand, tolerance))
