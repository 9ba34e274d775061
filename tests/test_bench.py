"""Benchmarks: statistics on synthetic timings, stability, crossover, the measuring loop, real tiny runs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from parity.bench import measure
from parity.report.schema import REPORT_SCHEMA, SWEEP_SCHEMA, validate
from parity.timing import comparison, latency_stats, median_error, stability
from tests.conftest import GOLDEN, SEARCHPATH


def test_statistics_follow_the_documented_percentile_definition() -> None:
    seconds = np.arange(1, 101) / 1e3  # 1 .. 100 ms
    stats = latency_stats(seconds, batch_size=8)
    assert stats["runs"] == 100 and stats["min_ms"] == pytest.approx(1.0) and stats["max_ms"] == pytest.approx(100.0)
    assert stats["median_ms"] == pytest.approx(50.5) and stats["mean_ms"] == pytest.approx(50.5)
    # numpy "linear" (type 7): rank (n - 1) * q / 100 → 89.1 → 90 + 0.1 * 1
    assert stats["p90_ms"] == pytest.approx(90.1) and stats["p95_ms"] == pytest.approx(95.05)
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["std_ms"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert stats["cv"] == pytest.approx(stats["std_ms"] / 50.5)
    assert stats["throughput_per_s"] == pytest.approx(8 / 0.0505)


def test_single_sample_and_empty() -> None:
    assert latency_stats([0.002], 1)["std_ms"] == 0.0
    with pytest.raises(ValueError):
        latency_stats([], 1)


def test_unstable_flag() -> None:
    tight = latency_stats(np.full(100, 0.01) + np.linspace(0, 1e-4, 100), 1)
    assert stability(tight, 2.0, 0.15) == (False, "")
    spiky = latency_stats(np.r_[np.full(95, 0.01), np.full(5, 0.05)], 1)  # 5 % of runs 5x slower
    unstable, why = stability(spiky, 2.0, 0.15)
    assert unstable and "p99/median" in why
    noisy = latency_stats(np.random.default_rng(0).uniform(0.005, 0.015, 1000), 1)
    assert stability(noisy, 10.0, 0.15)[0] and "CV" in stability(noisy, 10.0, 0.15)[1]


def test_crossover_detection() -> None:
    medians = {"ort_cpu": {2: 0.1, 8: 0.2, 128: 1.0, 1024: 8.0}, "ort_cuda": {2: 0.5, 8: 0.5, 128: 0.6, 1024: 1.0}}
    table = comparison(medians)
    assert [r["winner"] for r in table["rows"]] == ["ort_cpu", "ort_cpu", "ort_cuda", "ort_cuda"]
    assert table["crossovers"] == [{"batch_size": 128, "from": "ort_cpu", "to": "ort_cuda", "after_batch_size": 8}]
    assert comparison({"a": {1: 1.0}, "b": {1: 2.0}})["crossovers"] == []


def test_no_winner_and_no_crossover_inside_the_noise() -> None:
    """The sweep that declared a crossover on a 0.3 % difference between two UNSTABLE measurements."""
    medians = {"a": {8: 1.000, 64: 10.0}, "b": {8: 1.003, 64: 9.97}}
    noisy = {"a": {8: 0.02, 64: 0.2}, "b": {8: 0.02, 64: 0.2}}  # standard errors of the medians, ms
    table = comparison(medians, errors=noisy)
    assert [r["winner"] for r in table["rows"]] == [None, None] and table["crossovers"] == []
    assert [r["tied"] for r in table["rows"]] == [["a", "b"], ["a", "b"]]
    precise = {"a": {8: 0.0001, 64: 0.001}, "b": {8: 0.0001, 64: 0.001}}
    table = comparison(medians, errors=precise)  # the same medians, measured tightly: now they differ
    assert [r["winner"] for r in table["rows"]] == ["a", "b"] and table["crossovers"][0]["to"] == "b"
    assert median_error({"runs": 100, "std_ms": 1.0}) == pytest.approx(0.12533, rel=1e-4)


def test_unstable_reasons_show_the_digits_that_decide() -> None:
    stats = {"p99_ms": 2.0, "median_ms": 1.0, "cv": 0.1503}
    assert stability(stats, 2.0, 0.15) == (True, "CV 0.1503 > 0.15")
    assert stability({**stats, "p99_ms": 2.004}, 2.0, 0.2) == (True, "p99/median 2.004 > 2")


def test_a_backend_failing_parity_never_wins() -> None:
    table = comparison({"fast_wrong": {2: 0.01, 8: 0.01}, "right": {2: 1.0, 8: 1.0}}, excluded=["fast_wrong"])
    assert [r["winner"] for r in table["rows"]] == ["right", "right"] and table["excluded"] == ["fast_wrong"]
    assert table["rows"][0]["medians_ms"]["fast_wrong"] == 0.01  # still shown


def test_measure_warms_up_then_stops_at_runs_and_min_seconds() -> None:
    calls = []

    def run() -> float:
        calls.append(1)
        return 0.001

    cfg = SimpleNamespace(warmup_runs=5, warmup_seconds=0.0, runs=20, min_seconds=0.0, max_runs=1000,
                          max_seconds=60.0)
    samples = measure(run, cfg)
    assert len(samples) == 20 and len(calls) == 25  # 5 warm-up runs are not recorded
    capped = measure(run, SimpleNamespace(**{**vars(cfg), "runs": 10_000, "max_runs": 50}))
    assert len(capped) == 50
    timed = measure(run, SimpleNamespace(**{**vars(cfg), "runs": 1, "min_seconds": 0.05}))
    assert len(timed) > 1  # kept going until min_seconds had passed


def test_tiny_real_bench_on_mlp(run_parity, tmp_path: Path) -> None:
    report, code = run_parity(["mode=bench", "model=mlp", "bench.batch_sizes=[1,4,16]", "bench.runs=20",
                               "bench.min_seconds=0", "bench.warmup_runs=2"], golden_root=tmp_path / "no-goldens")
    assert code == 0 and report["verdict"] == "PASS" and report["checks"] == []  # no golden needed
    bench = report["bench"]
    assert [r["batch_size"] for r in bench["results"]] == [1, 4, 16]
    assert all(r["error"] is None and r["runs"] >= 20 and r["min_ms"] <= r["median_ms"] <= r["max_ms"]
               for r in bench["results"])
    assert bench["cold"][0]["batch_size"] == 1 and bench["cold"][0]["load_s"] > 0
    assert "session.run" in bench["timing"] and bench["threads"]["cpu_count"]
    assert Path(bench["plot"]).is_file() and bench["parity_verdict"] is None
    validate(report, REPORT_SCHEMA)


@pytest.mark.parametrize("limits, unstable", [((1.0, 0.0), True), ((1e9, 1e9), False)])
def test_a_real_bench_flags_unstable_sizes_by_its_configured_limits(run_parity, capsys, limits, unstable) -> None:
    """Real timings are never all equal: CV > 0 and p99 > median's 1x. At limits (1, 0) every size is UNSTABLE,
    with the reason in the report and under the table; at 1e9 none is."""
    ratio, cv = limits
    report, code = run_parity(["mode=bench", "model=mlp", "bench.batch_sizes=[1,8]", "bench.runs=20",
                               "bench.min_seconds=0", "bench.warmup_runs=1", "bench.plot=false",
                               f"bench.unstable_p99_ratio={ratio}", f"bench.unstable_cv={cv}"])
    assert code == 0, report
    results = report["bench"]["results"]
    out = capsys.readouterr().out
    assert [r["unstable"] for r in results] == [unstable, unstable]
    if unstable:
        assert all(r["unstable_reason"].startswith(("p99/median ", "CV ")) for r in results)
        assert out.count("UNSTABLE") >= 2 and "b=1 unstable: " in out and "b=8 unstable: " in out
    else:
        assert all(r["unstable_reason"] == "" for r in results) and "UNSTABLE" not in out


def test_verify_plus_bench_marks_a_backend_that_fails_parity(run_parity, capsys) -> None:
    report, code = run_parity(["mode=verify+bench", "model=mlp", "exporter=torchscript",
                               "exporter._target_=tests.plugins.PerturbingExporter",
                               "bench.batch_sizes=[2]", "bench.runs=5", "bench.min_seconds=0", "bench.plot=false"])
    assert code == 1 and report["bench"]["parity_verdict"] == "FAIL"
    assert "PARITY FAIL: not a result" in capsys.readouterr().out


def test_a_size_that_breaks_is_an_error_and_the_others_still_run(run_parity) -> None:
    report, code = run_parity(["mode=bench", "model=dcnv2", "bench.batch_sizes=[1,8]", "bench.runs=5",
                               "bench.min_seconds=0", "bench.plot=false"])
    results = {r["batch_size"]: r for r in report["bench"]["results"]}
    assert code == 2 and "Concat" in results[1]["error"] and results[8]["error"] is None and results[8]["runs"] >= 5


def test_bench_on_a_missing_backend_is_a_skip(run_parity) -> None:
    report, code = run_parity(["mode=bench", "model=mlp", "backend=tensorrt", "bench.batch_sizes=[2]"])
    assert code == 0 and report["verdict"] == "SKIP" and "tensorrt" in report["bench"]["skip_reason"]


def test_sweep_comparison_table_and_plot(cli, tmp_path: Path) -> None:
    sweep = tmp_path / "s"
    proc = cli("-m", "mode=bench", "model=mlp", "backend=ort_cpu,torch_cpu", "bench.batch_sizes=[1,64]",
               "bench.runs=10", "bench.min_seconds=0", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = json.loads((sweep / "sweep_report.json").read_text())
    validate(document, SWEEP_SCHEMA)
    table = document["bench"][0]
    assert table["model"] == "mlp" and set(table["backends"]) == {"dynamo×ort_cpu", "torch_cpu"}
    assert [r["batch_size"] for r in table["rows"]] == [1, 64]
    for row in table["rows"]:  # a winner only where the medians differ by more than their measured noise
        assert (row["winner"] in table["backends"] and row["tied"] == []) or \
            (row["winner"] is None and set(row["tied"]) == set(table["backends"])), row
        if row["winner"] is None:
            assert "no significant difference (" in proc.stdout
    assert Path(table["plot"]).is_file() and "== latency: mlp, median ms by batch size" in proc.stdout


def test_a_sweep_never_crowns_a_backend_that_failed_parity_and_exits_on_the_worst_job(cli, tmp_path: Path) -> None:
    """ONNX Runtime on a planted wrong export (the first job) against eager torch (the last, which passes): the
    failed backend is shown but never wins, and the sweep's verdict and exit code are the first job's FAIL."""
    sweep = tmp_path / "s"
    proc = cli("-m", SEARCHPATH, "mode=verify+bench", "model=mlp", "exporter=perturbing", "backend=ort_cpu,torch_cpu",
               "bench.batch_sizes=[1,16]", "bench.runs=10", "bench.min_seconds=0", "bench.plot=false",
               f"golden.root={GOLDEN}", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 1, proc.stderr[-2000:]
    document = json.loads((sweep / "sweep_report.json").read_text())
    assert [job["verdict"] for job in document["jobs"]] == ["FAIL", "PASS"]
    assert document["verdict"] == "FAIL" and document["exit_code"] == 1
    (table,) = document["bench"]
    assert table["backends"] == ["perturbing×ort_cpu", "torch_cpu"] and table["excluded"] == ["perturbing×ort_cpu"]
    assert [r["winner"] for r in table["rows"]] == ["torch_cpu", "torch_cpu"]  # the only one left to win
    assert all(r["medians_ms"]["perturbing×ort_cpu"] > 0 for r in table["rows"])  # still measured and shown
    assert "failed parity, never a winner: perturbing×ort_cpu" in proc.stdout
    assert "perturbing×ort_cpu (parity FAILED)" in proc.stdout
