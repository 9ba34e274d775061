"""Source-model frameworks, by the name a model config declares (`framework: torch | keras | onnx`).

Each framework's libraries are imported only when a job needs them; a missing one is a SKIP with the reason.
"""

from __future__ import annotations

from importlib import import_module

from parity.frameworks.base import Framework

_FRAMEWORKS = {"torch": "parity.frameworks.torch:TorchFramework", "keras": "parity.frameworks.keras:KerasFramework",
               "onnx": "parity.frameworks.onnx:OnnxFramework"}


def framework_for(name: str) -> Framework:
    """The framework called `name`; ValueError for a name no framework registers."""
    value = str(getattr(name, "value", name))
    if value not in _FRAMEWORKS:
        raise ValueError(f"no framework '{value}' (known: {', '.join(_FRAMEWORKS)})")
    module, cls = _FRAMEWORKS[value].split(":")
    return getattr(import_module(module), cls)()


def framework_names() -> list[str]:
    return list(_FRAMEWORKS)
