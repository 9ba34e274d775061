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
        self._previous_threads: int | None = None

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
        if self.num_threads:  # in force while loaded (benchmarks time it so), restored by close()
            import torch

            self._previous_threads = torch.get_num_threads()
            torch.set_num_threads(self.num_threads)

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from parity.frameworks.torch import deterministic, run_torch

        assert self._loaded is not None
        with deterministic(self.num_threads):
            return run_torch(self._module, feeds, self._loaded.input_names, self._loaded.output_names, self.device)

    def timer(self, feeds: Mapping[str, np.ndarray], include_transfers: bool = True) -> tuple[Any, str]:
        """CPU: perf_counter around the forward pass. CUDA: CUDA events around it, then a synchronise;
        inputs already on the device unless `include_transfers` (then the copies in and out are timed too)."""
        import time

        import torch

        assert self._loaded is not None
        module, device = self._module, self.device
        names = self._loaded.input_names
        host = tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names)
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

    def _close_impl(self) -> None:
        self._module = None
        if self._previous_threads is not None:
            import torch

            torch.set_num_threads(self._previous_threads)
            self._previous_threads = None

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
