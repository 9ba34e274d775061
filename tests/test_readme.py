"""The README's seed section, run as written: every `python -m parity` command in it, and what it says they show.

The commands are read from README.md itself, so a command added there without a check here fails
`test_every_seed_command_has_its_claims_checked`; tables the README quotes are compared cell by cell with what
the run printed. Commands outside parity (Model Explorer's viewer) are run by tests/test_model_explorer.py.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from tests.conftest import REPO
from tests.extras import README_CPU, needs_openvino, needs_tf

README = (REPO / "README.md").read_text()
SEED_SECTION = README[README.index("## The seed investigations"):README.index("## Quantized and fp16 variants")]
QUANTIZED_SECTION = README[README.index("## Quantized and fp16 variants"):README.index("## Keras / TensorFlow")]

# commands of the seed section that are not parity's, and the tests that run them (in their own nox session)
RUN_ELSEWHERE = {
    "pip install model-explorer-onnx": "nox -s tests_model_explorer installs it (pinned)",
    "onnxvis": "tests/test_model_explorer.py runs it on a localisation's artifact and node data (nox -s "
               "tests_model_explorer, in CI)",
}


def commands(section: str) -> list[str]:
    """Every command of the section's ```bash blocks (comments and line continuations resolved), then every inline
    `python -m parity ...` of its prose, whitespace normalised."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                found.append(" ".join(line.split()))
    prose = re.sub(r"```.*?```", "", section, flags=re.S)
    found += [" ".join(c.split()) for c in re.findall(r"`(python -m parity [^`]+)`", prose)]
    return found


def quoted_rows(section: str, command: str) -> list[list[str]]:
    """The table rows (cells stripped) of the first non-bash code block after `command` in `section`."""
    after = section[section.index(command) + len(command):]
    after = after[after.index("```") + 3:]  # past the end of the command's own block
    block = re.search(r"```\n(.*?)```", after, flags=re.S)
    assert block is not None, f"the README quotes no output after {command!r}"
    return _rows(block.group(1))


def _rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not set(line) <= set("|-: ")]


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def _close(quoted: list[str], printed: list[str], factor: float) -> bool:
    """Same cells: words equal, numbers within `factor` of each other (zero only where the other is zero)."""
    if len(quoted) != len(printed):
        return False
    for q_cell, p_cell in zip(quoted, printed):
        q_tokens, p_tokens = q_cell.split(), p_cell.split()
        if len(q_tokens) != len(p_tokens):
            return False
        for q, p in zip(q_tokens, p_tokens):
            a, b = _number(q), _number(p)
            if a is None or b is None:
                if q != p:
                    return False
            elif not (a == b or (a * b > 0 and max(a, b) / min(a, b) <= factor)):
                return False
    return True


def assert_shown(quoted: list[list[str]], printed: list[list[str]]) -> None:
    """Every row the README quotes is one the run printed: to the digit on the README's CPU (tests/extras.py
    README_CPU), elsewhere with the same words and verdicts and every number within a factor of 2."""
    assert quoted, "nothing quoted"
    for row in quoted:
        if README_CPU:
            assert row in printed, (row, printed)
        else:
            assert any(_close(row, other, 2.0) for other in printed), (row, printed)


def _sweep(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "sweep" / "sweep_report.json").read_text())


def _job(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "run" / "report.json").read_text())


def _job_reports(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(Path(job["report"]).read_text()) for job in _sweep(tmp_path)["jobs"]]


# -- what the README says each command shows --------------------------------------------------------------------


def seed_000(proc: Any, tmp_path: Path) -> None:
    """Verdict on 100 % top-1 agreement and < 1 pp; the top-1 and Δp pp columns; the grade in the report."""
    report = _job(tmp_path)
    assert proc.returncode == 0 and report["verdict"] == "PASS"
    out = report["checks"][1]["outputs"][0]
    assert (out["check"], out["atol"], out["rtol"]) == ("max", 1e-3, 1e-2)
    assert out["min_top1_agreement"] == 1.0 and out["max_prob_diff_pp"] == 1.0
    assert out["classification"]["top1_agreement"] == 1.0 and out["classification"]["grade"] == "excellent"
    header = next(r for r in _rows(proc.stdout) if r[0] == "check")
    assert "top-1" in header and "Δp pp" in header
    assert ["backend", "4", "logits"] == next(r for r in _rows(proc.stdout) if r[0] == "backend")[:3]
    assert "max≤1e-3 or rel≤0.01, top-1≥100%, Δp≤1pp" in proc.stdout


def seed_001(proc: Any, tmp_path: Path) -> None:
    """An exporter × backend table; sweep_report.json holds it and each job's report.json path, whose export
    records carry files, SHA-256, opset and warnings; all three agree (max abs 3.8e-6 / 3.0e-6 / 3.0e-6)."""
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = _sweep(tmp_path)
    assert document["pivot"]["columns"] == ["dynamo×ort_cpu", "torchscript×ort_cpu", "jit_trace×ort_cpu"]
    (row,) = document["pivot"]["rows"]
    cells = [row["cells"][c] for c in document["pivot"]["columns"]]
    assert [c["verdict"] for c in cells] == ["PASS"] * 3
    assert_shown([["resnet18", "logits", "4", "3.81e-06 PASS", "2.98e-06 PASS", "2.98e-06 PASS"]],
                 _rows(proc.stdout))  # the README: max abs 3.8e-6 / 3.0e-6 / 3.0e-6
    for report in _job_reports(tmp_path):
        (export,) = report["exports"]
        assert export["ok"] and export["files"] and len(export["sha256"]) == 64 and export["opset"] >= 13
        assert isinstance(export["warnings"], list)


def seed_002(proc: Any, tmp_path: Path) -> None:
    """The pairwise matrix over the golden and three backends. OpenVINO runs in bf16 where the CPU has it (the
    README's run): top-1 agrees on all 16 samples, probabilities move by up to 1.65 pp, the fp32 tolerance FAILs
    it, and the quoted matrix is what this run printed. Elsewhere it runs f32 and passes."""
    reports = {r["backend"]["name"]: r for r in _job_reports(tmp_path)}
    assert [r["verdict"] for r in reports.values()][:2] == ["PASS", "PASS"]
    matrix = _sweep(tmp_path)["pairwise"][0]
    assert matrix["labels"] == ["golden", "tf_cpu", "tf2onnx×ort_cpu", "tf2onnx×openvino_cpu"]
    pairs = {(p["a"], p["b"]): p for p in matrix["pairs"]}
    assert pairs[("golden", "tf_cpu")]["max_abs"] == 0.0 and 0 < pairs[("tf_cpu", "tf2onnx×ort_cpu")]["max_abs"] < 1e-5
    openvino = reports["openvino_cpu"]
    precision = openvino["backend"]["runtime"]["inference_precision"]
    out = openvino["checks"][1]["outputs"][0]
    quoted = quoted_rows(SEED_SECTION, "backend=tf_cpu,ort_cpu,openvino_cpu")
    printed = _rows(proc.stdout)
    if precision == "bf16":
        summary = (Path(_sweep(tmp_path)["jobs"][2]["output_dir"]) / "summary.md").read_text()
        assert proc.returncode == 1 and openvino["verdict"] == "FAIL" and "inference precision bf16" in summary
        assert out["classification"]["top1_agreement"] == 1.0
        if README_CPU:
            assert f"{out['classification']['prob_diff_max_pp']:.3g}" == "1.65"
        assert_shown(quoted, printed)
    else:
        assert proc.returncode == 0 and openvino["verdict"] == "PASS", f"OpenVINO ran in {precision}"

        def without_openvino(rows: list[list[str]]) -> list[list[str]]:  # its row and its (last) column
            return [r[:-1] for r in rows if "openvino" not in r[0]]

        assert_shown(without_openvino(quoted), without_openvino(printed))
    assert "== pairwise max / mean |a − b|: cifar10_vgg b=16 probs" in proc.stdout


def seed_003(proc: Any, tmp_path: Path) -> None:
    """Probes backbone.blocks.0/1/2 in forward order, none exceeding, the main outputs unchanged; localize=all
    compares every intermediate tensor and finds none divergent; five repeats bitwise identical."""
    report = _job(tmp_path)
    assert proc.returncode == 0 and report["verdict"] == "PASS"
    probes = report["probes"]
    assert [p["name"] for p in probes["probes"]] == ["backbone.blocks.0", "backbone.blocks.1", "backbone.blocks.2"]
    assert probes["first_exceeding"] is None and probes["side_effect_ok"] is True
    assert all(p["within_tolerance"] and p["max_abs"] < 1e-4 and p["amplification"] is not None
               for p in probes["probes"][1:])
    loc = report["localization"]
    assert loc["first_divergent"] is None and loc["tensors_compared"] == loc["tensors_total"] > 50
    assert Path(loc["overlay"]).is_file()
    assert [(d["repeats"], d["bitwise_identical"]) for d in report["determinism"]] == [(5, True)]
    assert "first probe exceeding its tolerance: none" in proc.stdout


def localize_source(proc: Any, tmp_path: Path) -> None:
    report = _job(tmp_path)
    loc = report["localization"]
    assert proc.returncode == 0 and loc["kind"] == "conversion" and loc["culprit"] is None and loc["error"] is None
    assert loc["first_exceeding"] is None and len(loc["modules"]) > 50 and Path(loc["overlay"]).is_file()
    assert "localize=source (b=4): " in proc.stdout


def localize_all(proc: Any, tmp_path: Path) -> None:
    loc = _job(tmp_path)["localization"]
    assert proc.returncode == 0 and loc["kind"] == "runtime" and loc["first_divergent"] is None
    assert loc["tensors_compared"] == loc["tensors_total"] and Path(loc["overlay"]).is_file()


def localize_auto(proc: Any, tmp_path: Path) -> None:
    """On a PASS there is no fault class, so nothing to localise, and it says so."""
    report = _job(tmp_path)
    assert proc.returncode == 0 and report["fault"] is None and report["localization"] is None
    assert "localize=auto: nothing to localise (no FAIL)" in proc.stderr


def seed_004(proc: Any, tmp_path: Path) -> None:
    """Batch 1 an ERROR on every exporter with the underlying messages, 2 and 4 PASS, jit_trace no export at all:
    the quoted table is what this run printed."""
    assert proc.returncode == 2
    assert_shown(quoted_rows(SEED_SECTION, "inputs.batch_sizes=[1,2,4]"), _rows(proc.stdout))
    dynamo, torchscript, jit_trace = _job_reports(tmp_path)
    for report in (dynamo, torchscript):
        assert [(c["check"], c["batch_size"], c["verdict"]) for c in report["checks"]] == [
            ("reference", 1, "ERROR"), ("backend", 1, "ERROR"), ("reference", 2, "PASS"), ("backend", 2, "PASS"),
            ("reference", 4, "PASS"), ("backend", 4, "PASS")]
        assert "Tensors must have same number of dimensions: got 1 and 2" in report["checks"][0]["message"]
        assert "Concat" in report["checks"][1]["message"] and "rank" in report["checks"][1]["message"]
    assert jit_trace["exports"][0]["ok"] is False
    assert "embedding_dim of SparseFeat and VarlenSparseFeat must be same" in jit_trace["checks"][1]["message"]


def seed_004_samples16(proc: Any, tmp_path: Path) -> None:
    report = _job(tmp_path)
    assert proc.returncode == 2 and report["golden"]["input_set"] == "samples16"
    assert [(c["batch_size"], c["verdict"]) for c in report["checks"]] == [
        (1, "ERROR"), (1, "ERROR"), (2, "PASS"), (2, "PASS"), (8, "PASS"), (8, "PASS")]


CLAIMS: dict[str, Callable[[Any, Path], None]] = {
    "python -m parity tolerance=classification": seed_000,
    "python -m parity -m exporter=dynamo,torchscript,jit_trace": seed_001,
    "python -m parity -m model=cifar10_vgg backend=tf_cpu,ort_cpu,openvino_cpu": seed_002,
    "python -m parity model=centerpoint checks.probes=true localize=all checks.repeats=5": seed_003,
    "python -m parity model=resnet18 exporter=dynamo localize=source": localize_source,
    "python -m parity model=resnet18 localize=all": localize_all,
    "python -m parity model=resnet18 localize=auto": localize_auto,
    "python -m parity -m model=dcnv2 exporter=dynamo,torchscript,jit_trace inputs.batch_sizes=[1,2,4]": seed_004,
    "python -m parity model=dcnv2 inputs=samples16 inputs.batch_sizes=[1,2,8]": seed_004_samples16,
}
NEEDS = {seed_002: (needs_tf, needs_openvino)}


def test_every_seed_command_has_its_claims_checked() -> None:
    found = commands(SEED_SECTION)
    parity_commands = [c for c in found if c.startswith("python -m parity")]
    others = [c for c in found if not c.startswith("python -m parity")]
    assert sorted(set(parity_commands)) == sorted(CLAIMS), "README seed commands and CLAIMS differ"
    assert all(any(c.startswith(name) for name in RUN_ELSEWHERE) for c in others), others
    assert len(parity_commands) == 9 and len(others) == 2
    # nothing hides from the parser: every block is bash or quoted output, every mention of parity's CLI is one
    assert set(re.findall(r"^```(\w*)$", SEED_SECTION, flags=re.M)) == {"bash", ""}
    assert SEED_SECTION.count("-m parity") == len(parity_commands)


@pytest.mark.parametrize("command", [pytest.param(c, marks=NEEDS.get(CLAIMS[c], ()), id=CLAIMS[c].__name__)
                                     for c in CLAIMS])
def test_readme_seed_command(cli, run_parity, capsys, caplog, tmp_path: Path, command: str) -> None:
    """A sweep runs through the real CLI (Hydra's multirun, the sweep's callback); a single job in process on the
    same overrides (what `python -m parity` runs, without a second interpreter's start-up), its terminal output
    and log lines captured."""
    args = shlex.split(command)[3:]
    if "-m" in args:
        proc = cli(*args)
    else:
        caplog.set_level(logging.INFO, logger="parity")
        _, code = run_parity(args)
        proc = SimpleNamespace(returncode=code, stdout=capsys.readouterr().out, stderr="\n".join(caplog.messages))
    CLAIMS[command](proc, tmp_path)


@needs_tf
def test_readme_quantized_sweep_shows_the_quoted_table_and_int8_verdicts(cli, tmp_path: Path) -> None:
    """README, Quantized and fp16 variants: resnet18's INT8 logits PASS within about 2 % relative L2 with identical
    top-1; on the README's CPU the sweep's tables are as quoted and both INT8 variants of cifar10_vgg FAIL
    (dynamic: 2 of 16 top-1 changed, 88 %, 5.8 pp, "look"; static: 3 of 16, 81 %, 4.7 pp, "good")."""
    command = "python -m parity -m model=resnet18,cifar10_vgg transform=none,fp16,int8_dynamic,int8_static"
    assert command in commands(QUANTIZED_SECTION)
    proc = cli(*shlex.split(command)[3:])
    assert proc.returncode == 1, proc.stderr[-2000:]
    quoted = quoted_rows(QUANTIZED_SECTION, command)
    assert len(quoted) == 9
    jobs = {(r["model"]["name"], r["transform"]): r for r in _job_reports(tmp_path)}
    int8 = {key: r["checks"][1]["outputs"][0] for key, r in jobs.items() if key[1].startswith("int8")}
    for transform in ("int8_dynamic", "int8_static"):
        resnet = int8[("resnet18", transform)]
        assert jobs[("resnet18", transform)]["verdict"] == "PASS"
        assert 0.01 < resnet["metrics"]["l2_rel"] < 0.025 and resnet["classification"]["top1_agreement"] == 1.0
    if not README_CPU:  # another INT8 path changes which borderline samples flip: only the float columns hold
        assert_shown([r[:4] for r in quoted if r[0] == "resnet18"], [r[:4] for r in _rows(proc.stdout)])
        return
    assert_shown(quoted, _rows(proc.stdout))
    for transform, mismatches, agreement, pp, grade in [("int8_dynamic", 2, "88%", "5.8", "look"),
                                                        ("int8_static", 3, "81%", "4.7", "good")]:
        scores = int8[("cifar10_vgg", transform)]["classification"]
        assert jobs[("cifar10_vgg", transform)]["verdict"] == "FAIL"
        assert (scores["top1_mismatches"], scores["samples"], f"{scores['top1_agreement']:.0%}") == \
            (mismatches, 16, agreement)
        assert (f"{scores['prob_diff_max_pp']:.2g}", scores["grade"]) == (pp, grade)


def test_rows_compare_by_words_and_numbers_within_a_factor_off_the_readmes_cpu() -> None:
    row = ["resnet18", "logits", "4", "3.81e-06 PASS", "— ERROR", "0.0165 / 0.00232"]
    assert _close(row, ["resnet18", "logits", "4", "3.7e-06 PASS", "— ERROR", "0.02 / 0.0015"], 2.0)
    assert not _close(row, ["resnet18", "logits", "4", "3.81e-06 FAIL", "— ERROR", "0.0165 / 0.00232"], 2.0)
    assert not _close(row, ["resnet18", "logits", "4", "9e-06 PASS", "— ERROR", "0.0165 / 0.00232"], 2.0)
    assert not _close(["0 / 0"], ["1e-09 / 0"], 2.0) and _close(["0 / 0"], ["0 / 0"], 2.0)
    assert not _close(row, row[:-1], 2.0) and not _close(["1.0 PASS"], ["1.0"], 2.0)
