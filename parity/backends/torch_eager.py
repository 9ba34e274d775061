"""Eager PyTorch: runs the live module itself, no export (torch_cpu is the reference; torch_cuda on a GPU)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from parity.backends.base import Backend, BackendConfig, Session
from parity.frameworks.torch import to_tensor
from parity.plugins import register


@dataclass
class TorchBackendConfig(BackendConfig):
    """Eager torch on `device` (the device index is part of it: cuda:0)."""

    _target_: str = "parity.backends.torch_eager.TorchBackend"
    name: str = "torch_cpu"
    device: str = "cpu"
    num_threads: Optional[int] = None  # None: torch's own setting


class TorchSession(Session):
    """The torch module on the device, under deterministic settings; its thread count in force while open."""

    def _open(self) -> None:
        import copy

        import torch

        config = self.backend.config
        # the artifact's module is also the live reference (on CPU): never move it, move a copy
        module = self.artifact.module
        self._module = module if config.device == "cpu" else copy.deepcopy(module).to(config.device)
        self._previous_threads = torch.get_num_threads() if config.num_threads else None
        if config.num_threads:  # in force while open (benchmarks time it so), restored by _close
            torch.set_num_threads(config.num_threads)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from parity.frameworks.torch import deterministic, run_torch

        config = self.backend.config
        with deterministic(config.num_threads):
            return run_torch(self._module, feeds, self.artifact.input_names, self.artifact.output_names,
                             config.device)

    def timer(self, feeds: Mapping[str, np.ndarray], include_transfers: bool = True) -> tuple[Any, str]:
        """CPU: perf_counter around the forward pass. CUDA: CUDA events around it, then a synchronise;
        inputs already on the device unless `include_transfers` (then the copies in and out are timed too)."""
        import time

        import torch

        module, device = self._module, self.backend.config.device
        host = tuple(to_tensor(feeds[n]) for n in self.artifact.input_names)
        if not device.startswith("cuda"):

            def run_cpu() -> float:
                with torch.inference_mode():
                    start = time.perf_counter()
                    module(*host)
                    return time.perf_counter() - start

            return run_cpu, "perf_counter around the eager forward pass (CPU)"
        on_device = tuple(t.to(device) for t in host)
        torch.cuda.synchronize(device)

        def run_cuda() -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            with torch.inference_mode():
                start.record()
                args = tuple(t.to(device, non_blocking=False) for t in host) if include_transfers else on_device
                out = module(*args)
                if include_transfers:
                    for value in (out.values() if isinstance(out, dict) else out if isinstance(out, (list, tuple))
                                  else (out,)):
                        value.cpu()
                end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1e3

        what = "including" if include_transfers else "excluding"
        return run_cuda, f"CUDA events around the forward pass + synchronize, {what} host<->device copies"

    def runtime_info(self) -> dict[str, Any]:
        import torch

        config = self.backend.config
        info: dict[str, Any] = {
            "framework": "torch",
            "torch": torch.__version__,
            "device": config.device,
            "threads": config.num_threads or torch.get_num_threads(),
            "deterministic_algorithms": True,
        }
        if config.device.startswith("cuda") and torch.cuda.is_available():
            info["device_name"] = torch.cuda.get_device_name(torch.device(config.device))
            info["cuda"] = torch.version.cuda
            info["cudnn"] = torch.backends.cudnn.version()
        return info

    def _close(self) -> None:
        self._module = None
        if getattr(self, "_previous_threads", None) is not None:
            import torch

            torch.set_num_threads(self._previous_threads)
            self._previous_threads = None


@register
class TorchBackend(Backend):
    """Runs the torch model itself."""

    Config = TorchBackendConfig
    schema = "base_torch_backend"
    accepts = frozenset({"torch"})
    session_class = TorchSession

    def availability(self) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed"
        if self.config.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                return f"CUDA is not available to torch {torch.__version__} (device '{self.config.device}' requested)"
        return None
