"""Versions of everything that can change a result, for reports and golden manifests."""

from __future__ import annotations

import datetime as _dt
import platform
import sys

import numpy as np

import parity

# module -> the distributions that may provide it (onnxruntime-gpu provides onnxruntime, tensorflow-cpu tensorflow)
_VERSIONED = {
    "torch": ("torch",), "onnx": ("onnx",), "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "onnxscript": ("onnxscript",), "tensorflow": ("tensorflow", "tensorflow-cpu"), "keras": ("keras",),
    "tf2onnx": ("tf2onnx",), "openvino": ("openvino",), "tensorrt": ("tensorrt",), "polygraphy": ("polygraphy",),
}


def environment() -> dict[str, str]:
    """Python, platform, numpy, parity, and the version of every framework imported by this job (or installed)."""
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "parity": parity.__version__,
    }
    from importlib.metadata import PackageNotFoundError, version

    for module, distributions in _VERSIONED.items():
        mod = sys.modules.get(module)
        if mod is not None:
            env[module] = str(getattr(mod, "__version__", "unknown"))
            continue
        for dist in distributions:  # not imported by this job: what is installed
            try:
                env[module] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return env


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
