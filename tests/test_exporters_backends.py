"""Every exporter and backend on real torch / onnx / onnxruntime, through the shared contracts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from parity import inputs as inputs_mod
from parity import plugins
from parity.artifact import Artifact
from parity.errors import BackendError
from parity.frameworks.torch import build_model, run_torch
from tests.conftest import compose_cfg

EXPORTERS = ["dynamo", "torchscript", "jit_trace"]
# new backends add one entry here (the conformance list)
BACKENDS = ["ort_cpu", "torch_cpu", "ort_web", "ort_web_browser"]
CLIENTS = {"ort_web", "ort_web_browser"}  # need node / Chromium: a SKIP with the reason where they are missing


def _build(group: str, node):
    """The plugin a composed group node describes, as the job plan builds it."""
    return plugins.build(group, plugins.typed_config(group, node))


def _setup(overrides: list[str]):
    cfg = compose_cfg(["model=mlp", *overrides])
    module = build_model(cfg.model)
    feeds = inputs_mod.generate(cfg.model.inputs, 3, 0)
    axes = {s.name: inputs_mod.batch_axis(s.shape) for s in cfg.model.inputs}
    return cfg, module, feeds, axes


@pytest.mark.parametrize("name", EXPORTERS)
def test_exporter_records_and_runs(name: str, tmp_path: Path) -> None:
    cfg, module, feeds, axes = _setup([f"exporter={name}"])
    exporter = _build("exporter", cfg.exporter)
    artifact = exporter.export(module, feeds, axes, ["logits"], tmp_path / name, batch_size=None)
    rec = artifact.record
    assert rec.ok, rec.error
    assert rec.exporter == name and rec.seconds > 0 and rec.opset == cfg.exporter.opset
    assert rec.versions["torch"] and rec.versions["onnx"] == onnx.__version__
    on_disk = sorted(str(p.relative_to(tmp_path / name)) for p in (tmp_path / name).rglob("*") if p.is_file())
    assert list(rec.files) == on_disk and rec.size_bytes == sum((tmp_path / name / f).stat().st_size for f in on_disk)
    if len(on_disk) == 1:
        assert rec.sha256 == hashlib.sha256(artifact.path.read_bytes()).hexdigest()
    onnx.checker.check_model(str(artifact.path))
    graph = onnx.load(str(artifact.path), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["x"] and [o.name for o in graph.output] == ["logits"]
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param, "the batch axis must be dynamic"


def test_dynamo_external_data_is_part_of_the_artifact(tmp_path: Path) -> None:
    cfg, module, feeds, axes = _setup(["exporter=dynamo", "exporter.external_data=true"])
    artifact = _build("exporter", cfg.exporter).export(module, feeds, axes, ["logits"], tmp_path, None)
    assert "model.onnx.data" in artifact.record.files
    single = hashlib.sha256(artifact.path.read_bytes()).hexdigest()
    assert artifact.record.sha256 != single  # the hash covers the weights file too
    backend = _build("backend", compose_cfg(["backend=ort_cpu"]).backend)
    with backend.prepare(artifact) as session:
        out = session.infer(feeds)["logits"]
    np.testing.assert_allclose(out, run_torch(module, feeds, ["x"], ["logits"])["logits"], atol=1e-5)


def test_exporter_failure_is_a_record_not_an_exception(tmp_path: Path) -> None:
    cfg, module, feeds, axes = _setup(["exporter=torchscript", "exporter.opset=25"])
    artifact = _build("exporter", cfg.exporter).export(module, feeds, axes, ["logits"], tmp_path, None)
    assert not artifact.record.ok and "25" in artifact.record.error and artifact.path is None


def test_static_export_fixes_the_batch(tmp_path: Path) -> None:
    cfg, module, feeds, axes = _setup(["exporter=torchscript", "exporter.dynamic_batch=false"])
    artifact = _build("exporter", cfg.exporter).export(module, feeds, axes, ["logits"], tmp_path, 3)
    dim = onnx.load(str(artifact.path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_value == 3 and artifact.record.batch_size == 3


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_contract(name: str, tmp_path: Path) -> None:
    cfg, module, feeds, axes = _setup([f"backend={name}", "exporter=torchscript"])
    backend = _build("backend", cfg.backend)
    reason = backend.availability()
    if reason is not None and name in CLIENTS:
        pytest.skip(reason)
    assert reason is None
    if "onnx" in backend.accepts:
        artifact = _build("exporter", cfg.exporter).export(module, feeds, axes, ["logits"], tmp_path, None)
    else:
        artifact = Artifact(kind="torch", input_names=["x"], output_names=["logits"], module=module)
    with backend.prepare(artifact) as session:
        out = session.infer(feeds)
        info = session.runtime_info()
    with pytest.raises(BackendError, match="after its prepare"):
        session.infer(feeds)  # a session lives only inside its block
    assert set(out) == {"logits"} and out["logits"].shape == (3, 8)
    np.testing.assert_allclose(out["logits"], run_torch(module, feeds, ["x"], ["logits"])["logits"], atol=1e-5)
    assert info["framework"] in ("torch", "onnxruntime", "onnxruntime-web") and info["device"]


def test_ort_records_active_providers_and_settings(tmp_path: Path) -> None:
    cfg, module, feeds, axes = _setup(["exporter=torchscript", "backend.graph_optimization_level=disable_all",
                                       "backend.intra_op_num_threads=1"])
    artifact = _build("exporter", cfg.exporter).export(module, feeds, axes, ["logits"], tmp_path, None)
    backend = _build("backend", cfg.backend)
    with backend.prepare(artifact) as session:
        info = session.runtime_info()
    assert info["providers_active"] == ["CPUExecutionProvider"]
    assert info["graph_optimization_level"] == "disable_all" and info["intra_op_num_threads"] == 1


def test_ort_provider_not_in_this_build_is_a_skip_reason() -> None:
    import onnxruntime as ort

    absent = next(p for p in ort.get_all_providers() if p not in ort.get_available_providers())  # a real EP name
    cfg = compose_cfg(["backend=ort_cpu", f"backend.providers=[{{name: {absent}}}, {{name: CPUExecutionProvider}}]"])
    reason = _build("backend", cfg.backend).availability()
    assert reason is not None and f"lacks {absent}" in reason and "CPUExecutionProvider" in reason


def test_a_misspelt_ort_provider_is_a_configuration_error() -> None:
    from parity.errors import ConfigError

    cfg = compose_cfg(["backend=ort_cpu", "backend.providers=[{name: CUDAExecutionProvidr}]"])
    with pytest.raises(ConfigError, match="'CUDAExecutionProvidr' is not an ONNX Runtime execution provider; "
                                          "did you mean 'CUDAExecutionProvider'"):
        _build("backend", cfg.backend)


def test_torch_cuda_without_a_gpu_is_a_skip_reason() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; the unavailable path cannot be exercised")
    cfg = compose_cfg(["backend=torch_cpu", "backend.device=cuda:0"])
    reason = _build("backend", cfg.backend).availability()
    assert reason is not None and "CUDA is not available" in reason


def test_onnx_backend_refuses_a_torch_artifact() -> None:
    backend = _build("backend", compose_cfg(["backend=ort_cpu"]).backend)
    with pytest.raises(BackendError, match="runs onnx artifacts"):
        with backend.prepare(Artifact(kind="torch", input_names=["x"], output_names=["y"])):
            pass
