"""Seeded torch model construction, weight hashing and eager inference (torch is imported inside each function, so
that a Keras model under parity.models never needs torch)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from hydra.utils import instantiate

from parity.errors import ConfigError, ModelError, one_line

if TYPE_CHECKING:
    import torch


def build_model(model_cfg: Any) -> torch.nn.Module:
    """Call the configured builder under the model's seed; returns the module in eval mode, float32, CPU."""
    import torch

    torch.manual_seed(int(model_cfg.seed))
    try:
        module = instantiate(model_cfg.builder, _convert_="all")
    except Exception as exc:  # a bad _target_ or kwargs is the user's config; anything else is the builder's
        cause = exc.__cause__ or exc
        raise ConfigError(f"model '{model_cfg.name}': builder failed: {one_line(cause)}") from exc
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"model '{model_cfg.name}': builder returned {type(module).__name__}, not a torch.nn.Module")
    return module.float().eval()


def weights_sha256(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer: name, dtype, shape and bytes, in state_dict order."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        array = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{array.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(array.view(torch.uint8).numpy().tobytes() if array.numel() else b"")
    return digest.hexdigest()


@contextlib.contextmanager
def deterministic(num_threads: int | None = None) -> Iterator[None]:
    """Deterministic algorithms and an optional thread count, restored on exit."""
    import torch

    previous = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.set_num_threads(previous_threads)


def run_torch(
    module: torch.nn.Module,
    feeds: Mapping[str, np.ndarray],
    input_names: Sequence[str],
    output_names: Sequence[str],
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """One eager forward pass: positional inputs in declared order, outputs mapped to declared names."""
    import torch

    args = tuple(torch.from_numpy(np.ascontiguousarray(feeds[name])).to(device) for name in input_names)
    try:
        with torch.inference_mode():
            result = module(*args)
    except Exception as exc:
        raise ModelError(f"torch forward failed: {one_line(exc)}") from exc
    return outputs_to_dict(result, output_names)


def outputs_to_dict(result: Any, output_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Map a forward result (tensor, tuple/list, or dict) onto the declared output names, as numpy arrays."""
    import torch

    from parity.frameworks import output_values

    values = output_values(result, output_names)
    bad = [name for name, value in zip(output_names, values) if not isinstance(value, torch.Tensor)]
    if bad:
        raise ModelError(f"model outputs {bad} are not tensors")
    return {name: value.detach().cpu().numpy() for name, value in zip(output_names, values)}

