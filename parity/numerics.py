"""Numerics settings (seed 003): torch's process-wide flags applied for one job, recorded, restored afterwards."""

from __future__ import annotations

import contextlib
import dataclasses
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
    """Set the requested torch flags for the block; yields the record {requested, in_force}; restores on exit.

    The torch flags are process-wide, so they are set here; every other switch reaches its exporter or backend
    through that plugin's own `with_numerics` hook when the job plan is built.
    """
    requested = {f.name: getattr(numerics, f.name) for f in dataclasses.fields(numerics) if f.name != "name"}
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
