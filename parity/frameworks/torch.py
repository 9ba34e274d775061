"""PyTorch models: seeded construction, weight hashing, deterministic eager inference, layer probes.

torch is imported inside each function, so that importing parity never needs it (a Keras job runs without torch).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from parity.dependencies import import_reason
from parity.errors import ConfigError, ModelError, one_line
from parity.frameworks.base import Framework, builder_error, output_values
from parity.inputs import bfloat16_bits, contiguous, with_dtype

if TYPE_CHECKING:
    import torch


class TorchFramework(Framework):
    name = "torch"
    reference_backend = "torch_cpu"

    def availability(self) -> str | None:
        return import_reason("a torch model", "torch")

    def build(self, model_cfg: Any) -> Any:
        return build_model(model_cfg)

    def weights_sha256(self, model: Any) -> str:
        return weights_sha256(model)

    def run(self, model: Any, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
            output_names: Sequence[str]) -> dict[str, np.ndarray]:
        with deterministic():
            return run_torch(model, feeds, input_names, output_names)

    def reference_info(self) -> dict[str, Any]:
        return {"backend": "torch eager", "device": "cpu", "dtype": "float32", "deterministic": True}

    def code_classes(self, model: Any) -> list[type]:
        return list({type(m): None for m in model.modules()})

    def probed(self, model: Any, paths: Sequence[str]) -> Any:
        from parity.diagnostics.torch_hooks import ProbedModule

        return ProbedModule(model, paths)

    def run_probes(self, model: Any, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
                   paths: Sequence[str]) -> dict[str, np.ndarray]:
        from parity.diagnostics.torch_hooks import run_with_probes

        with deterministic():
            return run_with_probes(model, feeds, input_names, paths)

    def module_tree(self, model: Any) -> Any:
        from parity.diagnostics.scopes import torch_tree

        return torch_tree(model)

    def module_calls(self, model: Any, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
                     wanted: set[tuple[str, int]] | None = None) -> tuple[list[Any], dict[Any, Any]]:
        from parity.diagnostics.torch_hooks import module_calls

        with deterministic():
            return module_calls(model, feeds, input_names, wanted)


def build_model(model_cfg: Any) -> torch.nn.Module:
    """Call the configured builder under the model's seed; returns the module in eval mode, float32, CPU."""
    import torch
    from hydra.utils import instantiate

    torch.manual_seed(int(model_cfg.seed))
    try:
        module = instantiate(model_cfg.builder, _convert_="all")
    except Exception as exc:  # a bad _target_ or kwargs is the user's config; a missing package: a SKIP
        raise builder_error(model_cfg, exc) from exc
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"model '{model_cfg.name}': builder returned {type(module).__name__}, not a torch.nn.Module")
    if model_cfg.weights:  # trained weights replace the seeded ones (parity.weights)
        from parity.weights import load_torch

        load_torch(module, model_cfg)
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


def run_torch(module: torch.nn.Module, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
              output_names: Sequence[str], device: str = "cpu") -> dict[str, np.ndarray]:
    """One eager forward pass: positional inputs in declared order, outputs mapped to declared names."""
    import torch

    args = tuple(to_tensor(feeds[name]).to(device) for name in input_names)
    try:
        with torch.inference_mode():
            result = module(*args)
    except Exception as exc:
        raise ModelError(f"torch forward failed: {one_line(exc)}") from exc
    return outputs_to_dict(result, output_names)


def outputs_to_dict(result: Any, output_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Map a forward result (tensor, tuple/list, or dict) onto the declared output names, as numpy arrays."""
    import torch

    values = output_values(result, output_names)
    bad = [name for name, value in zip(output_names, values) if not isinstance(value, torch.Tensor)]
    if bad:
        raise ModelError(f"model outputs {bad} are not tensors")
    return {name: to_numpy(value) for name, value in zip(output_names, values)}


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A numpy array as a CPU tensor; bfloat16 (ml_dtypes) through its uint16 bit pattern, which torch.from_numpy
    does not know."""
    import torch

    array = contiguous(array)
    tensor = torch.from_numpy(bfloat16_bits(array))
    return tensor.view(torch.bfloat16) if array.dtype.name == "bfloat16" else tensor


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as a numpy array; bfloat16 as ml_dtypes' bfloat16 (tensor.numpy() refuses it)."""
    import torch

    value = tensor.detach().cpu()
    if value.dtype == torch.bfloat16:
        return with_dtype(value.contiguous().view(torch.uint16).numpy(), "bfloat16")
    return value.numpy()
