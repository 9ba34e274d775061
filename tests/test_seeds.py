"""The seed investigations as checks: CenterPoint, DCN-V2, batch sweeps, probes, localize=all, determinism."""

from __future__ import annotations

import math


def _rows(report: dict) -> list[tuple[str, int, str]]:
    return [(c["check"], c["batch_size"], c["verdict"]) for c in report["checks"]]


def test_centerpoint_verifies_every_head(run_parity) -> None:
    report, code = run_parity(["model=centerpoint", "exporter=torchscript"])
    assert code == 0, report
    outputs = [o["name"] for o in report["checks"][1]["outputs"]]
    assert outputs == ["heatmap", "reg", "height", "dim", "rot", "vel"]
    assert report["checks"][1]["outputs"][0]["reference_shape"] == [4, 10, 32, 32]


def test_dcnv2_heavy_config_builds_its_size() -> None:
    from parity.frameworks.torch import build_model
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["model=dcnv2_heavy"])
    module = build_model(cfg.model)
    params = sum(p.numel() for p in module.parameters())
    assert 35e6 < params < 50e6 and len(cfg.model.inputs) == 9


def test_dcnv2_heavy_golden_still_verifies(run_parity) -> None:
    """Its committed golden: same weights hash, and eager torch reproduces it (no 160 MB export needed)."""
    report, code = run_parity(["model=dcnv2_heavy", "backend=torch_cpu", "inputs.batch_sizes=[2]"])
    assert code == 0 and report["verdict"] == "PASS", report["error"]
    assert report["model"]["weights_sha256"] == report["golden"]["weights_sha256"]


def test_probes_name_the_stage_holding_a_planted_fault(run_parity) -> None:
    report, code = run_parity([
        "model=centerpoint", "exporter=torchscript", "checks.probes=true",
        "exporter._target_=tests.plugins.PerturbingExporter", "+exporter.node_contains=blocks.1", "+exporter.delta=2.0",
    ])
    assert code == 1  # the main outputs fail too
    probes = report["probes"]
    assert probes["error"] is None and probes["first_exceeding"] == "backbone.blocks.1"
    stages = {p["name"]: p for p in probes["probes"]}
    assert [p["name"] for p in probes["probes"]] == ["backbone.blocks.0", "backbone.blocks.1", "backbone.blocks.2"]
    assert stages["backbone.blocks.0"]["within_tolerance"] and not stages["backbone.blocks.1"]["within_tolerance"]
    assert stages["backbone.blocks.1"]["amplification"] > 1000  # from ~1e-7 noise to a real error


def test_probes_are_reported_in_forward_order_whatever_the_config_order(run_parity) -> None:
    report, code = run_parity(["model=mlp", "exporter=torchscript", "checks.probes=true", "model.probes=[4,0,2]",
                               "tolerance.check=max"])
    assert code == 0, report
    assert [p["name"] for p in report["probes"]["probes"]] == ["0", "2", "4"]
    assert report["probes"]["probes"][0]["amplification"] is None  # the first in forward order has no predecessor


def test_probes_with_an_unknown_module_path_are_an_error(run_parity) -> None:
    report, code = run_parity(["model=mlp", "checks.probes=true", "model.probes=[no.such.layer]"])
    assert code == 2 and "no.such.layer" in report["probes"]["error"]


def test_localize_all_names_the_perturbed_node(run_parity) -> None:
    report, code = run_parity([
        "model=centerpoint", "exporter=torchscript", "localize=all", "checks.localize_chunk=16",
        "backend._target_=tests.plugins.PerturbingOrtBackend", "+backend.node_contains=blocks.1",
    ])
    loc = report["localization"]
    perturbed = report["backend"]["runtime"]["perturbed_node"]
    assert code == 1 and loc["error"] is None and perturbed
    assert loc["first_divergent"]["node"] == perturbed and loc["first_divergent"]["op_type"] == "Conv"
    assert loc["tensors_compared"] < loc["tensors_total"]  # it stopped at the first divergent chunk
    # blocks.0's 8 tensors agree, the 9th (blocks.1's first Conv) diverges: the first chunk of 16 holds it
    assert loc["tensors_compared"] == 9 and loc["chunks_run"] == math.ceil(loc["tensors_compared"] / 16) == 1


def test_localize_all_names_a_node_that_produces_a_graph_output(run_parity) -> None:
    """The last Gemm of the mlp writes the graph output itself: it must be compared and named too."""
    report, code = run_parity(["model=mlp", "exporter=torchscript", "localize=all",
                               "backend._target_=tests.plugins.PerturbingOrtBackend",
                               "+backend.node_contains=model.4/Gemm"])
    loc = report["localization"]
    assert code == 1 and loc["error"] is None
    assert loc["first_divergent"]["node"] == report["backend"]["runtime"]["perturbed_node"]
    assert loc["first_divergent"]["tensor"] == "logits" and loc["tensors_compared"] == loc["tensors_total"]


def test_localize_all_on_a_clean_model_compares_every_tensor_in_chunks(run_parity) -> None:
    report, code = run_parity(["model=mlp", "exporter=torchscript", "localize=all", "checks.localize_chunk=2"])
    loc = report["localization"]
    assert code == 0 and loc["first_divergent"] is None
    assert loc["tensors_compared"] == loc["tensors_total"] > 2
    assert loc["chunks_run"] == math.ceil(loc["tensors_total"] / 2)


def test_localize_needs_an_onnx_backend(run_parity) -> None:
    report, code = run_parity(["model=mlp", "backend=torch_cpu", "localize=all"])
    assert code == 2 and "needs an ONNX backend" in report["localization"]["error"]


def test_determinism_on_ort_cpu(run_parity) -> None:
    report, code = run_parity(["model=mlp", "checks.repeats=4", "inputs.batch_sizes=[2,4]"])
    assert code == 0
    assert [(d["batch_size"], d["repeats"], d["bitwise_identical"]) for d in report["determinism"]] == [
        (2, 4, True), (4, 4, True)]
    assert report["determinism"][0]["max_abs_diff"] == 0.0


def test_determinism_reports_run_to_run_differences(run_parity) -> None:
    report, _ = run_parity(["model=mlp", "checks.repeats=3", "backend._target_=tests.plugins.NoisyBackend"])
    det = report["determinism"][0]
    assert det["bitwise_identical"] is False and 0 < det["max_abs_diff"] < 1e-4
