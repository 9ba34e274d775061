"""Verdicts where people look (issue 14): tables that fit 120 columns and state their criteria, strict skips,
JUnit XML, the markdown summary, quiet output, artifact retention, the HTML report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from parity.report.formats.table import criteria, fit, job_table, pivot_table, sweep_table

WIDTH = 120


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


@pytest.mark.parametrize("overrides, criterion", [
    ([], "allclose a=1e-4 r=1e-3"),
    (["tolerance=classification"], "max≤1e-3 or rel≤0.01, top-1≥100%, Δp≤1pp"),
    (["transform=fp16"], "L2 rel≤0.01, top-1≥100%, Δp≤1pp"),
])
def test_job_tables_fit_120_columns_and_show_the_criteria_that_decide(run_parity, overrides, criterion) -> None:
    report, code = run_parity(["model=mlp", "exporter=torchscript", *overrides])
    assert code == 0, report["error"]
    text = job_table(report)
    table = _table_lines(text)
    assert table and max(len(line) for line in table) <= WIDTH, text
    assert len([line for line in table if line.startswith("|--")]) == 1, "split although the columns fit"
    assert criterion in text
    backend = next(o for c in report["checks"] if c["check"] == "backend" for o in c["outputs"])
    if backend["check"] == "l2_rel":
        assert "a=" not in criteria(backend) and "allclose" not in criteria(backend)
    assert all("|" not in criteria(o) for c in report["checks"] for o in c["outputs"])  # no markdown cell breaks
    full = job_table(report, columns="full", width=None)
    assert "cosine" in full and "mean abs" in full and "cosine" not in text
    chosen = job_table(report, columns=["output", "cosine", "verdict"])
    assert _table_lines(chosen)[0].split("|")[1:-1] == [" output ", " cosine   ", " verdict "]


def test_a_wide_grid_is_split_into_tables_that_fit_and_long_names_are_shortened() -> None:
    labels = [f"{e}+int8_static×{b} [numerics=strict]" for e in ("dynamo", "torchscript", "jit_trace")
              for b in ("ort_cpu", "openvino_cpu", "ort_trt")]
    pivot = {"columns": labels, "rows": [
        {"model": "centerpoint", "output": f"a_rather_long_output_name_{i}", "batch_size": 8,
         "cells": {label: {"max_abs": 1.5e-5 * (j + 1), "verdict": "PASS"} for j, label in enumerate(labels)}}
        for i in range(3)]}
    text = pivot_table(pivot)
    assert _widest(text) <= WIDTH
    assert all(label in text for label in labels)  # every column is still there, in some part
    parts = text.split("\n\n")
    assert len(parts) > 1 and all(part.splitlines()[0].startswith("| model") for part in parts)
    rows = [{"job": i, "model": "m", "exporter": "dynamo+int8_static", "backend": "openvino_cpu",
             "variant": "numerics=strict, inputs=samples16", "check": "backend", "batch_size": 1024,
             "output": "StatefulPartitionedCall/model/dense_1/BiasAdd:0", "verdict": "PASS", "max_abs": 1e-5,
             "mean_abs": 1e-6, "l2_rel": 1e-4, "cosine": 1.0, "top1_agreement": 0.995, "prob_diff_max_pp": 0.3}
            for i in range(3)]
    text = sweep_table(rows)
    assert _widest(text) <= WIDTH and "…" in text
    assert "99.5%" in text  # never rounded up to 100%
    squeezed = fit(["a", "b"], [["x" * 200, "y"]], "github", WIDTH)  # not squeezable: shortened as a last resort
    assert _widest(squeezed) <= WIDTH and "…" in squeezed


def test_fit_keeps_every_table_within_the_width_whatever_its_cells() -> None:
    import random

    rng = random.Random(14)
    for _ in range(400):
        width = rng.randint(40, 160)
        columns = rng.randint(1, 14)
        headers = ["h" * rng.randint(1, 30) for _ in range(columns)]
        body = [["x" * rng.randint(0, 60) for _ in range(columns)] for _ in range(rng.randint(0, 4))]
        keep = rng.randint(0, min(3, columns - 1))
        squeeze = {i for i in range(columns) if rng.random() < 0.5}
        text = fit(headers, body, "github", width, squeeze, keep)
        assert _widest(text) <= width, (width, headers, body, keep, squeeze)
        cells = {line.strip("| ").split(" | ")[0] for line in text.splitlines() if line.startswith("| ")}
        assert cells, text


def test_report_columns_and_width_are_checked(cli) -> None:
    for bad, words in (("report.columns=[output,nonsense]", "report.columns names unknown columns ['nonsense']"),
                       ("report.columns=tiny", "report.columns must be compact, full or a list"),
                       ("report.skip_is=maybe", "report.skip_is must be one of ok, fail"),
                       ("report.keep_artifacts=some", "report.keep_artifacts must be one of all, failed, none")):
        proc = cli("model=mlp", bad)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr[-1500:]
        assert len(proc.stderr.strip().splitlines()) == 1


def _tensorrt_missing() -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here: backend=tensorrt would run, not SKIP")


def test_strict_skips_exit_non_zero_for_a_job_and_for_a_sweep(cli, tmp_path: Path) -> None:
    _tensorrt_missing()
    lenient = cli("model=mlp", "backend=tensorrt")
    assert lenient.returncode == 0 and lenient.stdout.splitlines()[-1].startswith("SKIP"), lenient.stderr[-2000:]
    strict = cli("model=mlp", "backend=tensorrt", "report.skip_is=fail")
    assert strict.returncode == 1, strict.stderr[-2000:]
    assert "report.skip_is=fail counts a SKIP as a failure" in strict.stdout.splitlines()[-1]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert (report["verdict"], report["exit_code"]) == ("SKIP", 1)
    sweep = cli("-m", "model=mlp", "exporter=torchscript", "backend=ort_cpu,tensorrt", "report.skip_is=fail")
    assert sweep.returncode == 1, sweep.stderr[-2000:]
    document = json.loads((tmp_path / "sweep" / "sweep_report.json").read_text())
    assert document["verdict"] == "PASS" and document["exit_code"] == 1
    assert sorted(job["exit_code"] for job in document["jobs"]) == [0, 1]
    assert "report.skip_is=fail counts a SKIP as a failure" in sweep.stdout.splitlines()[-1]


def _reports(tmp: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(tmp.glob("**/report.json"))]


# -- JUnit XML ------------------------------------------------------------------------------------------------

JUNIT_XSD = Path(__file__).resolve().parent / "data" / "junit.xsd"


def _junit(path: Path) -> Any:
    """Parse with junitparser (a real JUnit consumer) after validating against the CI servers' schema."""
    junitparser = pytest.importorskip("junitparser",
                                      reason="junitparser is a test dependency (pip install -e '.[test]')")
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema is a test dependency (pip install -e '.[test]')")
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(path))
    return junitparser.JUnitXml.fromfile(str(path))


def test_junit_has_a_testcase_per_check_batch_and_output_with_the_failure_and_its_metrics(cli, tmp_path: Path) -> None:
    proc = cli("model=mlp", "exporter=torchscript", "inputs.batch_sizes=[1,4]", "tolerance.atol=1e-12",
               "tolerance.rtol=0", "report.formats=[json,table,junit]")
    assert proc.returncode == 1, proc.stderr[-2000:]
    xml = _junit(tmp_path / "run" / "junit.xml")
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    cases = {case.name: case for case in suite}
    assert set(cases) == {"reference[b=1] logits", "reference[b=4] logits", "backend[b=1] logits",
                          "backend[b=4] logits"}
    assert {case.classname for case in suite} == {"mlp.torchscript.ort_cpu"}
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    for check in report["checks"]:
        for out in check["outputs"]:
            case = cases[f"{check['check']}[b={check['batch_size']}] {out['name']}"]
            if out["verdict"] == "PASS":
                assert case.is_passed
            else:
                (failure,) = case.result
                assert type(failure).__name__ == "Failure" and failure.message == out["message"]
                assert f"max abs {out['metrics']['max_abs']:.3g}" in failure.text
                assert "criteria: allclose a=1e-12 r=0" in failure.text
    assert suite.tests == 4 and suite.failures == sum(not c.is_passed for c in suite) > 0 and suite.errors == 0
    assert abs(suite.time - report["seconds"]) < 1e-3


def test_junit_of_a_sweep_has_a_suite_per_job_with_errors_and_strict_skips(cli, tmp_path: Path) -> None:
    _tensorrt_missing()
    proc = cli("-m", "model=mlp", "exporter=torchscript", "backend=ort_cpu,tensorrt", "exporter.opset=17,25",
               "report.formats=[json,junit]", "report.skip_is=fail")
    assert proc.returncode == 2, proc.stderr[-2000:]
    xml = _junit(tmp_path / "sweep" / "junit.xml")
    suites = {suite.name.split(":")[0]: suite for suite in xml}
    assert len(suites) == 4
    results = {(case.classname, case.name): [type(r).__name__ for r in case.result] for s in xml for case in s}
    assert results[("mlp.torchscript.ort_cpu[exporter_opset=17]", "backend[b=4] logits")] == []
    assert results[("mlp.torchscript.ort_cpu[exporter_opset=25]", "backend[b=4]")] == ["Error"]
    strict = [case for s in xml for case in s if case.classname.startswith("mlp.torchscript.tensorrt")
              and case.name.startswith("backend")]
    assert strict and all(type(case.result[0]).__name__ == "Failure" and "report.skip_is=fail" in
                          case.result[0].message for case in strict)
    assert len(results) == sum(suite.tests for suite in xml)  # every (classname, name) is unique (GitLab)
    for job in tmp_path.glob("sweep/*/junit.xml"):
        _junit(job)


def test_junit_of_a_job_without_checks_and_of_a_job_that_left_no_report(tmp_path: Path) -> None:
    from parity.report.formats.junit import document, missing_suite, testsuite

    report = {"mode": "golden", "verdict": "ERROR", "error": "golden mlp/default exists\x1b[0m; golden.overwrite=true",
              "exporter": None, "transform": None, "backend": {"name": "torch_cpu (reference)"},
              "model": {"name": "mlp"}, "golden": {"path": None}, "job": {"output_dir": str(tmp_path)},
              "checks": [], "created": "2026-12-01T10:00:00+00:00", "seconds": 1.25, "config": {}}
    path = tmp_path / "junit.xml"
    path.write_text(document([testsuite(report), missing_suite({"num": 3, "output_dir": "x", "error": None})], "t"))
    xml = _junit(path)
    cases = [(case.classname, case.name, type(case.result[0]).__name__, case.result[0].message)
             for s in xml for case in s]
    assert cases == [("mlp.eager.torch_cpu", "golden", "Error", "golden mlp/default exists; golden.overwrite=true"),
                     ("parity.sweep", "job 3", "Error", "the job left no report")]


# -- the markdown summary --------------------------------------------------------------------------------------


def test_the_summary_goes_to_the_run_and_once_to_the_github_step_summary(cli, tmp_path: Path) -> None:
    step = tmp_path / "step_summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(step)}
    proc = cli("model=mlp", "exporter=torchscript", "tolerance.atol=1e-12", "tolerance.rtol=0", env=env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert step.read_text() == summary and summary.startswith("### parity: FAIL · mlp · torchscript×ort_cpu")
    header = next(line for line in summary.splitlines() if line.startswith("| check"))
    row = next(line for line in summary.splitlines() if line.startswith("| backend"))
    assert row.count(" | ") == header.count(" | ") and "allclose a=1e-12 r=0" in row
    assert "- backend b=4 logits: " in summary and summary.rstrip().endswith("backend=ort_cpu`")
    step.unlink()
    sweep = cli("-m", "model=mlp", "exporter=torchscript,jit_trace", env=env)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    text = step.read_text()
    assert text.count("### parity") == 1 and text.startswith("### parity sweep: PASS · 2 job(s): 2 PASS")
    assert text == (tmp_path / "sweep" / "summary.md").read_text()
    assert len(list(tmp_path.glob("sweep/*/summary.md"))) == 2  # each job still has its own file


def test_a_truncated_sweep_summary_keeps_its_table_up_to_a_row() -> None:
    from types import SimpleNamespace

    from parity.report.formats.summary import fit_markdown, sweep_markdown

    rows = [{"job": i, "model": "m", "exporter": "dynamo", "backend": "ort_cpu", "variant": "", "check": "backend",
             "batch_size": 4, "output": f"out_{i}", "verdict": "PASS", "max_abs": 1e-6, "mean_abs": 1e-7,
             "l2_rel": 1e-6, "cosine": 1.0, "top1_agreement": None, "prob_diff_max_pp": None} for i in range(3000)]
    document = {"jobs": [{"num": 0, "verdict": "PASS", "error": None}], "verdict": "PASS", "sweep_dir": "/s",
                "pivot": {"columns": [], "rows": []}, "rows": rows}
    lines = sweep_markdown(document, SimpleNamespace(columns="compact"))
    text = fit_markdown(lines, 20_000, "/s/summary.md")
    assert len(text.encode()) <= 20_000 and "| job  |" in text and "| 0    |" in text
    kept = [line for line in text.splitlines() if line.startswith("| ")]
    assert 10 < len(kept) < 3000 and all(line.endswith("|") for line in kept)  # whole rows only
    assert f"of {len(lines)} lines shown" in text


def test_the_step_summary_stays_under_githubs_limit_with_a_note(cli, tmp_path: Path) -> None:
    from parity.report.formats.summary import LIMIT

    step = tmp_path / "step_summary.md"
    step.write_text("x" * (LIMIT - 300))  # earlier steps filled nearly all of it
    proc = cli("model=mlp", "exporter=torchscript", env={"GITHUB_STEP_SUMMARY": str(step)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert step.stat().st_size <= LIMIT
    added = step.read_text()[LIMIT - 300:]
    assert "Truncated to stay under GitHub's 1 MiB step summary" in added
    assert str(tmp_path / "run" / "summary.md") in added
    assert "Truncated" not in (tmp_path / "run" / "summary.md").read_text()


# -- artifact retention ----------------------------------------------------------------------------------------


def test_keep_artifacts_failed_removes_a_passing_jobs_models_and_outputs_and_keeps_a_failing_ones(
        cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = cli("model=mlp", "exporter=torchscript", "report.keep_artifacts=failed")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((run / "report.json").read_text())
    assert report["retention"]["policy"] == "failed" and report["retention"]["applied"] == "job"
    assert sorted(report["retention"]["removed"]) == ["artifacts", "candidates_b4.npz"]
    assert report["retention"]["freed_bytes"] > 0
    assert not (run / "artifacts").exists() and not list(run.glob("candidates_b*.npz"))
    assert (run / "parity.log").is_file() and (run / "summary.md").is_file() and (run / ".hydra").is_dir()
    failing = cli("model=mlp", "exporter=torchscript", "report.keep_artifacts=failed", "tolerance.atol=1e-12",
                  "tolerance.rtol=0")
    assert failing.returncode == 1
    report = json.loads((run / "report.json").read_text())
    assert report["retention"]["removed"] == [] and (run / "artifacts" / "torchscript" / "model.onnx").is_file()
    gone = cli("model=mlp", "exporter=torchscript", "report.keep_artifacts=none", "tolerance.atol=1e-12",
               "tolerance.rtol=0")
    assert gone.returncode == 1 and not (run / "artifacts").exists()
    kept = cli("model=mlp", "exporter=torchscript")
    assert kept.returncode == 0 and json.loads((run / "report.json").read_text())["retention"] is None
    assert (run / "artifacts").is_dir()


def test_retention_follows_the_final_verdict_after_a_report_format_failed(run_parity, tmp_path: Path) -> None:
    import tests.plugins  # noqa: F401  (registers the failing `broken` format)

    report, code = run_parity(["model=mlp", "exporter=torchscript", "report.formats=[json,broken]",
                               "report.keep_artifacts=failed"])
    assert code == 2 and "report format 'broken' failed" in report["error"]
    run = tmp_path / "run"
    assert (run / "artifacts" / "torchscript" / "model.onnx").is_file()  # an ERROR keeps its evidence
    written = json.loads((run / "report.json").read_text())
    assert written["verdict"] == "ERROR" and written["retention"] == {"policy": "failed", "removed": [],
                                                                       "freed_bytes": 0, "applied": "job"}


def test_a_sweep_removes_artifacts_after_its_pairwise_matrix_is_built(cli, tmp_path: Path) -> None:
    proc = cli("-m", "model=mlp", "exporter=torchscript", "backend=ort_cpu,torch_cpu", "report.keep_artifacts=none")
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = json.loads((tmp_path / "sweep" / "sweep_report.json").read_text())
    assert document["pairwise"] and document["pairwise"][0]["pairs"]  # built from the candidates first
    assert all(pair["max_abs"] is not None for pair in document["pairwise"][0]["pairs"])
    assert len(document["retention"]) == 2
    assert {r["policy"] for r in document["retention"]} == {"none"}
    removed = [name for r in document["retention"] for name in r["removed"]]
    assert "artifacts" in removed and removed.count("candidates_b4.npz") == 2
    assert not list((tmp_path / "sweep").glob("*/candidates_b*.npz"))
    assert not list((tmp_path / "sweep").glob("*/artifacts"))
    for job in tmp_path.glob("sweep/*/report.json"):
        assert json.loads(job.read_text())["retention"]["applied"] == "sweep"
    mixed = cli("-m", "model=mlp", "exporter=torchscript", "report.keep_artifacts=all,none",
                f"hydra.sweep.dir={tmp_path / 'mixed'}")
    assert mixed.returncode == 0, mixed.stderr[-2000:]
    document = json.loads((tmp_path / "mixed" / "sweep_report.json").read_text())
    assert [r["job"] for r in document["retention"]] == [1]  # each job by its own setting
    assert len(list((tmp_path / "mixed").glob("*/artifacts"))) == 1


# -- quiet output and progress ---------------------------------------------------------------------------------


def test_stdout_carries_only_tables_and_the_terminal_only_paritys_lines(cli, tmp_path: Path) -> None:
    proc = cli("-m", "model=mlp", "exporter=torchscript,dynamo")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Launching" not in proc.stdout and "HYDRA" not in proc.stdout and "#0" not in proc.stdout
    assert all(line.startswith(("|", "ran on:", "export cache:", "PASS", "==")) for line in proc.stdout.splitlines()
               if line), proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("[parity] ") for line in lines), proc.stderr
    assert [line for line in lines if " job " in f" {line[9:]}"][:2] == [
        "[parity] job 1/2: model=mlp exporter=torchscript", "[parity] job 2/2: model=mlp exporter=dynamo"]
    launch = (tmp_path / "sweep" / "multirun.log").read_text()
    assert "Launching 2 jobs locally" in launch and "#1 : model=mlp exporter=dynamo" in launch


def test_native_stderr_of_tensorflow_goes_to_the_log_not_the_terminal(cli, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="the tf extra is not installed here")
    proc = cli("model=cifar10_vgg")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("[parity] ") for line in lines), proc.stderr
    log_text = (tmp_path / "run" / "parity.log").read_text()
    assert "oneDNN" in log_text or "absl" in log_text or "[tensorflow]" in log_text


def test_a_traceback_stays_in_the_log() -> None:
    import logging
    import sys

    from parity.logs import ConsoleFormatter

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("parity", logging.ERROR, "x", 1, "unexpected error", None, sys.exc_info())
    assert ConsoleFormatter().format(record) == "[parity] unexpected error (traceback in parity.log)"


def _on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI with stderr on a real pseudo-terminal of 120 columns; (exit code, what the terminal got)."""
    import fcntl
    import os
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios

    from tests.conftest import REPO

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen([sys.executable, "-m", "parity", *args], stdout=subprocess.DEVNULL, stderr=slave,
                            cwd=str(REPO), env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=600), b"".join(chunks).decode(errors="replace")


def test_progress_bars_on_a_terminal_and_plain_lines_elsewhere(cli, tmp_path: Path) -> None:
    args = ["-m", "model=mlp", "exporter=dynamo,torchscript", "mode=verify+bench", "bench.runs=5",
            "bench.min_seconds=0.2", "bench.batch_sizes=[1,2]", f"hydra.sweep.dir={tmp_path / 'tty'}",
            "export_cache.enabled=false"]  # the export's clock is the point: no cache hit in its place
    code, seen = _on_a_terminal(args, tmp_path)
    assert code == 0, seen[-2000:]
    assert "bench ort_cpu: 100%|" in seen and "2/2 [" in seen  # the benchmark's bar over its batch sizes
    assert "\rexporting with dynamo: 00:0" in seen  # the export's running clock
    assert "[parity] job 2/2: model=mlp exporter=torchscript" in seen and "1/2 [" in seen  # the sweep's bar
    assert "[parity] bench b=1: median" in seen and "\n[parity] bench b=1" in seen.replace("\r", "\n")
    plain = cli(*args[:-1])
    assert plain.returncode == 0 and "\r" not in plain.stderr and "%|" not in plain.stderr
    assert "[parity] job 2/2: model=mlp exporter=torchscript mode=verify+bench" in plain.stderr


# -- the self-contained HTML report, rendered by a real headless Chromium ------------------------------------------

FAULT = ["transform._target_=tests.plugins.ScaleWeightTransform", "+transform.target=model.2/Gemm",
         "+transform.factor=1.5"]


def _browser() -> Any:
    from parity.web.chromium import Browser, missing_reason

    reason = missing_reason(needed_for="the HTML report's browser test")
    if reason:
        pytest.skip(reason)
    return Browser()


def _self_contained(page: str) -> None:
    """Nothing is fetched from anywhere: styles, script and every plot are inside the file."""
    import re

    assert not re.search(r'(src|href)="(https?:|//)', page) and "<link" not in page
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'<img[^>]* src="([^"]+)"', page))


def test_the_html_report_of_a_job_renders_in_a_real_browser(cli, tmp_path: Path) -> None:
    proc = cli("model=mlp", "exporter=torchscript", "localize=source", "mode=verify+bench", "bench.runs=5",
               "bench.min_seconds=0.2", "bench.batch_sizes=[1,2]", "report.formats=[json,html]", *FAULT)
    assert proc.returncode == 1, proc.stderr[-2000:]
    page = (tmp_path / "run" / "report.html").read_text()
    _self_contained(page)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    with _browser() as tab:
        tab.open((tmp_path / "run" / "report.html").as_uri())
        assert tab.errors() == []
        seen = tab.evaluate("""({
            verdict: document.getElementById('verdict').textContent,
            rows: Array.from(document.querySelectorAll('#verdicts tbody tr')).map(r => r.dataset.verdict),
            images: Array.from(document.images).map(i => [i.className, i.complete && i.naturalWidth > 0]),
            worst: document.querySelectorAll('.output table tbody tr').length,
            failingCells: document.querySelectorAll('#verdicts td.FAIL').length,
        })""")
        assert seen["verdict"] == "FAIL"
        assert seen["rows"] == [o["verdict"] for c in report["checks"] for o in c["outputs"]]
        assert dict(seen["images"]) == {"histogram": True, "divergence": True, "latency": True}, seen["images"]
        assert seen["worst"] == len(report["checks"][-1]["outputs"][0]["profile"]["worst"]) > 0
        assert seen["failingCells"] == sum(o["verdict"] == "FAIL" for c in report["checks"] for o in c["outputs"])
        tab.evaluate("document.querySelector('button.only-problems').click()")
        shown = tab.evaluate("Array.from(document.querySelectorAll('#verdicts tbody tr'))"
                             ".filter(r => !r.hidden).map(r => r.dataset.verdict)")
        assert shown and set(shown) == {"FAIL"}
        assert tab.errors() == []


def test_the_browser_check_sees_a_broken_page(tmp_path: Path) -> None:
    """The renderer check can fail: a page whose script throws and logs an error is caught."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><p id=x>x</p><script>console.error('bad'); undefinedFunction();</script>")
    with _browser() as tab:
        tab.open(broken.as_uri())
        errors = tab.errors()
    assert any("bad" in e for e in errors) and any("undefinedFunction" in e for e in errors), errors


def test_the_html_report_of_a_sweep_has_its_grid_its_matrix_and_links_to_every_job(cli, tmp_path: Path) -> None:
    proc = cli("-m", "model=mlp", "exporter=torchscript,jit_trace", "backend=ort_cpu,torch_cpu",
               "report.formats=[json,html]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = tmp_path / "sweep"
    page = (sweep / "report.html").read_text()
    _self_contained(page)
    document = json.loads((sweep / "sweep_report.json").read_text())
    with _browser() as tab:
        tab.open((sweep / "report.html").as_uri())
        assert tab.errors() == []
        seen = tab.evaluate("""({
            verdict: document.getElementById('verdict').textContent,
            grid: Array.from(document.querySelectorAll('#matrix thead th')).map(h => h.textContent),
            gridCells: Array.from(document.querySelectorAll('#matrix td.PASS')).length,
            rows: document.querySelectorAll('#rows tbody tr').length,
            pairwise: document.querySelectorAll('table.pairwise').length,
            links: Array.from(document.querySelectorAll('a')).map(a => a.href),
        })""")
        assert seen["verdict"] == "PASS"
        columns = document["pivot"]["columns"]
        assert seen["grid"][3:] == columns and seen["gridCells"] == len(columns)
        assert seen["rows"] == len(document["rows"]) and seen["pairwise"] == len(document["pairwise"]) > 0
        assert len(seen["links"]) == 4
        for link in seen["links"]:
            tab.open(link)  # every job's own page opens, and renders without errors
            assert tab.errors() == [] and tab.evaluate("document.getElementById('verdict').textContent") == "PASS"


def test_the_html_report_plots_a_runtime_localisation_along_the_graph(cli, tmp_path: Path) -> None:
    proc = cli("model=mlp", "exporter=torchscript", "localize=all", "report.formats=[json,html]",
               "backend._target_=tests.plugins.ScaleTensorOrtBackend", "+backend.node_contains=model.2/Gemm",
               "+backend.factor=1.5")
    assert proc.returncode == 1, proc.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["localization"]["kind"] == "runtime" and Path(report["localization"]["overlay"]).is_file()
    with _browser() as tab:
        tab.open((tmp_path / "run" / "report.html").as_uri())
        assert tab.errors() == []
        shown = tab.evaluate("Array.from(document.images).filter(i => i.naturalWidth > 0).map(i => i.className)")
        text = tab.evaluate("document.getElementById('divergence').nextElementSibling.nextElementSibling"
                            ".textContent")
    assert "divergence" in shown and "histogram" in shown
    assert "first divergent node" in text and "model.2" in text
