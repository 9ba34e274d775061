"""parity inside a user's own pytest suite (issue 14): the pytest11 plugin's fixture and parity_*.yaml check files,
run by a real `python -m pytest` in a user's project directory (the plugin loads through its entry point)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import GOLDEN, REPO, USER_CONF


def _installed() -> None:
    points = [e for e in importlib.metadata.entry_points(group="pytest11") if e.value == "parity.pytest_plugin"]
    if not points:
        pytest.fail("parity's pytest11 entry point is not installed: pip install -e . (nox installs it)")


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "--tb=short",
                           f"--junitxml={project / 'junit.xml'}", *args], cwd=str(project), env=env,
                          capture_output=True, text=True, timeout=900)


def _outcomes(project: Path) -> dict[str, str]:
    """Each test item's outcome from pytest's own JUnit file (passed, failed, error or skipped), by its name and,
    where names repeat, `classname::name`."""
    import xml.etree.ElementTree as ET

    found: dict[str, str] = {}
    cases = list(ET.parse(project / "junit.xml").getroot().iter("testcase"))
    names = [case.get("name") for case in cases]
    for case in cases:
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds else "passed"
        name = case.get("name")
        found[name if names.count(name) == 1 else f"{case.get('classname')}::{name}"] = outcome
    return found


def test_the_plugin_loads_through_its_entry_point(tmp_path: Path) -> None:
    _installed()
    done = _pytest(tmp_path, "--help")
    assert done.returncode == 0 and "--parity-update-goldens" in done.stdout and "--parity-output" in done.stdout


def test_a_check_file_gives_one_item_per_job_and_output_with_its_verdict(tmp_path: Path) -> None:
    _installed()
    (tmp_path / "parity_mlp.yaml").write_text(textwrap.dedent(f"""\
        overrides: [model=mlp, "golden.root={GOLDEN}"]
        jobs:
          - ["exporter=torchscript,jit_trace"]
          - [exporter=torchscript, tolerance.atol=1e-12, tolerance.rtol=0]
        """))
    done = _pytest(tmp_path)
    assert done.returncode == 1, done.stdout[-3000:]
    outcomes = _outcomes(tmp_path)
    assert len(outcomes) == 3 and all(key.endswith("::logits") for key in outcomes), outcomes
    assert sorted((key.split("exporter=")[1].split("::")[0], outcome) for key, outcome in outcomes.items()) == [
        ("jit_trace", "passed"), ("torchscript", "passed"), ("torchscript tolerance.atol=1e-12 tolerance.rtol=0",
                                                              "failed")], outcomes
    assert "backend b=4 logits: FAIL: " in done.stdout and "% of elements outside atol=1e-12" in done.stdout
    assert "Traceback" not in done.stdout and "def runtest" not in done.stdout  # parity's message, not ours
    assert "2 passed" in done.stdout and "1 failed" in done.stdout


def test_goldens_are_written_only_with_the_option(tmp_path: Path) -> None:
    _installed()
    root = tmp_path / "goldens"
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "parity_tiny.yaml").write_text(textwrap.dedent(f"""\
        config_dir: {USER_CONF}
        overrides: [model=tiny_conv, exporter=torchscript, "golden.root={root}"]
        jobs: [[backend=ort_cpu]]
        """))
    refused = _pytest(tmp_path)
    assert refused.returncode == 1 and not root.exists(), refused.stdout[-3000:]
    assert refused.stdout.count("pass --parity-update-goldens to create it") >= 2  # both outputs say so
    assert _outcomes(tmp_path) == {"features": "failed", "scores": "failed"}
    made = _pytest(tmp_path, "--parity-update-goldens")
    assert made.returncode == 0, made.stdout[-3000:]
    assert (root / "tiny_conv" / "default").is_dir() and _outcomes(tmp_path) == {"features": "passed",
                                                                               "scores": "passed"}
    again = _pytest(tmp_path)  # the golden now exists: verified, never rewritten
    manifest = (root / "tiny_conv" / "default" / "manifest.json").read_bytes()
    assert again.returncode == 0 and (root / "tiny_conv" / "default" / "manifest.json").read_bytes() == manifest


def test_a_skip_is_a_skipped_test_unless_skips_are_strict(tmp_path: Path) -> None:
    _installed()
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here: backend=tensorrt would run")
    (tmp_path / "parity_trt.yaml").write_text(textwrap.dedent(f"""\
        overrides: [model=mlp, "golden.root={GOLDEN}", backend=tensorrt]
        jobs: [[report.skip_is=ok], [report.skip_is=fail]]
        """))
    done = _pytest(tmp_path)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "1 failed" in done.stdout and "1 skipped" in done.stdout
    assert "SKIP" in done.stdout and "tensorrt" in done.stdout


def test_the_fixture_runs_a_composed_config_and_refuses_to_write_goldens_unasked(tmp_path: Path) -> None:
    _installed()
    (tmp_path / "test_mine.py").write_text(textwrap.dedent(f"""\
        import pytest

        def test_export(parity):
            result = parity.run("model=mlp", "exporter=torchscript", "golden.root={GOLDEN}")
            result.assert_pass()
            assert result.verdict == "PASS" and result.report["exporter"] == "torchscript"
            assert (result.output_dir / "report.json").is_file()

        def test_drift(parity):
            parity.run("model=mlp", "exporter=torchscript", "golden.root={GOLDEN}", "tolerance.atol=1e-12",
                       "tolerance.rtol=0").assert_pass()

        def test_golden(parity):
            parity.run("mode=golden", "model=mlp", "golden.root={tmp_path / 'g'}")

        def test_import(parity):
            parity.run("mode=import", "model=mlp", "import.format=npy", "import.path=x", "golden.root={tmp_path / 'g'}")
        """))
    done = _pytest(tmp_path, f"--parity-output={tmp_path / 'runs'}")
    assert done.returncode == 1, done.stdout[-3000:]
    assert _outcomes(tmp_path) == {"test_export": "passed", "test_drift": "failed", "test_golden": "failed",
                                   "test_import": "failed"}
    assert "writes goldens (mode=import)" in done.stdout
    assert "parity FAIL (model=mlp exporter=torchscript" in done.stdout and "| backend" in done.stdout
    assert "writes goldens (mode=golden): run pytest with --parity-update-goldens" in done.stdout
    assert not (tmp_path / "g").exists()
    reports = sorted((tmp_path / "runs").glob("*/*/report.json"))  # a folder of this session's own
    assert [json.loads(p.read_text())["verdict"] for p in reports] == ["PASS", "FAIL"]
