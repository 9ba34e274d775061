"""Post-export transforms on real ONNX Runtime quantization and fp16 conversion."""

from __future__ import annotations

import onnx
import pytest

from tests.conftest import compose_cfg


def _graph(report: dict) -> onnx.ModelProto:
    return onnx.load(report["exports"][0]["transform"]["path"])


def test_each_transform_selects_its_tolerance_preset_unless_one_is_given() -> None:
    assert compose_cfg(["transform=fp16"]).tolerance.name == "fp16"
    assert compose_cfg(["transform=int8_dynamic"]).tolerance.name == "int8"
    assert compose_cfg(["transform=int8_static"]).tolerance.name == "int8"
    assert compose_cfg(["transform=none"]).tolerance.name == "default"
    assert compose_cfg(["transform=int8_static", "tolerance=strict"]).tolerance.name == "strict"


def test_fp16_transform_runs_a_float16_graph_and_records_both_artifacts(run_parity) -> None:
    report, code = run_parity(["model=mlp", "transform=fp16"])
    assert code == 0, report
    export = report["exports"][0]
    transform = export["transform"]
    assert transform["ok"] and transform["name"] == "fp16" and transform["sha256"] != export["sha256"]
    assert transform["size_bytes"] < export["size_bytes"] and transform["path"] != export["path"]
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in _graph(report).graph.initializer)
    out = report["checks"][1]["outputs"][0]
    assert out["check"] == "l2_rel" and 0 < out["metrics"]["max_abs"] and out["metrics"]["l2_rel"] < 1e-2
    assert report["transform"] == "fp16" and "transform=fp16" in _last_line(report)


@pytest.mark.parametrize("transform", ["int8_dynamic", "int8_static"])
def test_int8_transforms_quantize_the_graph(run_parity, transform: str) -> None:
    report, code = run_parity(["model=mlp", f"transform={transform}"])
    assert code == 0 and report["verdict"] == "PASS", report  # within the int8 preset: l2_rel 0.004 / 0.006
    record = report["exports"][0]["transform"]
    assert record["ok"] and record["versions"]["onnxruntime"]
    ops = {n.op_type for n in _graph(report).graph.node}
    if transform == "int8_static":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops and record["options"]["format"] == "QDQ"
    else:
        assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "QGemm", "MatMulIntegerToFloat"}, ops
    out = report["checks"][1]["outputs"][0]
    assert out["metrics"]["max_abs"] > 1e-6  # the quantized model really ran: it is not the float one
    assert 1e-3 < out["metrics"]["l2_rel"] < 0.1 and out["classification"]["top1_agreement"] == 1.0
    assert out["classification"]["grade"] == "excellent" and out["classification"]["prob_diff_max_pp"] < 1


def test_the_probability_gate_alone_fails_a_run_past_it(run_parity) -> None:
    """int8_dynamic on mlp moves probabilities by 0.025 pp: within the preset's 10 pp, past 0.01 pp. Relative L2
    and top-1 agreement stay within theirs, so the probability gate is what decides the FAIL."""
    report, code = run_parity(["model=mlp", "transform=int8_dynamic", "tolerance.max_prob_diff_pp=0.01"])
    assert code == 1 and report["verdict"] == "FAIL"
    out = report["checks"][1]["outputs"][0]
    assert out["metrics"]["l2_rel"] < out["rtol"] and out["classification"]["top1_agreement"] == 1.0
    assert out["verdict"] == "FAIL" and out["message"] == (
        f"probability diff {out['classification']['prob_diff_max_pp']:.3g} pp > 0.01 pp")


def test_static_quantization_of_a_static_batch_export_calibrates_in_its_batch_size(run_parity) -> None:
    report, code = run_parity(["model=mlp", "transform=int8_static", "exporter=torchscript",
                               "exporter.dynamic_batch=false", "inputs.batch_sizes=[2]"])
    assert report["exports"][0]["batch_size"] == 2 and report["exports"][0]["transform"]["ok"], report
    assert code == 0 and report["verdict"] == "PASS", report  # calibrated in batches of 2: it loads and runs


def test_a_failing_transform_is_an_error_row_not_a_crash(run_parity) -> None:
    report, code = run_parity(["model=mlp", "transform=fp16", "transform._target_=tests.plugins.BrokenTransform"])
    assert code == 2 and report["checks"][0]["verdict"] == "PASS"
    assert report["checks"][1]["message"] == \
        "transform fp16 failed: RuntimeError: Unsupported op for quantization: NoSuchOp"
    assert report["exports"][0]["ok"] and report["exports"][0]["transform"]["ok"] is False


def test_a_transform_on_an_eager_backend_is_a_skip(run_parity) -> None:
    report, code = run_parity(["model=mlp", "backend=torch_cpu", "transform=int8_dynamic"])
    assert code == 0 and report["verdict"] == "SKIP" and report["transform"] == "int8_dynamic"
    assert "applies to ONNX artifacts" in report["checks"][1]["message"]


def test_the_reference_check_keeps_fp32_tolerances_under_a_transform(run_parity) -> None:
    """The int8 preset judges the quantized artifact, never the live model against its own golden."""
    report, _ = run_parity(["model=mlp", "transform=int8_dynamic"])
    reference, backend = (c["outputs"][0] for c in report["checks"])
    assert (reference["check"], reference["atol"], reference["rtol"]) == ("elementwise", 1e-4, 1e-3)
    assert (backend["check"], backend["rtol"]) == ("l2_rel", 0.1)


def test_bench_calibrates_static_quantization_on_the_input_set_like_verify(run_parity) -> None:
    report, code = run_parity(["model=mlp", "mode=verify+bench", "transform=int8_static", "bench.batch_sizes=[4]",
                               "bench.runs=3", "bench.min_seconds=0", "bench.warmup_runs=0", "bench.plot=false"])
    # one quantized artifact (one export, one calibration on the input set), verified and then timed
    (export,) = report["exports"]
    assert code == 0 and [r["artifact_sha256"] for r in report["bench"]["results"]] == [export["transform"]["sha256"]]


def test_bench_runs_the_transformed_artifact(run_parity) -> None:
    report, code = run_parity(["model=mlp", "mode=bench", "transform=int8_dynamic", "bench.batch_sizes=[2]",
                               "bench.runs=5", "bench.min_seconds=0", "bench.warmup_runs=1", "bench.plot=false"])
    assert code == 0, report
    assert report["exports"][0]["transform"]["ok"] and report["bench"]["results"][0]["runs"] >= 5


def test_bad_transform_option_is_a_config_error(run_parity) -> None:
    report, code = run_parity(["model=mlp", "transform=int8_static", "transform.calibrate_method=magic"])
    assert code == 2 and "calibrate_method 'magic' is not one of" in report["error"]


def _last_line(report: dict) -> str:
    from parity.report.formats.table import summary_line

    return summary_line(report)
