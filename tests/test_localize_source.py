"""localize=source and the fault classes: faults planted into real exports, transforms and runtimes lead to the
module and ONNX node they were planted in, with the right class; a clean model has no culprit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SEARCHPATH
from tests.extras import needs_tf
from tests.plugins import scale_weight

# the weight a fault is planted in, as each exporter names its node (or, for dynamo, the weight itself)
EARLY = {"torchscript": "layer1.0/conv1/Conv", "jit_trace": "layer1/0/conv1/Conv", "dynamo": "layer1.0.conv1.weight"}
LATE = {"torchscript": "layer4.1/conv2/Conv", "jit_trace": "layer4/1/conv2/Conv", "dynamo": "layer4.1.conv2.weight"}


def _modules(culprit: dict) -> list[str]:
    """The culprit module and the modules fused into its nodes (dynamo keeps a fused Conv under its BatchNorm)."""
    return [culprit["module"], *culprit.get("fused", [])]


def test_a_clean_model_has_no_culprit_and_writes_its_overlay(run_parity) -> None:
    report, code = run_parity(["model=resnet18", "exporter=torchscript", "localize=source"])
    loc = report["localization"]
    assert code == 0 and loc["error"] is None and loc["kind"] == "conversion", loc
    assert loc["culprit"] is None and loc.get("first_exceeding") is None and report["fault"] is None
    assert loc["tensors_compared"] == loc["tensors_total"] > 40 and loc["modules_total"] == 75
    assert all(m["within_tolerance"] and m["max_abs"] < 1e-4 for m in loc["modules"])
    assert set(loc["unmatched"]) >= {"bn1", "layer1.0.bn1"}  # folded into their Conv by the exporter
    data = json.loads(Path(loc["overlay"]).read_text())
    # keyed by the ONNX node writing each matched tensor: the ids Model Explorer's ONNX adapter gives its nodes
    assert set(data["results"]) == {m["node"] for m in loc["modules"]} and data["thresholds"]


@pytest.mark.parametrize("exporter", ["torchscript", "jit_trace", "dynamo"])
@pytest.mark.parametrize("where,factor,module", [(EARLY, 1.01, "layer1.0.conv1"), (LATE, 1.1, "layer4.1.conv2")])
def test_a_transform_that_changes_a_weight_is_a_conversion_fault_at_its_module(
        run_parity, exporter: str, where: dict, factor: float, module: str) -> None:
    report, code = run_parity(["model=resnet18", f"exporter={exporter}", "localize=source",
                               "transform._target_=tests.plugins.ScaleWeightTransform",
                               f"+transform.target={where[exporter]}", f"+transform.factor={factor}"])
    loc, fault = report["localization"], report["fault"]
    assert code == 1 and loc["error"] is None, loc
    assert fault["fault_class"] == "conversion" and not fault["stages"]["artifact_vs_source"]["within_tolerance"]
    culprit = loc["culprit"]
    assert module in _modules(culprit) and culprit["op_type"] == "Conv", culprit
    assert where[exporter] in culprit["node"] or exporter == "dynamo"
    assert culprit["local_max_abs"] > 1e-3 and culprit["input_max_abs"] < 1e-4  # its own error, not inherited
    assert loc["first_exceeding"] in _modules(culprit)
    before = [m for m in loc["modules"] if m["tensor"] != culprit["tensor"]][:3]
    assert all(m["within_tolerance"] for m in before) or exporter == "dynamo" and module == "layer1.0.conv1"


def test_a_dynamo_culprit_names_its_node_and_the_weight_it_reads(run_parity) -> None:
    report, code = run_parity(["model=resnet18", "exporter=dynamo", "localize=source",
                               "transform._target_=tests.plugins.ScaleWeightTransform",
                               "+transform.target=layer4.1.conv2.weight", "+transform.factor=1.1"])
    import onnx

    culprit = report["localization"]["culprit"]
    path = Path(report["exports"][0]["transform"]["path"])
    node = next(n for n in onnx.load(str(path), load_external_data=False).graph.node if n.name == culprit["node"])
    assert code == 1 and node.input[1].endswith("layer4.1.conv2.weight")
    assert culprit["module"] == "layer4.1.bn2" and culprit["fused"] == ["layer4.1.conv2"]


def test_an_error_in_a_blocks_own_op_is_local_to_the_block_and_inherited_below_it(run_parity) -> None:
    """The residual Add of layer2.0 scaled: its ReLU (the first module exceeding its tolerance) only carries the
    error; the block itself computes something else on its own inputs."""
    report, code = run_parity(["model=resnet18", "exporter=torchscript", "localize=source",
                               "transform._target_=tests.plugins.ScaleTensorTransform",
                               "+transform.node_contains=layer2.0/Add", "+transform.factor=1.1"])
    loc = report["localization"]
    assert code == 1 and report["fault"]["fault_class"] == "conversion"
    first = next(m for m in loc["modules"] if not m["within_tolerance"])
    assert first["module"] == "layer2.0.relu" and first["call"] == 1 and first["origin"] == "inherited"
    assert loc["culprit"]["module"] == "layer2.0" and "Add" in loc["culprit"]["node"]


def test_a_prebuilt_file_with_a_scaled_initializer_is_found_through_localize_auto(run_parity, tmp_path: Path) -> None:
    report, code = run_parity(["model=resnet18", "exporter=torchscript"])
    assert code == 0
    exported = Path(report["exports"][0]["path"])
    planted = tmp_path / "planted.onnx"
    node = scale_weight(exported, planted, "layer3.0/conv2/Conv", 1.1)
    report, code = run_parity(["model=resnet18", "exporter=prebuilt", f"exporter.path={planted}", "localize=auto"])
    loc = report["localization"]
    assert code == 1 and report["fault"]["fault_class"] == "conversion" and loc["kind"] == "conversion"
    assert loc["culprit"]["module"] == "layer3.0.conv2" and loc["culprit"]["node"] == node


def test_a_runtime_that_perturbs_one_intermediate_is_a_runtime_fault_at_its_node(run_parity) -> None:
    report, code = run_parity(["model=resnet18", "exporter=torchscript", "localize=auto",
                               "backend._target_=tests.plugins.ScaleTensorOrtBackend",
                               "+backend.node_contains=layer3.1/conv1/Conv", "+backend.factor=1.05"])
    loc, fault = report["localization"], report["fault"]
    assert code == 1 and fault["fault_class"] == "runtime", fault
    assert fault["stages"]["artifact_vs_source"]["within_tolerance"]
    assert loc["kind"] == "runtime" and loc["culprit"]["node"] == report["backend"]["runtime"]["perturbed_node"]
    assert loc["culprit"]["module"] == "layer3.1.conv1" and loc["first_divergent"]["op_type"] == "Conv"
    data = json.loads(Path(loc["overlay"]).read_text())
    assert data["results"][loc["culprit"]["node"]]["bgColor"] == "#b71c1c"  # the culprit's node stands out
    assert data["results"][loc["culprit"]["node"]]["value"] == loc["first_divergent"]["max_abs"]


def test_localize_source_finds_nothing_for_a_runtime_fault(run_parity) -> None:
    """A FAIL that conversion localisation cannot explain says so, with the fault class that does."""
    report, code = run_parity(["model=resnet18", "exporter=torchscript", "localize=source",
                               "backend._target_=tests.plugins.ScaleTensorOrtBackend",
                               "+backend.node_contains=layer3.1/conv1/Conv", "+backend.factor=1.05"])
    loc = report["localization"]
    assert code == 1 and report["fault"]["fault_class"] == "runtime"
    assert loc["culprit"] is None and "within tolerance" in loc["message"]


def test_a_drifted_model_is_framework_drift(run_parity, tmp_path: Path) -> None:
    root = tmp_path / "g"
    assert run_parity([SEARCHPATH, "mode=golden", "model=with_scale"], golden_root=root)[1] == 0
    report, code = run_parity([SEARCHPATH, "model=with_scale", "localize=auto",
                               "model.builder._target_=tests.plugins.with_scale_drifted"], golden_root=root)
    assert code == 1 and report["fault"]["fault_class"] == "framework_drift", report["fault"]
    assert report["localization"] is None  # nothing in the conversion to localise


def test_probes_auto_picks_the_top_level_children_and_names_a_fault_after_the_last(run_parity, tmp_path: Path) -> None:
    root = tmp_path / "g"
    assert run_parity([SEARCHPATH, "mode=golden", "model=with_scale"], golden_root=root)[1] == 0
    report, code = run_parity([SEARCHPATH, "model=with_scale", "exporter=torchscript", "checks.probes=auto",
                               "transform._target_=tests.plugins.ScaleWeightTransform",
                               "+transform.target=temperature", "+transform.factor=1.1"], golden_root=root)
    probes = report["probes"]
    assert code == 1 and probes["error"] is None, probes
    assert [p["name"] for p in probes["probes"]] == ["fc"] and probes["first_exceeding"] is None
    assert probes["after_last_probe"] == "fc"


def test_probes_auto_on_centerpoint_names_the_first_stage_past_a_planted_fault(run_parity) -> None:
    report, code = run_parity(["model=centerpoint", "model.probes=[]", "exporter=torchscript", "checks.probes=auto",
                               "transform._target_=tests.plugins.ScaleWeightTransform",
                               "+transform.target=neck", "+transform.factor=1.1"])
    probes = report["probes"]
    assert code == 1 and probes["error"] is None, probes
    assert [p["name"] for p in probes["probes"]] == ["backbone", "neck"]  # the head returns a dict
    assert probes["first_exceeding"] == "neck" and probes["probes"][0]["within_tolerance"]


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_bad_probes_value_is_a_config_error(run_parity, value: str) -> None:
    report, code = run_parity(["model=mlp", f"checks.probes={value}"])
    assert code == 2 and "checks.probes must be true, false or auto" in report["error"]


def test_localize_source_needs_a_source_model(run_parity, tmp_path: Path) -> None:
    report, code = run_parity(["model=mlp", "backend=torch_cpu", "localize=source"])
    assert code == 2 and "exported ONNX artifact" in report["localization"]["error"]


def test_localize_source_in_chunks_gives_the_same_culprit(run_parity) -> None:
    args = ["model=resnet18", "exporter=torchscript", "localize=source",
            "transform._target_=tests.plugins.ScaleWeightTransform", "+transform.target=layer2.1/conv1/Conv"]
    whole, _ = run_parity(args)
    chunked, code = run_parity([*args, "checks.localize_chunk=8"])
    assert code == 1 and chunked["localization"]["chunks_run"] > 3
    assert chunked["localization"]["culprit"] == whole["localization"]["culprit"]
    assert chunked["localization"]["culprit"]["module"] == "layer2.1.conv1"


@needs_tf
def test_keras_through_tf2onnx_clean_and_with_a_fused_conv_scaled(run_parity) -> None:
    """tf2onnx fuses Conv, bias and BatchNorm into one node named after no layer (Conv__N) and computes in NCHW:
    the Keras layer around it is compared across layouts and the fused node is run with it."""
    clean, code = run_parity(["model=cifar10_vgg", "localize=source"])
    assert code == 0 and clean["localization"]["culprit"] is None
    assert clean["localization"]["tensors_compared"] >= 10
    conv = next(n for n in clean["localization"]["modules"] if n["module"] == "block2_relu1")
    assert conv["within_tolerance"] and conv["max_abs"] < 1e-4
    report, code = run_parity(["model=cifar10_vgg", "localize=source",
                               "transform._target_=tests.plugins.ScaleWeightTransform",
                               "+transform.target=Conv__58", "+transform.factor=1.01"])
    culprit = report["localization"]["culprit"]
    assert code == 1 and report["fault"]["fault_class"] == "conversion"
    assert culprit["module"] == "block2_relu1" and "block2_conv1" in culprit["fused"] and "Conv__58" in culprit["nodes"]
