"""compare.py on synthetic arrays: metrics, check statistics, dtype/shape order, NaN, classification."""

from __future__ import annotations

import numpy as np
import pytest

from parity.compare import Tolerance, classification_metrics, compare_output, grade
from parity.config import Check, OutputKind
from parity.results import Verdict
from tests.conftest import compose_cfg

TOL = Tolerance(atol=1e-4, rtol=1e-3, check=Check.elementwise)


def test_identical_arrays_pass_with_zero_error() -> None:
    ref = np.arange(12, dtype=np.float32).reshape(3, 4)
    result = compare_output("y", ref, ref.copy(), TOL)
    assert result.verdict is Verdict.PASS
    assert result.metrics["max_abs"] == 0.0
    assert result.metrics["cosine"] == pytest.approx(1.0)
    assert result.metrics["pct_outside"] == 0.0


def test_metrics_values() -> None:
    ref = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    cand = np.array([[1.0, 2.5], [3.0, 3.0]], dtype=np.float32)
    m = compare_output("y", ref, cand, TOL).metrics
    assert m["max_abs"] == pytest.approx(1.0)
    assert m["mean_abs"] == pytest.approx(0.375)
    assert m["max_rel"] == pytest.approx(0.25)
    assert m["l2_diff"] == pytest.approx(np.sqrt(0.25 + 1.0))
    assert m["l2_rel"] == pytest.approx(np.sqrt(1.25) / np.sqrt(30.0))
    assert m["worst_index"] == [1, 1]
    assert m["worst_reference"] == 4.0 and m["worst_candidate"] == 3.0
    assert m["pct_outside"] == pytest.approx(50.0)


def test_dtype_is_checked_before_shape_and_values() -> None:
    ref = np.zeros((2, 3), dtype=np.float32)
    result = compare_output("y", ref, np.zeros((4,), dtype=np.float64), TOL)
    assert result.verdict is Verdict.FAIL
    assert "dtype mismatch" in result.message and "float32" in result.message and "float64" in result.message


def test_shape_mismatch_fails_with_both_shapes() -> None:
    result = compare_output("y", np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32), TOL)
    assert result.verdict is Verdict.FAIL
    assert "(2, 3)" in result.message and "(3, 2)" in result.message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_candidate_never_passes(bad: float) -> None:
    ref = np.ones((4,), np.float32)
    cand = ref.copy()
    cand[2] = bad
    loose = Tolerance(atol=1e9, rtol=1e9, check=Check.max)
    result = compare_output("y", ref, cand, loose)
    assert result.verdict is Verdict.FAIL
    assert result.metrics["nonfinite"] == 1
    assert "NaN/Inf" in result.message


def test_elementwise_uses_atol_plus_rtol_times_reference() -> None:
    ref = np.array([100.0, 0.0], np.float32)
    ok = compare_output("y", ref, np.array([100.09, 0.00009], np.float32), TOL)
    assert ok.verdict is Verdict.PASS
    bad = compare_output("y", ref, np.array([100.2, 0.0], np.float32), TOL)
    assert bad.verdict is Verdict.FAIL and "outside" in bad.message


@pytest.mark.parametrize("check", [Check.max, Check.mean, Check.median])
def test_statistic_checks(check: Check) -> None:
    ref = np.zeros(100, np.float32)
    cand = ref.copy()
    cand[0] = 1e-2  # one outlier: fails max, passes mean and median at atol 1e-3
    result = compare_output("y", ref, cand, Tolerance(atol=1e-3, rtol=0.0, check=check))
    expected = Verdict.FAIL if check is Check.max else Verdict.PASS
    assert result.verdict is expected


def test_classification_metrics_on_logits() -> None:
    ref = np.array([[4.0, 1.0, 0.0], [0.0, 3.0, 1.0]], np.float32)
    cand = np.array([[4.0, 1.0, 0.0], [3.0, 0.0, 1.0]], np.float32)  # second sample's top-1 flips
    cls = classification_metrics(ref, cand, OutputKind.logits)
    assert cls["top1_agreement"] == 0.5 and cls["top1_mismatches"] == 1
    assert cls["prob_diff_max_pp"] > 10 and cls["grade"] == "problem"
    assert classification_metrics(ref, ref, OutputKind.logits)["grade"] == "excellent"


def test_probabilities_are_not_softmaxed_again() -> None:
    ref = np.array([[0.7, 0.3]], np.float32)
    cand = np.array([[0.68, 0.32]], np.float32)
    cls = classification_metrics(ref, cand, OutputKind.probabilities)
    assert cls["prob_diff_max_pp"] == pytest.approx(2.0, abs=1e-4)
    assert cls["grade"] == "good"


@pytest.mark.parametrize("pp, name", [(0.5, "excellent"), (1.0, "good"), (4.9, "good"), (7, "look"), (10.5, "problem")])
def test_grades_follow_seed_000(pp: float, name: str) -> None:
    assert grade(pp) == name


def test_classification_thresholds_change_the_verdict() -> None:
    ref = np.array([[2.0, 1.0]], np.float32)
    cand = np.array([[1.0, 2.0]], np.float32)
    loose = Tolerance(atol=10, rtol=10, check=Check.max)
    assert compare_output("p", ref, cand, loose, OutputKind.logits).verdict is Verdict.PASS
    strict = Tolerance(atol=10, rtol=10, check=Check.max, min_top1_agreement=1.0)
    result = compare_output("p", ref, cand, strict, OutputKind.logits)
    assert result.verdict is Verdict.FAIL and "top-1 agreement" in result.message


def test_per_output_override_from_config() -> None:
    cfg = compose_cfg(["model=mlp", "+tolerance.per_output.logits.atol=0.5", "+tolerance.per_output.logits.check=max"])
    from parity.plan import build_plan

    tol = build_plan(cfg).backend_tolerance("logits")
    assert tol.atol == 0.5 and tol.check is Check.max and tol.rtol == cfg.tolerance.rtol


def test_nan_in_the_golden_never_passes() -> None:
    ref = np.array([np.nan, 1.0], np.float32)
    result = compare_output("y", ref, np.array([5.0, 1.0], np.float32), Tolerance(atol=1e9, rtol=1e9, check=Check.max))
    assert result.verdict is Verdict.FAIL and "in the golden" in result.message
    elementwise = compare_output("y", ref, np.array([5.0, 1.0], np.float32), TOL)
    assert elementwise.verdict is Verdict.FAIL and elementwise.metrics["pct_outside"] == 50.0


def test_l2_rel_check_bounds_the_relative_l2_error_and_ignores_atol() -> None:
    ref = np.array([3.0, 4.0], dtype=np.float32)  # ||ref|| = 5
    cand = ref + np.array([0.3, 0.4], dtype=np.float32)  # ||d|| = 0.5: relative L2 0.1
    tol = Tolerance(atol=0.0, rtol=0.11, check=Check.l2_rel)
    assert compare_output("y", ref, cand, tol).verdict is Verdict.PASS
    failed = compare_output("y", ref, cand, Tolerance(atol=10.0, rtol=0.09, check=Check.l2_rel))
    assert failed.verdict is Verdict.FAIL and failed.message.startswith("relative L2 error 0.1 > rtol 0.09")
    nan = cand.copy()
    nan[0] = np.nan
    assert compare_output("y", ref, nan, Tolerance(atol=0.0, rtol=10.0, check=Check.l2_rel)).verdict is Verdict.FAIL


@pytest.mark.parametrize("field, value", [("atol", float("nan")), ("rtol", float("inf")), ("atol", -1.0),
                                          ("max_prob_diff_pp", float("nan"))])
def test_a_tolerance_that_would_pass_anything_cannot_be_made(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"tolerance {field} must be a finite number"):
        Tolerance(**{"atol": 1e-4, "rtol": 1e-3, field: value})


def test_the_error_profile_counts_every_element_once_and_lists_the_worst_first() -> None:
    from parity.compare import PROFILE_WORST, error_profile

    rng = np.random.default_rng(3)
    golden = rng.standard_normal((6, 50)).astype(np.float32)
    candidate = golden + (10.0 ** rng.uniform(-9, -1, golden.shape)).astype(np.float32)
    candidate[0, :5] = golden[0, :5]  # exactly equal
    candidate[1, 0], candidate[2, 3] = np.nan, np.inf
    profile = error_profile(golden, candidate, Tolerance(atol=1e-4, rtol=1e-3))
    diff = np.abs(candidate.astype(np.float64) - golden.astype(np.float64))
    finite = np.isfinite(diff)
    assert profile["nonfinite"] == 2 and profile["zeros"] == int((diff[finite] == 0).sum()) >= 5
    assert sum(profile["counts"]) + profile["zeros"] + profile["nonfinite"] == golden.size
    edges = np.array(profile["edges"])
    assert len(edges) == len(profile["counts"]) + 1 and np.all(np.diff(np.log10(edges)) > 0)
    positive = diff[finite & (diff > 0)]
    assert edges[0] <= positive.min() and positive.max() <= edges[-1]
    expected, _ = np.histogram(positive, bins=edges)  # the plain rule on the same edges
    assert profile["counts"] == [int(c) for c in expected]
    worst = profile["worst"]
    assert len(worst) == PROFILE_WORST and worst[0]["abs_diff"] is None and worst[1]["abs_diff"] is None
    finite_worst = [w["abs_diff"] for w in worst[2:]]
    assert finite_worst == sorted(finite_worst, reverse=True) and finite_worst[0] == pytest.approx(positive.max())
    index = worst[2]["index"]
    assert worst[2]["golden"] == float(golden[tuple(index)]) and worst[2]["allowed"] == pytest.approx(
        1e-4 + 1e-3 * abs(float(golden[tuple(index)])))
    same = error_profile(golden, golden)
    assert same["counts"] == [] and same["zeros"] == golden.size
    assert error_profile(np.array(2.0), np.array(2.5))["worst"][0]["index"] == []  # a 0-d output


# -- each rule at its boundary (found by mutation testing: docs/mutation.md) ------------------------------------

CLEAN = {"nonfinite": 0, "golden_nonfinite": 0}


@pytest.mark.parametrize("check, stats, atol, rtol, passes", [
    (Check.elementwise, {"pct_outside": 0.0}, 0, 0, True),
    (Check.elementwise, {"pct_outside": 0.1, "max_abs": 1.0, "worst_index": [3]}, 0, 0, False),  # 1 in 1000
    (Check.l2_rel, {"l2_rel": 0.01}, 0, 0.01, True),  # at the limit: within
    (Check.l2_rel, {"l2_rel": 0.0100001}, 0, 0.01, False),
    (Check.max, {"max_abs": 1e-3, "max_rel": 9.0}, 1e-3, 0.0, True),  # |d| at atol
    (Check.max, {"max_abs": 9.0, "max_rel": 1e-2}, 0.0, 1e-2, True),  # |d|/|r| at rtol
    (Check.max, {"max_abs": 1.1e-3, "max_rel": 1.1e-2}, 1e-3, 1e-2, False),  # past both
    (Check.mean, {"mean_abs": 2e-3, "mean_rel": 1e-2}, 1e-3, 1e-2, True),
    (Check.median, {"median_abs": 2e-3, "median_rel": 2e-2}, 1e-3, 1e-2, False),
])
def test_each_check_at_its_limit(check: Check, stats: dict, atol: float, rtol: float, passes: bool) -> None:
    assert Tolerance(atol=atol, rtol=rtol, check=check).accepts({**CLEAN, **stats}) is passes


def test_elementwise_without_the_count_of_elements_outside_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match=r"^elementwise needs difference\(\.\.\., tolerance\) to count the elements "
                                         r"outside$"):
        TOL.violations({**CLEAN, "pct_outside": None})


def test_classification_limits_at_their_boundary_and_their_messages() -> None:
    tol = Tolerance(atol=1.0, rtol=1.0, check=Check.max, min_top1_agreement=0.9, max_prob_diff_pp=1.0)
    stats = {**CLEAN, "max_abs": 0.0, "max_rel": 0.0}
    assert tol.accepts(stats, {"top1_agreement": 0.9, "prob_diff_max_pp": 1.0})  # both at their limit: within
    assert tol.violations(stats, {"top1_agreement": 0.875, "prob_diff_max_pp": 1.5}) == [
        "top-1 agreement 87.50% < 90.00%", "probability diff 1.5 pp > 1 pp"]
    assert not tol.accepts(stats, {"top1_agreement": 1.0, "prob_diff_max_pp": 1.01})
    assert tol.accepts(stats)  # no classification scores: nothing to judge them by
    assert Tolerance(atol=1.0, rtol=1.0, check=Check.max).accepts(stats, {"top1_agreement": 0.0,
                                                                          "prob_diff_max_pp": 99.0})


def test_softmax_of_large_logits_stays_finite() -> None:
    """Logits in the hundreds (an untrained or scaled head): exp must be taken of x - max, never of x + max."""
    from parity.compare import softmax

    probs = softmax(np.array([[800.0, 799.0, 0.0]], np.float64), axis=-1)
    assert np.isfinite(probs).all() and probs[0, 0] == pytest.approx(1 / (1 + np.exp(-1.0)))
