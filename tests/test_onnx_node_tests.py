"""ONNX's own operator tests, built in memory by onnx.backend.test.loader, imported as goldens of ONNX-only models
and run on a backend in one Hydra sweep: a handful of cases here; the full run is in the README."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.extras import needs_openvino

SUPPORTED = ["test_abs", "test_add", "test_relu", "test_matmul_2d", "test_conv_with_strides_padding"]
LEFT_OUT = {"test_equal_string": "element type STRING", "test_reduce_min_empty_set": "NaN/Inf",
            "test_sequence_insert_at_back": "not tensors",
            "test_cast_FLOAT_to_FLOAT8E4M3FN": "element type FLOAT8E4M3FN"}


def tool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The tool in a bare environment, sharing the session's cache (the index of which module makes which case)."""
    return subprocess.run([sys.executable, "-m", "parity.onnx_node_tests", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                                       "PARITY_CACHE": os.environ["PARITY_CACHE"]})


FINGERPRINTS = """
import hashlib, json, sys
from parity.onnx_node_tests import load_cases, select
patterns = json.loads(sys.argv[1])
cases = select(load_cases(None if sys.argv[2] == "all" else patterns), patterns)
def sha(case):
    digest = hashlib.sha256(case.model.SerializeToString())
    for inputs, outputs in case.data_sets:
        for value in [*inputs, *outputs]:
            numeric = getattr(value, "dtype", object) != object  # an object array's bytes are its pointers
            digest.update(value.tobytes() if numeric else repr(getattr(value, "tolist", lambda: value)()).encode())
    return digest.hexdigest()
print(json.dumps({case.name: sha(case) for case in cases}))
"""


def test_cases_built_from_the_index_are_the_cases_onnx_builds_with_every_module(tmp_path: Path) -> None:
    """The first load imports every module and writes which made which case; a load of a few cases then imports
    only their modules (the one of test_conv* also makes other cases: only the matching ones are taken)."""
    patterns = ["test_abs", "test_conv_with_strides*", "test_equal_string", "test_cast_FLOAT_to_FLOAT8E4M3FN"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "PARITY_CACHE": str(tmp_path / "cache")}

    def fingerprints(how: str) -> dict[str, str]:
        done = subprocess.run([sys.executable, "-c", FINGERPRINTS, json.dumps(patterns), how], capture_output=True,
                              text=True, timeout=600, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    every = fingerprints("all")
    index = json.loads(next((tmp_path / "cache" / "onnx-node-tests").glob("index-onnx-*.json")).read_text())
    assert len(index) > 1000 and index["test_abs"] == "onnx.backend.test.case.node.abs"
    assert len(every) == 6 and every == fingerprints("patterns")


def test_node_tests_import_as_goldens_and_sweep_on_a_backend(cli, tmp_path: Path) -> None:
    cases = ",".join([*SUPPORTED, *LEFT_OUT])
    result = tool("--cases", cases, "--dir", "node_tests", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(line.split("] ", 1)[1].split(": ", 1) for line in result.stdout.splitlines() if line.startswith("["))
    assert {name for name, status in lines.items() if status == "imported"} == set(SUPPORTED)
    for name, reason in LEFT_OUT.items():
        assert reason in lines[name], (name, lines[name])
    directory = tmp_path / "node_tests"
    assert sorted(p.stem for p in (directory / "conf" / "model").glob("*.yaml")) == sorted(SUPPORTED)
    manifest = json.loads((directory / "golden" / "test_conv_with_strides_padding" / "onnx_node" /
                           "manifest.json").read_text())
    assert manifest["imported"]["format"] == "onnx_test_data" and manifest["imported"]["tool"] == "onnx node tests"
    assert f"--config-dir {directory / 'conf'} 'model=glob(test_*)'" in result.stdout
    sweep = cli("-m", f"--config-dir={directory / 'conf'}", "model=glob(test_*)",
                f"golden.root={directory / 'golden'}", "backend=ort_cpu", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    summary = [line for line in sweep.stdout.splitlines() if line.startswith(("PASS  model=", "FAIL  model="))]
    assert sorted(line.split()[1] for line in summary) == sorted(f"model={c}" for c in SUPPORTED)
    reports = sorted((tmp_path / "sweep").glob("*/report.json"))
    assert len(reports) == len(SUPPORTED)
    for path in reports:
        report = json.loads(path.read_text())
        assert report["verdict"] == "PASS" and report["golden"]["imported"]["format"] == "onnx_test_data"
        reference = report["checks"][0]["outputs"][0]
        assert reference["atol"] == 1e-7 and reference["rtol"] == 1e-3  # ONNX's own runner tolerance
    before = {p: p.read_bytes() for p in (directory / "cases" / "test_abs").rglob("*") if p.is_file()}
    again = tool("--cases", "test_abs", "--dir", "node_tests", cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stdout  # an import never replaces a golden ...
    assert (directory / "conf" / "model" / "test_abs.yaml").is_file()  # ... and keeps what belongs to it
    assert {p: p.read_bytes() for p in (directory / "cases" / "test_abs").rglob("*") if p.is_file()} == before
    forced = tool("--cases", "test_abs", "--dir", "node_tests", "--overwrite", cwd=tmp_path)
    assert forced.returncode == 0 and "test_abs: imported" in forced.stdout  # ... unless asked to


@needs_openvino
def test_node_test_goldens_run_on_openvino(cli, tmp_path: Path) -> None:
    assert tool("--cases", "test_relu,test_add", "--dir", "nt", cwd=tmp_path).returncode == 0
    sweep = cli("-m", f"--config-dir={tmp_path / 'nt' / 'conf'}", "model=glob(test_*)",
                f"golden.root={tmp_path / 'nt' / 'golden'}", "backend=openvino_cpu", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stdout[-3000:]
    assert sweep.stdout.count("PASS  model=test_") == 2


def test_the_tool_lists_cases_and_refuses_an_empty_choice(tmp_path: Path) -> None:
    listed = tool("--list", "--cases", "test_abs,test_equal_string", cwd=tmp_path)
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == ["test_abs: supported",
                                          "test_equal_string: input 'x' has element type STRING, which parity "
                                          "cannot compare"]
    missing = tool("--dir", "x", cwd=tmp_path)  # said before any case is built
    assert missing.returncode == 2 and "--cases is required" in missing.stderr
    none = tool("--cases", "test_no_such_operator", cwd=tmp_path)
    assert none.returncode == 2 and "no ONNX node test matches" in none.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "onnx_node_tests").exists()
