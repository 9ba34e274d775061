"""Which optional extras are installed here, for skip markers (cheap: no import of the frameworks themselves)."""

from __future__ import annotations

import importlib.util

import pytest


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


_TF = _missing("tensorflow", "keras", "tf2onnx")
_OV = _missing("openvino")

needs_tf = pytest.mark.skipif(bool(_TF), reason=f"the `tf` extra is not installed here (missing: {', '.join(_TF)})")
needs_openvino = pytest.mark.skipif(bool(_OV), reason="the `openvino` extra is not installed here")


def openvino_reason() -> str | None:
    """None where the openvino extra is installed, else why the parts of a test that need it are left out."""
    return "the `openvino` extra is not installed here" if _OV else None

# a sitecustomize that makes these modules unimportable in a child process, the way an absent package is:
# `import x` raises ImportError and importlib.util.find_spec("x") answers None
BLOCKER = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
"""
