"""Whole jobs on real torch + onnxruntime: PASS, planted faults, golden problems, batch sizes, reports."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from parity.report.schema import REPORT_SCHEMA, load_schema, validate
from tests.conftest import SEARCHPATH, tree_bytes


def _rows(report: dict) -> list[tuple[str, int, str]]:
    return [(c["check"], c["batch_size"], c["verdict"]) for c in report["checks"]]


@pytest.mark.slow
def test_default_job_passes_on_resnet18(run_parity) -> None:
    report, code = run_parity([])
    assert code == 0 and report["verdict"] == "PASS", report
    assert report["model"]["name"] == "resnet18" and report["exporter"] == "dynamo"
    assert report["backend"]["runtime"]["providers_active"] == ["CPUExecutionProvider"]
    assert _rows(report) == [("reference", 4, "PASS"), ("backend", 4, "PASS")]
    logits = report["checks"][1]["outputs"][0]
    assert logits["classification"]["top1_agreement"] == 1.0 and logits["metrics"]["max_abs"] < 1e-4
    export = report["exports"][0]
    assert export["ok"] and len(export["sha256"]) == 64 and export["size_bytes"] > 40e6
    validate(report, REPORT_SCHEMA)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript", "jit_trace"])
def test_every_exporter_passes_on_mlp(run_parity, exporter: str) -> None:
    report, code = run_parity(["model=mlp", f"exporter={exporter}"])
    assert code == 0, report
    assert report["exports"][0]["exporter"] == exporter and report["exports"][0]["ok"]


def test_dynamo_falling_back_to_another_opset_is_an_error_unless_allowed(run_parity) -> None:
    report, code = run_parity(["model=mlp", "exporter=dynamo", "exporter.opset=13"])  # dynamo writes 18 instead
    export = report["exports"][0]
    assert code == 2 and not export["ok"] and export["opset"] == 18
    assert export["error"] == ("opset 13 was requested but the dynamo exporter wrote opset 18; "
                               "exporter.allow_opset_fallback=true accepts that")
    report, code = run_parity(["model=mlp", "exporter=dynamo", "exporter.opset=13",
                               "exporter.allow_opset_fallback=true"])
    export = report["exports"][0]
    assert code == 0 and export["ok"] and export["opset"] == 18
    assert export["warnings"][0] == "opset 13 was requested but the dynamo exporter wrote opset 18"


def test_torch_backend_needs_no_export(run_parity) -> None:
    report, code = run_parity(["model=mlp", "backend=torch_cpu"])
    assert code == 0 and report["exports"] == [] and report["exporter"] is None
    # eager torch on the CPU is the reference itself: the same numbers against the golden, to the last bit (the
    # golden may come from another CPU, whose kernels round differently: exactly 0 only on the golden's machine)
    reference, backend = (c["outputs"][0]["metrics"] for c in report["checks"])
    assert backend == reference and backend["max_abs"] < 1e-6


def test_planted_onnx_weight_fault_fails(run_parity) -> None:
    report, code = run_parity(["model=mlp", "exporter=torchscript",
                               "exporter._target_=tests.plugins.PerturbingExporter"])
    assert code == 1 and report["verdict"] == "FAIL"
    assert _rows(report) == [("reference", 4, "PASS"), ("backend", 4, "FAIL")]
    assert "outside atol" in report["checks"][1]["outputs"][0]["message"]


def test_nan_in_candidate_fails(run_parity) -> None:
    report, code = run_parity(["model=mlp", "exporter=torchscript", "backend._target_=tests.plugins.NaNBackend",
                               "tolerance.atol=1000", "tolerance.check=max"])
    assert code == 1
    out = report["checks"][1]["outputs"][0]
    assert out["verdict"] == "FAIL" and out["metrics"]["nonfinite"] == 1 and "NaN/Inf" in out["message"]


def test_export_error_is_an_error_verdict_not_a_crash(run_parity) -> None:
    report, code = run_parity(["model=mlp", "exporter=torchscript", "exporter.opset=25"])  # beyond the legacy's
    assert code == 2 and report["verdict"] == "ERROR"
    assert report["checks"][0]["verdict"] == "PASS"  # the reference still ran and reported
    assert report["checks"][1]["message"].startswith("export failed:") and "25" in report["checks"][1]["message"]
    assert report["exports"][0]["ok"] is False


def test_unavailable_backend_is_a_skip_with_reason(run_parity) -> None:
    import onnxruntime as ort

    absent = next(p for p in ort.get_all_providers() if p not in ort.get_available_providers())
    report, code = run_parity(["model=mlp", f"backend.providers=[{{name: {absent}}}]"])
    assert code == 0 and report["verdict"] == "SKIP"  # the reference passed, but the backend under test never ran
    assert report["checks"][1]["verdict"] == "SKIP" and f"lacks {absent}" in report["checks"][1]["message"]
    assert report["backend"]["available"] is False and report["exports"] == []


def test_missing_golden_is_an_error_naming_the_create_command(run_parity, tmp_path: Path) -> None:
    report, code = run_parity(["model=mlp"], golden_root=tmp_path / "empty")
    assert code == 2 and "create it with: python -m parity mode=golden model=mlp" in report["error"]


def test_stale_golden_after_weights_change(run_parity) -> None:
    report, code = run_parity(["model=mlp", "model.seed=7"])
    assert code == 2 and report["error"].startswith("golden is stale: weights changed")
    assert "golden.overwrite=true" in report["error"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "pickle"])
def test_corrupt_golden_is_an_error_and_left_untouched(run_parity, golden_copy: Path, damage: str) -> None:
    from tests.test_golden import _pickled_npz

    target = golden_copy / "mlp" / "default" / "outputs.npz"
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[100] ^= 0x55
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:64])
    else:
        target.write_bytes(_pickled_npz())
        manifest_path = golden_copy / "mlp" / "default" / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        from parity.golden import sha256_file

        manifest["files"]["outputs.npz"]["sha256"] = sha256_file(target)
        manifest_path.write_text(json.dumps(manifest))
    before = tree_bytes(golden_copy)
    report, code = run_parity(["model=mlp"], golden_root=golden_copy)
    assert code == 2 and report["verdict"] == "ERROR"
    assert ("pickled" if damage == "pickle" else "SHA-256") in report["error"]
    assert tree_bytes(golden_copy) == before


def test_golden_mode_writes_then_refuses_to_overwrite(run_parity, tmp_path: Path) -> None:
    root = tmp_path / "g"
    report, code = run_parity(["mode=golden", "model=mlp"], golden_root=root)
    assert code == 0 and report["golden"]["written"] and report["mode"] == "golden"
    manifest = json.loads((root / "mlp" / "default" / "manifest.json").read_text())
    assert manifest["num_samples"] == 4 and len(manifest["weights_sha256"]) == 64
    assert manifest["environment"]["torch"] and manifest["config"]["model"]["name"] == "mlp"
    before = tree_bytes(root)
    report, code = run_parity(["mode=golden", "model=mlp", "model.seed=5"], golden_root=root)
    assert code == 2 and "refusing to overwrite" in report["error"] and tree_bytes(root) == before
    report, code = run_parity(["mode=golden", "model=mlp", "model.seed=5", "golden.overwrite=true"], golden_root=root)
    assert code == 0 and tree_bytes(root) != before
    # the committed golden and a freshly made one agree: same weights hash, same arrays
    fresh, _ = run_parity(["mode=golden", "model=mlp"], golden_root=tmp_path / "h")
    committed = json.loads((Path(__file__).parent.parent / "golden/mlp/default/manifest.json").read_text())
    assert fresh["model"]["weights_sha256"] == committed["weights_sha256"]


def test_user_model_golden_and_verify_with_two_outputs(run_parity, tmp_path: Path) -> None:
    root = tmp_path / "g"
    _, code = run_parity([SEARCHPATH, "mode=golden", "model=tiny_conv"], golden_root=root)
    assert code == 0
    report, code = run_parity([SEARCHPATH, "model=tiny_conv", "exporter=jit_trace"], golden_root=root)
    assert code == 0, report
    names = [o["name"] for o in report["checks"][1]["outputs"]]
    assert names == ["features", "scores"]
    assert report["checks"][1]["outputs"][0]["classification"] is None
    assert report["checks"][1]["outputs"][1]["classification"] is not None


def test_batch_sizes_each_get_rows(run_parity) -> None:
    report, code = run_parity(["model=mlp", "inputs.batch_sizes=[1,3,4]"])
    assert code == 0
    assert _rows(report) == [(c, b, "PASS") for b in (1, 3, 4) for c in ("reference", "backend")]
    assert len(report["exports"]) == 1  # one dynamic-batch export serves every size
    assert [c["outputs"][0]["reference_shape"] for c in report["checks"][1::2]] == [[1, 8], [3, 8], [4, 8]]


def test_static_exporter_reexports_per_batch_size(run_parity) -> None:
    report, code = run_parity(["model=mlp", "exporter=torchscript", "exporter.dynamic_batch=false",
                               "inputs.batch_sizes=[1,2]"])
    assert code == 0 and [e["batch_size"] for e in report["exports"]] == [1, 2]


def test_batch_size_larger_than_golden_is_a_config_error(run_parity) -> None:
    report, code = run_parity(["model=mlp", "inputs.batch_sizes=[8]"])
    assert code == 2 and "exceeds" in report["error"]


def test_report_schema_rejects_a_broken_report(run_parity) -> None:
    report, _ = run_parity(["model=mlp", "backend=torch_cpu"])
    validate(report, REPORT_SCHEMA)
    broken = json.loads(json.dumps(report))
    broken["checks"][0]["verdict"] = "MAYBE"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, REPORT_SCHEMA)
    del broken["checks"]
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, REPORT_SCHEMA)
    assert load_schema(REPORT_SCHEMA)["properties"]["schema"]["const"] == report["schema"] == "parity.report/v2"


def test_a_report_breaking_its_schema_is_an_error_and_never_written(run_parity, tmp_path: Path) -> None:
    """An exporter plugin recording a version as a number: the job's report fails the schema, so the job is an
    ERROR naming it, the document is kept as evidence, and no machine-read report.json is written."""
    report, code = run_parity(["model=mlp", "exporter=torchscript",
                               "exporter._target_=tests.plugins.NumericVersionExporter"])
    evidence = tmp_path / "run" / "report.json.invalid"
    assert code == 2 and report["verdict"] == "ERROR", report
    assert report["error"].startswith("internal error: the report failed its schema "
                                   "(2.13 is not of type 'string' at $.exports[0].versions.torch)")
    assert report["error"].endswith(f"kept at {evidence}")
    assert json.loads(evidence.read_text())["exports"][0]["versions"]["torch"] == 2.13
    assert not (tmp_path / "run" / "report.json").exists()


def test_the_terminal_says_what_really_ran(run_parity, capsys) -> None:
    import onnxruntime as ort

    report, code = run_parity(["model=mlp", "inputs.batch_sizes=[2]"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and report["backend"]["runtime"]["providers_active"] == ["CPUExecutionProvider"]
    # CPU even under onnxruntime-gpu, whose get_device() names its build (GPU), not where the session ran
    assert f"ran on: onnxruntime {ort.__version__}, providers CPUExecutionProvider, device CPU" in lines
    assert report["backend"]["runtime"]["build_device"] == ort.get_device()


def test_report_json_on_disk_matches(run_parity, tmp_path: Path) -> None:
    report, _ = run_parity(["model=mlp"])
    on_disk = json.loads((tmp_path / "run" / "report.json").read_text())
    assert on_disk == report
    assert on_disk["config"]["model"]["name"] == "mlp" and on_disk["environment"]["numpy"] == np.__version__


def test_regenerate_command_keeps_the_job_overrides(run_parity) -> None:
    report, code = run_parity(["model=mlp", "model.seed=7", "exporter=jit_trace"])
    assert code == 2
    assert report["error"].endswith("regenerate with: python -m parity mode=golden model=mlp model.seed=7 "
                                    "exporter=jit_trace golden.overwrite=true")


def test_missing_golden_command_keeps_the_user_search_path(run_parity, tmp_path: Path) -> None:
    report, _ = run_parity([SEARCHPATH, "model=tiny_conv"], golden_root=tmp_path / "none")
    assert f"create it with: python -m parity mode=golden '{SEARCHPATH}' model=tiny_conv" in report["error"]


def test_golden_with_nan_is_refused(run_parity, tmp_path: Path) -> None:
    report, code = run_parity([SEARCHPATH, "mode=golden", "model=nan_model"], golden_root=tmp_path / "g")
    assert code == 2 and "NaN/Inf" in report["error"] and not (tmp_path / "g" / "nan_model").exists()


def test_unbatched_output_is_not_sliced(run_parity, tmp_path: Path) -> None:
    root = tmp_path / "g"
    assert run_parity([SEARCHPATH, "mode=golden", "model=with_scale"], golden_root=root)[1] == 0
    for exporter in ("dynamo", "torchscript"):
        report, code = run_parity([SEARCHPATH, "model=with_scale", f"exporter={exporter}", "inputs.batch_sizes=[1,3]"],
                                  golden_root=root)
        assert code == 0, (exporter, report)
        temps = [o for c in report["checks"] for o in c["outputs"] if o["name"] == "temperature"]
        assert [o["reference_shape"] for o in temps] == [[]] * 4


def test_single_sample_golden_still_exports_a_dynamic_batch(run_parity, tmp_path: Path) -> None:
    root = tmp_path / "g"
    assert run_parity(["mode=golden", "model=mlp", "inputs.num_samples=1"], golden_root=root)[1] == 0
    report, code = run_parity(["model=mlp", "inputs.num_samples=1", "exporter=dynamo"], golden_root=root)
    assert code == 0, report


def test_batch_size_beyond_the_golden_samples(run_parity) -> None:
    report, code = run_parity(["model=mlp", "inputs.num_samples=8", "inputs.batch_sizes=[8]"])
    assert code == 2 and "exceed the golden's 4 samples" in report["error"]


def test_crashing_availability_check_is_a_skip_with_the_reason(run_parity) -> None:
    report, code = run_parity(["model=mlp", "backend._target_=tests.plugins.BrokenAvailabilityBackend"])
    assert code == 0 and report["checks"][1]["verdict"] == "SKIP"
    assert "availability check failed: ImportError: libonnxruntime_providers_shared" in report["checks"][1]["message"]


def test_golden_mode_report_names_no_exporter(run_parity, tmp_path: Path) -> None:
    report, _ = run_parity(["mode=golden", "model=mlp"], golden_root=tmp_path / "g")
    assert report["exporter"] is None and report["backend"]["name"] == "torch_cpu (reference)"
