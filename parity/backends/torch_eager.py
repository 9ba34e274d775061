"""Eager PyTorch: runs the live module, no export (the reference, and torch_cuda later)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import numpy as np

from parity.artifact import Artifact
from parity.backends.base import Backend


class TorchBackend(Backend):
    """Runs the torch module itself on `device` under deterministic settings."""

    accepts = "torch"

    def __init__(self, name: str, device: str = "cpu", num_threads: int | None = None) -> None:
        super().__init__(name)
        self.device = device
        self.num_threads = num_threads
        self._module: Any = None

    def availability(self) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed"
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                return f"CUDA is not available to torch {torch.__version__} (device '{self.device}' requested)"
        return None

    def _load_impl(self, artifact: Artifact) -> None:
        import copy

        # the artifact's module is also the live reference (on CPU): never move it, move a copy
        module = artifact.module
        self._module = module if self.device == "cpu" else copy.deepcopy(module).to(self.device)

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from parity.models import deterministic, run_torch

        assert self._loaded is not None
        with deterministic(self.num_threads):
            return run_torch(self._module, feeds, self._loaded.input_names, self._loaded.output_names, self.device)

    def _close_impl(self) -> None:
        self._module = None

    def runtime_info(self) -> dict[str, Any]:
        import torch

        info: dict[str, Any] = {
            "framework": "torch",
            "torch": torch.__version__,
            "device": self.device,
            "threads": self.num_threads or torch.get_num_threads(),
            "deterministic_algorithms": True,
        }
        if self.device.startswith("cuda") and torch.cuda.is_available():
            info["device_name"] = torch.cuda.get_device_name(torch.device(self.device))
            info["cuda"] = torch.version.cuda
            info["cudnn"] = torch.backends.cudnn.version()
        return info
