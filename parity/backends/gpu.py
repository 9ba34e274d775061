"""What GPU is there, as far as the libraries present can tell (no CUDA library is required to ask)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import cache
from typing import Any


@cache
def nvidia_smi() -> list[dict[str, str]]:
    """GPUs listed by nvidia-smi (name, driver, memory); empty where there is none."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return gpus


def gpu_missing_reason() -> str | None:
    """None when an NVIDIA GPU is visible, else why not."""
    if nvidia_smi():
        return None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return None
    return "no NVIDIA GPU is visible on this machine (nvidia-smi lists none)"


def device_info(index: int = 0) -> dict[str, Any]:
    """Device name, driver, CUDA/cuDNN versions from whichever of nvidia-smi / torch / onnxruntime is present."""
    info: dict[str, Any] = {}
    gpus = nvidia_smi()
    if index < len(gpus):
        info.update(device_name=gpus[index]["name"], driver=gpus[index]["driver"], memory=gpus[index]["memory"])
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info.setdefault("device_name", torch.cuda.get_device_name(index))
        info["torch_cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    try:
        from onnxruntime.capi import build_and_package_info as ort_build

        info["onnxruntime_cuda"] = getattr(ort_build, "cuda_version", None)
    except ImportError:
        pass
    return info
