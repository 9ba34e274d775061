"""Numerics settings (seed 003): apply them for one job, record what was in force, restore afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

# (config key, module path under torch.backends, attribute)
TORCH_FLAGS = (
    ("tf32_matmul", "cuda.matmul", "allow_tf32"),
    ("tf32_cudnn", "cudnn", "allow_tf32"),
    ("cudnn_deterministic", "cudnn", "deterministic"),
    ("cudnn_benchmark", "cudnn", "benchmark"),
)


def _target(path: str) -> Any:
    import torch

    obj: Any = torch.backends
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_state() -> dict[str, Any]:
    """The torch numerics flags as they stand (recorded whether or not a GPU is present); {} without torch."""
    if not _have_torch():
        return {}
    state = {f"torch.backends.{path}.{attr}": getattr(_target(path), attr) for _, path, attr in TORCH_FLAGS}
    import torch

    state["torch.float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return state


@contextlib.contextmanager
def applied(numerics: Any) -> Iterator[dict[str, Any]]:
    """Set the requested torch flags for the block; yields the record {requested, in_force}; restores on exit."""
    requested = {key: getattr(numerics, key) for key in (
        "tf32_matmul", "tf32_cudnn", "cudnn_deterministic", "cudnn_benchmark", "ort_graph_optimization_level",
        "export_constant_folding", "trt_tf32", "openvino_precision")}
    previous = {}
    for key, path, attr in TORCH_FLAGS if _have_torch() else ():  # a Keras-only environment has no torch flags
        value = requested[key]
        if value is not None:
            target = _target(path)
            previous[(path, attr)] = getattr(target, attr)
            setattr(target, attr, bool(value))
    record = {"name": numerics.name, "requested": requested, "in_force": torch_state(), "restored": False}
    try:
        yield record
    finally:
        for (path, attr), value in previous.items():
            setattr(_target(path), attr, value)
        record["restored"] = True


def backend_overrides(numerics: Any, backend_cfg: Any) -> dict[str, Any]:
    """Keyword overrides a numerics option imposes on the backend it is instantiated with."""
    overrides: dict[str, Any] = {}
    if numerics.ort_graph_optimization_level is not None and "graph_optimization_level" in backend_cfg:
        overrides["graph_optimization_level"] = numerics.ort_graph_optimization_level
    if numerics.trt_tf32 is not None and "tf32" in backend_cfg:
        overrides["tf32"] = numerics.trt_tf32
    if numerics.openvino_precision is not None and "inference_precision" in backend_cfg:
        overrides["inference_precision"] = numerics.openvino_precision
    return overrides


def exporter_overrides(numerics: Any, exporter_cfg: Any) -> dict[str, Any]:
    """Keyword overrides a numerics option imposes on the exporter."""
    if numerics.export_constant_folding is not None and "constant_folding" in exporter_cfg:
        return {"constant_folding": numerics.export_constant_folding}
    return {}
