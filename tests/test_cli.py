"""The real command line: exit codes, one-line config errors, lazy imports, multirun aggregation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from parity.report.schema import SWEEP_SCHEMA, validate
from tests.conftest import REPO, SEARCHPATH


@pytest.mark.parametrize(
    "override, needle",
    [
        ("model.no_such_key=1", "Key 'no_such_key' not in 'ModelConfig'"),
        ("tolerance.atol=abc", "could not be converted to Float"),
        ("mode=bogus", "expected one of [verify, golden, bench, verify+bench, import, export, compare_preprocess]"),
        ("model=no_such_model", "no model option 'no_such_model' (available: centerpoint, cifar10_vgg"),
            ("model=resnet", "did you mean 'resnet18'?"),
        ("backend.graph_optimization_level=[1]", "backend.graph_optimization_level"),
    ],
)
def test_bad_config_exits_2_with_one_line(cli, override: str, needle: str) -> None:
    proc = cli("model=mlp", override)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parity: configuration error:"), proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("default_dirs", [True, False])
def test_missing_required_value_exits_2_with_one_line(cli, tmp_path: Path, default_dirs: bool) -> None:
    # with Hydra's default run dir, which interpolates ${model.name}, and with an explicit one
    proc = cli("model=mlp", "model.name=???", cwd=tmp_path, default_dirs=default_dirs)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parity: configuration error:"), proc.stderr
    assert "model.name" in lines[0] and proc.stdout == ""


@pytest.mark.parametrize("override, needle", [
    ("tolerance.atol=-1", "tolerance.atol must be >= 0"),
    ("+tolerance.per_output.logits.check=maxx", "tolerance.per_output.logits"),
    ("inputs.batch_sizes=[9]", "exceeds the 4 samples"),
])
def test_job_level_config_errors_are_one_line_too(cli, override: str, needle: str) -> None:
    proc = cli("model=mlp", override)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parity: configuration error:") and needle in lines[0], proc.stderr


def test_planted_fault_exits_1(cli) -> None:
    proc = cli("model=mlp", "exporter=torchscript", "exporter._target_=tests.plugins.PerturbingExporter")
    assert proc.returncode == 1, proc.stderr
    assert "FAIL  model=mlp exporter=torchscript backend=ort_cpu" in proc.stdout


def test_missing_golden_exits_2_naming_the_create_command(cli, tmp_path: Path) -> None:
    proc = cli("model=mlp", f"golden.root={tmp_path / 'none'}")
    assert proc.returncode == 2
    assert "create it with: python -m parity mode=golden model=mlp" in proc.stdout + proc.stderr


@pytest.mark.parametrize("flag", ["--cfg", "--help"])
def test_help_and_cfg_job_import_no_framework(flag: str) -> None:
    argv = ["parity", "--cfg", "job"] if flag == "--cfg" else ["parity", "--help"]
    code = (
        "import sys\n"
        f"sys.argv = {argv!r}\n"
        "from parity.__main__ import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'onnxscript') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout and "model:" in proc.stdout


def test_help_lists_groups_options_and_the_composed_config(cli) -> None:
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    groups = {line.split(": ")[0]: line.split(": ")[1].split(", ") for line in lines if line.startswith(
        ("model: ", "backend: ", "exporter: ", "tolerance: ", "inputs: ", "transform: "))}
    assert {"centerpoint", "dcnv2", "mlp", "resnet18", "cifar10_vgg"} <= set(groups["model"])
    assert {"ort_cpu", "torch_cpu", "tf_cpu", "openvino_cpu"} <= set(groups["backend"])
    assert groups["exporter"] == ["dynamo", "jit_trace", "keras_export", "prebuilt", "tf2onnx", "torchscript"]
    assert {"default", "int8", "fp16"} <= set(groups["tolerance"])
    assert groups["transform"] == ["fp16", "int8_dynamic", "int8_static", "none"]
    assert "base_" not in proc.stdout.split("== Config (")[0]  # schemas are not options
    assert "  name: resnet18" in lines and "Exit codes:" in proc.stdout


def test_help_follows_overrides_and_user_search_path(cli) -> None:
    proc = cli(SEARCHPATH, "model=tiny_conv", "--help")
    assert proc.returncode == 0, proc.stderr
    model_line = next(line for line in proc.stdout.splitlines() if line.startswith("model: "))
    assert "tiny_conv" in model_line.split(": ")[1].split(", ") and "  name: tiny_conv" in proc.stdout
    bad = cli("model=nope", "--help")
    assert bad.returncode == 2 and "no model option 'nope' (available: " in bad.stderr


def test_multirun_aggregates_and_one_failing_job_does_not_stop_the_others(cli, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = cli("-m", "model=mlp", "exporter=torchscript,jit_trace", "exporter.opset=17,25",
               f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    document = json.loads((sweep / "sweep_report.json").read_text())
    validate(document, SWEEP_SCHEMA)
    assert len(document["jobs"]) == 4
    by_exporter = {}
    for row in document["rows"]:
        if row["check"] == "backend":
            by_exporter.setdefault(row["exporter"], []).append(row["verdict"])
    # opset 17 passes for every exporter; opset 25 (beyond the legacy exporter) is an export ERROR for both
    assert by_exporter == {e: ["PASS", "ERROR"] for e in ("torchscript", "jit_trace")}, by_exporter
    assert document["verdict"] == "ERROR" and document["exit_code"] == 2
    assert "== sweep: 4 job(s)" in proc.stdout and proc.stdout.strip().splitlines()[-1].startswith("ERROR  sweep of 4")
    for job in document["jobs"]:
        assert Path(job["report"]).is_file() and job["overrides"]


def test_multirun_exporter_backend_matrices(cli, tmp_path: Path) -> None:
    proc = cli("-m", "model=mlp", "exporter=dynamo,torchscript", "backend=ort_cpu,torch_cpu",
               "inputs.batch_sizes=[2,4]", f"hydra.sweep.dir={tmp_path / 's'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = json.loads((tmp_path / "s" / "sweep_report.json").read_text())
    validate(document, SWEEP_SCHEMA)
    assert [j["verdict"] for j in document["jobs"]] == ["PASS"] * 4
    # seed 001's pivot: rows = output x batch, columns = exporter x backend
    pivot = document["pivot"]
    assert pivot["columns"] == ["dynamo×ort_cpu", "torch_cpu", "torchscript×ort_cpu"]
    assert [(r["output"], r["batch_size"]) for r in pivot["rows"]] == [("logits", 2), ("logits", 4)]
    assert all(c["verdict"] == "PASS" for r in pivot["rows"] for c in r["cells"].values())
    # seed 002's pairwise matrix: every pair of backends and the golden, per batch size
    matrices = {(m["batch_size"], m["output"]): m for m in document["pairwise"]}
    m4 = matrices[(4, "logits")]
    assert m4["labels"][0] == "golden" and set(m4["labels"]) == {"golden", *pivot["columns"]}
    assert len(m4["pairs"]) == 6
    golden_torch = next(p for p in m4["pairs"] if {p["a"], p["b"]} == {"golden", "torch_cpu"})
    # eager torch on the CPU is the live reference: its distance from the golden is the reference check's, to the
    # last bit (0 on the machine that made the golden; other CPUs' kernels round differently)
    reference = next(r for r in document["rows"] if r["backend"] == "torch_cpu" and r["check"] == "reference"
                     and r["batch_size"] == 4)
    assert golden_torch["max_abs"] == reference["max_abs"] < 1e-6
    assert "== exporter × backend" in proc.stdout and "== pairwise max / mean |a − b|: mlp b=4 logits" in proc.stdout


def test_multirun_jobs_differing_beyond_exporter_and_backend_get_their_own_columns(cli, tmp_path: Path) -> None:
    """numerics=default,strict on one exporter and backend: two columns, not one overwritten by the other."""
    proc = cli("-m", "model=mlp", "exporter=torchscript", "numerics=default,strict", "backend.intra_op_num_threads=1",
               f"hydra.sweep.dir={tmp_path / 's'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = json.loads((tmp_path / "s" / "sweep_report.json").read_text())
    validate(document, SWEEP_SCHEMA)
    columns = ["torchscript×ort_cpu [numerics=default]", "torchscript×ort_cpu [numerics=strict]"]
    assert document["pivot"]["columns"] == columns
    assert set(document["pivot"]["rows"][0]["cells"]) == set(columns)
    assert document["pairwise"][0]["labels"] == ["golden", *columns]
    assert {r["variant"] for r in document["rows"]} == {"numerics=default", "numerics=strict"}


def test_multirun_without_report_files_and_with_a_config_error_in_one_job(cli, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = cli("-m", "model=mlp", "backend=torch_cpu", "tolerance.atol=0.001,-1", "report.formats=[table]",
               f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert not list(sweep.glob("*/report.json"))
    sweep_table = proc.stdout.split("== sweep:", 1)[1].splitlines()
    verdicts = [line.split()[-2] for line in sweep_table if line.startswith("| ")]
    assert "PASS" in verdicts and "ERROR" in verdicts
    assert proc.stdout.strip().splitlines()[-1].startswith("ERROR  sweep of 2")
    assert "tolerance.atol must be >= 0" in proc.stdout + proc.stderr
