"""The verdict and exit-code rules and the sweep's aggregation, in process: the worst verdict wins, a job whose
backend never ran is no PASS, a sweep is its worst job, and the tables across jobs (rows, exporter x backend grid,
pairwise matrix, latency winners) follow from real job reports. `nox -s mutation` runs these against mutants of
parity/results.py, parity/report/model.py and parity/report/aggregate.py (docs/mutation.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from parity.plan import JobContext
from parity.report.aggregate import aggregate, pivot, rows_of
from parity.report.model import (BackendInfo, GoldenInfo, JobInfo, JobReport, ModelInfo, SweepJob, SweepReport,
                                 SweepRow, artifact_label, column)
from parity.results import BenchReport, CheckResult, LocalizationReport, ProbeReport, Verdict, exit_code, overall
from tests.conftest import GOLDEN, compose_cfg

P, S, F, E = Verdict.PASS, Verdict.SKIP, Verdict.FAIL, Verdict.ERROR


@pytest.mark.parametrize("verdicts, expected", [
    ([], S), ([S, S], S), ([P], P), ([S, P], P), ([P, F], F), ([F, P, S], F), ([P, E, F], E), ([E], E),
    (["PASS", "FAIL"], F), ([S, E], E),
])
def test_the_worst_verdict_wins_and_all_skips_are_a_skip(verdicts: list, expected: Verdict) -> None:
    assert overall(verdicts) is expected


def test_exit_codes_follow_the_verdict_and_skip_is() -> None:
    assert [exit_code(v) for v in (P, S, F, E)] == [0, 0, 1, 2]
    assert [exit_code(v, "fail") for v in (P, S, F, E)] == [0, 1, 1, 2]
    assert exit_code("SKIP", "fail") == 1 and exit_code("ERROR") == 2


def _job(mode: str = "verify", **fields: Any) -> JobReport:
    fields.setdefault("golden", GoldenInfo(input_set="default"))
    return JobReport(mode=mode, job=JobInfo(output_dir="out", overrides=[], num=0),
                     model=ModelInfo(name="m", framework="torch"), exporter="dynamo", transform=None,
                     backend=BackendInfo(name="ort_cpu"), config={}, **fields)


def _checks(*pairs: tuple[str, Verdict]) -> list[CheckResult]:
    return [CheckResult(check=name, batch_size=2, verdict=v, message="") for name, v in pairs]


def test_a_job_is_its_worst_check_and_a_backend_that_never_ran_is_no_pass() -> None:
    assert _job(checks=_checks(("reference", P), ("backend", P))).verdict is P
    assert _job(checks=_checks(("reference", P), ("backend", F))).verdict is F
    assert _job(checks=_checks(("reference", E), ("backend", F))).verdict is E
    skipped = _job(checks=_checks(("reference", P), ("backend", S)))
    assert skipped.verdict is S and skipped.exit_code == 0
    skipped.skip_is = "fail"
    assert skipped.exit_code == 1
    half = _job(checks=_checks(("reference", P), ("backend", S), ("reference", P), ("backend", P)))
    assert half.verdict is P  # the backend ran at one batch size
    assert _job(checks=_checks(("reference", P))).verdict is P  # no backend check at all (e.g. eager golden)
    assert _job().verdict is S and _job().checks_verdict() is None
    assert _job(checks=_checks(("reference", P), ("backend", F))).checks_verdict() is F


def test_an_error_anywhere_in_a_job_makes_it_an_error() -> None:
    passing = _checks(("reference", P), ("backend", P))
    assert _job(checks=passing, error="boom").verdict is E and _job(checks=passing, error="boom").exit_code == 2
    assert _job(checks=passing, probes=ProbeReport(batch_size=2, error="no such layer")).verdict is E
    assert _job(checks=passing, probes=ProbeReport(batch_size=2)).verdict is P
    assert _job(checks=passing, localization=LocalizationReport(error="needs an ONNX backend")).verdict is E
    assert _job(checks=passing, localization=LocalizationReport()).verdict is P
    assert _job(checks=passing, preprocess_comparison={"verdict": "FAIL"}).verdict is F


def test_a_bench_counts_in_the_job_verdict() -> None:
    def bench(**fields: Any) -> BenchReport:
        return BenchReport(backend="ort_cpu", timing="session.run", **fields)

    from parity.results import BenchResult

    ok, broken = BenchResult(batch_size=2, stats={"median_ms": 1.0}), BenchResult(batch_size=1, error="Concat")
    assert _job(mode="bench", bench=bench(results=(ok,))).verdict is P
    assert _job(mode="bench", bench=bench(results=(ok, broken))).verdict is E
    assert _job(mode="bench", bench=bench(skip_reason="no tensorrt")).verdict is S
    assert _job(mode="bench", bench=bench()).verdict is S  # nothing measured
    # the verify ran, so a bench that could not is no reason to call the job a SKIP
    assert _job(mode="verify+bench", checks=_checks(("reference", P), ("backend", P)),
                bench=bench(skip_reason="no GPU")).verdict is P
    assert _job(mode="verify+bench", checks=_checks(("reference", P), ("backend", S)),
                bench=bench(skip_reason="no GPU")).verdict is S


def test_a_golden_or_export_job_passes_once_it_wrote_its_files() -> None:
    written = _job(mode="golden")
    assert written.verdict is S
    written.golden.written = True
    assert written.verdict is P and _job(mode="import", golden=GoldenInfo("d", written=True)).verdict is P
    assert _job(mode="export").verdict is S and _job(mode="export", exported={"format": "onnx"}).verdict is P
    assert _job(mode="verify", golden=GoldenInfo("d", written=True)).verdict is S  # verify never writes


def _sweep_job(num: int, verdict: Verdict, code: int) -> SweepJob:
    return SweepJob(num, f"out/{num}", (), None, verdict, code, None)


@pytest.mark.parametrize("jobs, verdict, code", [
    ([(F, 1), (P, 0)], F, 1), ([(P, 0), (F, 1)], F, 1), ([(E, 2), (F, 1), (P, 0)], E, 2), ([(P, 0), (E, 2)], E, 2),
    ([(S, 0), (S, 0)], S, 0), ([(S, 1), (P, 0)], P, 1),  # the SKIP counted as a failure by its job's skip_is
    ([(P, 0), (P, 0)], P, 0),
])
def test_a_sweep_is_its_worst_job_wherever_that_job_is(jobs: list, verdict: Verdict, code: int) -> None:
    sweep = SweepReport(sweep_dir="s", jobs=[_sweep_job(n, v, c) for n, (v, c) in enumerate(jobs)], rows=[],
                        pivot={}, pairwise=[], bench=[])
    assert (sweep.verdict, sweep.exit_code) == (verdict, code)
    assert (sweep.to_dict()["verdict"], sweep.to_dict()["exit_code"]) == (verdict.value, code)


def test_column_labels() -> None:
    assert column("dynamo", "ort_cpu") == "dynamo×ort_cpu" and column(None, "torch_cpu") == "torch_cpu"
    assert column("dynamo", "ort_cpu", "numerics=strict") == "dynamo×ort_cpu [numerics=strict]"
    assert artifact_label("dynamo", "int8_static") == "dynamo+int8_static" and artifact_label(None, "fp16") is None
    assert artifact_label("dynamo", None) == artifact_label("dynamo", "none") == "dynamo"


def _row(job: int, backend: str, batch: int, verdict: Verdict, output: str | None = "y", max_abs: float | None = None,
         model: str = "m") -> SweepRow:
    return SweepRow(job=job, model=model, exporter="dynamo", backend=backend, verdict=verdict, check="backend",
                    batch_size=batch, output=output, max_abs=max_abs)


def test_the_grid_sorts_by_batch_size_and_fills_a_cell_without_outputs() -> None:
    """A later job's smaller batch size still comes first; a job that stopped before its outputs (ERROR, no
    output names) fills every output the model has, and a model no job gave outputs for gets one '—' row."""
    rows = [_row(0, "ort_cpu", 4, P, "a", 1e-6), _row(0, "ort_cpu", 4, P, "b", 2e-6),
            _row(1, "ort_web", 2, E, None), _row(1, "ort_web", 4, F, "a", 0.5),
            _row(2, "ort_cpu", 2, S, None, model="other"),
            SweepRow(job=3, model="m", exporter=None, backend="x", verdict=E)]  # no check at all: not in the grid
    grid = pivot(rows)
    assert grid["columns"] == ["dynamo×ort_web", "dynamo×ort_cpu"]  # in the order of the sorted rows
    assert [(r["model"], r["output"], r["batch_size"]) for r in grid["rows"]] == [
        ("m", "a", 2), ("m", "b", 2), ("other", "—", 2), ("m", "a", 4), ("m", "b", 4)]
    cells = {(r["model"], r["output"], r["batch_size"]): r["cells"] for r in grid["rows"]}
    assert cells[("m", "b", 2)] == {"dynamo×ort_web": {"max_abs": None, "verdict": "ERROR"}}
    assert cells[("m", "a", 4)] == {"dynamo×ort_cpu": {"max_abs": 1e-6, "verdict": "PASS"},
                                    "dynamo×ort_web": {"max_abs": 0.5, "verdict": "FAIL"}}
    assert cells[("other", "—", 2)] == {"dynamo×ort_cpu": {"max_abs": None, "verdict": "SKIP"}}


# -- aggregation over real job reports -------------------------------------------------------------------------

BENCH = ["mode=verify+bench", "bench.batch_sizes=[2]", "bench.runs=3", "bench.min_seconds=0", "bench.warmup_runs=0",
         "bench.plot=false"]
# a wrong export on ONNX Runtime (FAIL, fastest), eager torch (PASS), and TensorRT, absent here (SKIP)
WRONG = ("exporter=torchscript", "exporter._target_=tests.plugins.PerturbingExporter")
SWEEP = [(*WRONG, "backend=ort_cpu"), (*WRONG, "backend=torch_cpu"), (*WRONG, "backend=tensorrt")]


@pytest.fixture(scope="module")
def sweep_jobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    from parity.pipeline import run_job

    root = tmp_path_factory.mktemp("sweep")
    jobs = []
    for num, overrides in enumerate(SWEEP):
        out = root / str(num)
        cfg = compose_cfg([f"golden.root={GOLDEN}", "model=mlp", "inputs.batch_sizes=[2,4]", *BENCH, *overrides,
                           "report.formats=[json]"])
        report = run_job(cfg, JobContext(output_dir=out, start_dir=root, overrides=overrides, num=num))
        jobs.append({"output_dir": str(out), "num": num, "overrides": list(overrides), "error": None,
                     "report_data": report.to_dict()})
    return root, jobs


def test_the_sweep_tables_follow_from_its_jobs(sweep_jobs: tuple[Path, list[dict[str, Any]]]) -> None:
    root, jobs = sweep_jobs
    sweep = aggregate(root, "report.json", [dict(j) for j in jobs])
    assert [(j.num, j.verdict, j.exit_code) for j in sweep.jobs] == [(0, F, 1), (1, P, 0), (2, S, 0)]
    assert (sweep.verdict, sweep.exit_code) == (F, 1)
    assert sweep.pivot["columns"] == ["torchscript×ort_cpu", "torch_cpu", "torchscript×tensorrt"]
    cells = {(r["batch_size"], label): cell for r in sweep.pivot["rows"] for label, cell in r["cells"].items()}
    assert [r["batch_size"] for r in sweep.pivot["rows"]] == [2, 4]
    wrong = cells[(2, "torchscript×ort_cpu")]
    assert wrong["verdict"] == "FAIL" and wrong["max_abs"] > 1e-3
    assert cells[(4, "torch_cpu")]["verdict"] == "PASS" and 0 <= cells[(4, "torch_cpu")]["max_abs"] < 1e-5
    assert cells[(2, "torchscript×tensorrt")] == {"max_abs": None, "verdict": "SKIP"}
    (table,) = sweep.bench
    assert table["excluded"] == ["torchscript×ort_cpu"] and table["backends"] == ["torchscript×ort_cpu", "torch_cpu"]
    assert [r["winner"] for r in table["rows"]] == ["torch_cpu"]
    (matrix,) = [m for m in sweep.pairwise if m["batch_size"] == 4]
    assert matrix["labels"] == ["golden", "torchscript×ort_cpu", "torch_cpu"]
    pairs = {(p["a"], p["b"]): p["max_abs"] for p in matrix["pairs"]}
    assert pairs[("golden", "torchscript×ort_cpu")] > 1e-3 > 1e-5 > pairs[("golden", "torch_cpu")]
    assert pairs[("torchscript×ort_cpu", "torch_cpu")] == pytest.approx(pairs[("golden", "torchscript×ort_cpu")],
                                                                     rel=0.01)


def test_a_job_row_per_check_batch_and_output(sweep_jobs: tuple[Path, list[dict[str, Any]]]) -> None:
    _, jobs = sweep_jobs
    rows = rows_of(jobs[0]["report_data"], 0)
    assert [(r.check, r.batch_size, r.output, r.verdict) for r in rows] == [
        ("reference", 2, "logits", P), ("backend", 2, "logits", F), ("reference", 4, "logits", P),
        ("backend", 4, "logits", F)]
    assert rows[1].exporter == "torchscript" and rows[1].backend == "ort_cpu" and rows[1].max_abs > 1e-3
    assert "% of elements outside atol=0.0001 rtol=0.001" in rows[1].message
    assert all(r.top1_agreement is not None and r.l2_rel is not None for r in rows)
    skipped = rows_of(jobs[2]["report_data"], 2)
    assert {r.verdict for r in skipped if r.check == "backend"} == {S}


def test_a_job_that_left_no_report_is_an_error_row(sweep_jobs: tuple[Path, list[dict[str, Any]]],
                                                  tmp_path: Path) -> None:
    _, jobs = sweep_jobs
    expected = [list(o) for o in SWEEP] + [[*WRONG, "backend=openvino_cpu"]]
    sweep = aggregate(tmp_path, "report.json", [dict(j) for j in jobs], expected=expected, failure="Killed")
    last = sweep.jobs[-1]
    assert (last.num, last.verdict, last.exit_code, last.report) == (3, E, 2, None)
    assert last.error == ("no report: job 3 ended without writing report.json (killed, out of memory, or never "
                          "started); the launcher stopped the sweep: Killed")
    assert (sweep.verdict, sweep.exit_code) == (E, 2) and sweep.rows[-1].verdict is E


def test_jobs_differing_in_another_override_get_columns_of_their_own(
        sweep_jobs: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    _, jobs = sweep_jobs
    twins = []
    for num, numerics in enumerate(["default", "strict"]):
        job = dict(jobs[1], num=num, overrides=[*jobs[1]["overrides"], f"numerics={numerics}"])
        twins.append(job)
    sweep = aggregate(tmp_path, "report.json", twins)
    assert sweep.pivot["columns"] == ["torch_cpu [numerics=default]", "torch_cpu [numerics=strict]"]


def test_a_sweep_report_breaking_its_schema_is_kept_as_evidence_and_not_written(
        sweep_jobs: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    """A job report read back with a model name that is a number (edited, or written by another tool): the sweep's
    document breaks its schema, so no sweep_report.json is written, the document is kept beside it, and
    write_sweep answers False (the sweep then exits 2)."""
    import json

    from parity.plan import report_settings
    from parity.report.formats import write_sweep

    _, jobs = sweep_jobs
    tampered = json.loads(json.dumps(jobs[1]["report_data"]))
    tampered["model"]["name"] = 5
    sweep = aggregate(tmp_path, "report.json", [dict(jobs[1], report_data=tampered)])
    assert write_sweep(sweep, report_settings(compose_cfg(["report.formats=[json]"])), tmp_path) is False
    assert not (tmp_path / "sweep_report.json").exists()
    assert json.loads((tmp_path / "sweep_report.json.invalid").read_text())["rows"][0]["model"] == 5
