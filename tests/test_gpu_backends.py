"""GPU and TensorRT backends: what can be proven without a GPU, and the GPU runs themselves where one exists."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from parity.backends.tensorrt import (
    TensorRTBackend,
    TensorRTBackendConfig,
    derive_profile,
    engine_cache_key,
    onnx_content_sha256,
)
from tests.conftest import compose_cfg, cuda_reason


def _ort_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


GPU_ORT = "CUDAExecutionProvider" in _ort_providers()


# -- SKIP reasons: precise, and the CPU backends unaffected ----------------------------------------------


@pytest.mark.skipif(GPU_ORT, reason="onnxruntime-gpu is installed: the CUDA provider exists")
@pytest.mark.parametrize("backend, needle", [("ort_cuda", "lacks CUDAExecutionProvider"),
                                              ("ort_trt", "lacks TensorrtExecutionProvider, CUDAExecutionProvider")])
def test_ort_gpu_backends_skip_on_cpu_onnxruntime(run_parity, backend: str, needle: str) -> None:
    report, code = run_parity(["model=mlp", f"backend={backend}"])
    assert code == 0 and report["verdict"] == "SKIP"
    assert needle in report["checks"][1]["message"] and report["checks"][0]["verdict"] == "PASS"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed")
def test_tensorrt_skips_without_tensorrt(run_parity) -> None:
    report, code = run_parity(["model=mlp", "backend=tensorrt"])
    assert code == 0 and report["verdict"] == "SKIP" and "backend 'tensorrt' needs tensorrt, which is not installed here" in report["checks"][1]["message"]


@pytest.mark.skipif(cuda_reason() is None, reason="a CUDA device is present")
def test_torch_cuda_skips_without_a_gpu(run_parity) -> None:
    report, code = run_parity(["model=mlp", "backend=torch_cuda"])
    assert code == 0 and report["verdict"] == "SKIP" and "CUDA is not available" in report["checks"][1]["message"]


# -- provider fallback: onnxruntime-gpu on a machine without a GPU really falls back to CPU -----------------


@pytest.mark.skipif(not GPU_ORT, reason="needs onnxruntime-gpu (the GPU profile) to request the CUDA provider")
@pytest.mark.skipif(cuda_reason() is None, reason="a CUDA device is present: the CUDA provider would really load")
def test_silent_cpu_fallback_is_an_error_naming_what_ran(run_parity) -> None:
    report, code = run_parity(["model=mlp", "backend=ort_cuda"])
    assert code == 2 and report["verdict"] == "ERROR"
    message = report["checks"][1]["message"]
    assert "CUDAExecutionProvider did not load" in message and "ran on CPUExecutionProvider instead" in message


@pytest.mark.skipif(not GPU_ORT, reason="needs onnxruntime-gpu (the GPU profile), which always lists the TensorRT EP")
def test_ort_trt_without_tensorrt_libraries_is_a_skip_not_a_fallback(run_parity) -> None:
    from parity.backends.onnxruntime import tensorrt_version

    if tensorrt_version() is not None:
        pytest.skip(f"TensorRT libraries are present here ({tensorrt_version()})")
    report, code = run_parity(["model=mlp", "backend=ort_trt"])
    assert code == 0 and report["verdict"] == "SKIP"
    assert "needs the TensorRT libraries (libnvinfer)" in report["checks"][1]["message"]


# -- numerics --------------------------------------------------------------------------------------------


def test_strict_numerics_are_applied_recorded_and_restored(run_parity) -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.allow_tf32 = True  # torch's default, made explicit
    report, code = run_parity(["model=mlp", "numerics=strict"])
    assert code == 0
    numerics = report["numerics"]
    assert numerics["name"] == "strict" and numerics["restored"] is True
    assert numerics["in_force"] == {
        "torch.backends.cuda.matmul.allow_tf32": False, "torch.backends.cudnn.allow_tf32": False,
        "torch.backends.cudnn.deterministic": True, "torch.backends.cudnn.benchmark": False,
        "torch.float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
    assert report["backend"]["runtime"]["graph_optimization_level"] == "disable_all"
    assert report["exports"][0]["options"]["constant_folding"] is False
    assert torch.backends.cudnn.allow_tf32 is True  # restored
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic, \
        torch.backends.cudnn.benchmark = before


def test_each_numerics_switch_overrides_on_its_own(run_parity) -> None:
    torch.backends.cudnn.allow_tf32 = True
    report, _ = run_parity(["model=mlp", "numerics=strict", "numerics.tf32_cudnn=null",
                            "numerics.ort_graph_optimization_level=basic"])
    assert report["numerics"]["in_force"]["torch.backends.cudnn.allow_tf32"] is True
    assert report["numerics"]["in_force"]["torch.backends.cudnn.deterministic"] is True
    assert report["backend"]["runtime"]["graph_optimization_level"] == "basic"


def test_default_numerics_change_nothing(run_parity) -> None:
    report, _ = run_parity(["model=mlp"])
    assert report["numerics"]["name"] == "default" and all(v is None for v in report["numerics"]["requested"].values())
    assert report["backend"]["runtime"]["graph_optimization_level"] == "all"


# -- TensorRT: profile derivation and engine-cache keying (no TensorRT needed) ----------------------------


def test_profile_derivation_from_declared_dynamic_axes() -> None:
    profile = derive_profile({"bev": ["batch", 64, 32, 32], "ids": ["batch", 1]}, [2, 8, 1])
    assert profile["bev"] == ([1, 64, 32, 32], [8, 64, 32, 32], [8, 64, 32, 32])
    assert profile["ids"] == ([1, 1], [8, 1], [8, 1])
    with pytest.raises(ValueError):
        derive_profile({"x": ["batch", 3]}, [])


def test_profile_follows_the_run_batch_sizes_through_the_backend_plan() -> None:
    cfg = compose_cfg(["model=centerpoint", "backend=tensorrt"])
    backend = TensorRTBackend(TensorRTBackendConfig())
    backend.expect({s.name: list(s.shape) for s in cfg.model.inputs}, [1, 2, 4])
    assert derive_profile(backend.input_shapes, backend.batch_sizes)["bev"][0] == [1, 64, 64, 64]


def test_engine_cache_key_covers_onnx_content_and_every_setting() -> None:
    settings = {"fp16": False, "tf32": True, "workspace_mib": 4096, "profile": {"x": [[1, 3], [8, 3], [8, 3]]},
                "tensorrt": "10.9", "device": "H100"}
    key = engine_cache_key("a" * 64, settings)
    assert key == engine_cache_key("a" * 64, dict(reversed(settings.items())))  # order-independent
    assert key != engine_cache_key("b" * 64, settings)
    for field, other in [("fp16", True), ("tf32", False), ("tensorrt", "10.10"), ("device", "H200"),
                         ("profile", {"x": [[1, 3], [4, 3], [4, 3]]})]:
        assert key != engine_cache_key("a" * 64, {**settings, field: other}), field


def test_onnx_content_hash_covers_external_data(tmp_path: Path) -> None:
    from parity import inputs as inputs_mod
    from parity import plugins
    from parity.frameworks.torch import build_model

    cfg = compose_cfg(["model=mlp", "exporter=dynamo", "exporter.external_data=true"])
    feeds = inputs_mod.generate(cfg.model.inputs, 2, 0)
    exporter = plugins.build("exporter", plugins.typed_config("exporter", cfg.exporter))
    artifact = exporter.export(build_model(cfg.model), feeds, {"x": 0}, ["logits"], tmp_path, None)
    first = onnx_content_sha256(artifact.path)
    data = tmp_path / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 1
    data.write_bytes(bytes(raw))
    assert onnx_content_sha256(artifact.path) != first


def test_engine_cache_loads_only_what_parity_recorded(tmp_path: Path) -> None:
    backend = TensorRTBackend(TensorRTBackendConfig(engine_cache_dir=str(tmp_path)))
    key = "k" * 64
    engine, sidecar = tmp_path / f"{key}.engine", tmp_path / f"{key}.json"
    backend._store(key, {"fp16": False}, b"engine-bytes", engine, sidecar)
    assert backend._cached(key, engine, sidecar) == b"engine-bytes"
    engine.write_bytes(b"a swapped engine")  # someone else's engine under parity's name: never deserialised
    assert backend._cached(key, engine, sidecar) is None
    engine.write_bytes(b"engine-bytes")
    sidecar.write_text(json.dumps({"key": "other", "engine_sha256": hashlib.sha256(b"engine-bytes").hexdigest()}))
    assert backend._cached(key, engine, sidecar) is None


# -- on a GPU ------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not GPU_ORT or cuda_reason() is not None, reason="needs onnxruntime-gpu and a CUDA device")
@pytest.mark.parametrize("numerics", ["default", "strict"])
def test_ort_cuda_on_centerpoint(run_parity, numerics: str) -> None:
    report, code = run_parity(["model=centerpoint", "backend=ort_cuda", f"numerics={numerics}"])
    assert code == 0, report
    assert report["backend"]["runtime"]["providers_active"][0] == "CUDAExecutionProvider"
    assert report["backend"]["runtime"]["device_name"]


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None or cuda_reason() is not None,
                    reason="needs tensorrt and a CUDA device")
def test_tensorrt_builds_caches_and_reuses_an_engine(run_parity, tmp_path: Path) -> None:
    overrides = ["model=mlp", "backend=tensorrt", f"backend.engine_cache_dir={tmp_path / 'engines'}",
                 "inputs.batch_sizes=[1,2,4]", "tolerance.atol=1e-3"]
    first, code = run_parity(overrides)
    assert code == 0, first
    assert first["backend"]["runtime"]["cache_hit"] is False
    second, _ = run_parity(overrides)
    assert second["backend"]["runtime"]["cache_hit"] is True
    assert second["backend"]["runtime"]["engine_sha256"] == first["backend"]["runtime"]["engine_sha256"]
