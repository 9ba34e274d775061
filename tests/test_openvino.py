"""OpenVINO on real models: properties from config, the precision that really ran, numerics=strict."""

from __future__ import annotations

import pytest

from tests.extras import needs_openvino

pytestmark = needs_openvino


def test_openvino_runs_mlp_and_records_what_ran(run_parity) -> None:
    report, code = run_parity(["model=mlp", "backend=openvino_cpu", "backend.inference_precision=f32",
                               "backend.num_threads=1", "inputs.batch_sizes=[1,4]"])
    assert code == 0, report
    runtime = report["backend"]["runtime"]
    assert runtime["framework"] == "openvino" and runtime["openvino"].startswith("2026")
    assert runtime["inference_precision"] == "f32" and runtime["num_threads"] == 1
    assert runtime["requested_properties"]["INFERENCE_PRECISION_HINT"] == "f32"


@pytest.mark.slow
def test_openvino_default_and_strict_numerics_on_resnet18_record_the_precision(run_parity) -> None:
    """Strict numerics force f32; the default leaves the CPU's own choice (bf16 where it has AVX512-BF16/AMX)."""
    import openvino as ov

    device_default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    default, _ = run_parity(["backend=openvino_cpu", "exporter=torchscript"])
    strict, code = run_parity(["backend=openvino_cpu", "exporter=torchscript", "numerics=strict"])
    assert default["backend"]["runtime"]["inference_precision"] == device_default
    assert "INFERENCE_PRECISION_HINT" not in default["backend"]["runtime"]["requested_properties"]  # left to OpenVINO
    assert strict["backend"]["runtime"]["inference_precision"] == "f32"
    assert strict["numerics"]["requested"]["openvino_precision"] == "f32"
    assert code == 0 and strict["checks"][1]["outputs"][0]["metrics"]["max_abs"] < 1e-4
    if device_default != "f32":  # reduced precision really ran, and it shows
        assert default["checks"][1]["outputs"][0]["metrics"]["max_abs"] > \
            10 * strict["checks"][1]["outputs"][0]["metrics"]["max_abs"]


def test_openvino_rejects_an_unknown_precision_and_a_raw_property_shadowing_a_setting(run_parity) -> None:
    report, code = run_parity(["model=mlp", "backend=openvino_cpu", "backend.inference_precision=f64"])
    assert code == 2 and "inference_precision 'f64' is not one of" in report["error"]
    report, code = run_parity(["model=mlp", "backend=openvino_cpu", "numerics=strict",
                               "+backend.properties.INFERENCE_PRECISION_HINT=bf16"])
    assert code == 2 and "set INFERENCE_PRECISION_HINT with inference_precision" in report["error"]
