"""Optional dependencies: one rule and one message for all of them.

A job that needs a package this environment lacks cannot run it: verify and bench report a SKIP whose reason
names what to install; mode=golden is an ERROR with the same message (a golden cannot be made without it).
The message is always `<what> needs <package>, which is not installed here: pip install -e '.[<extra>]'`
(the pyproject extra that carries it), or `pip install <package>` for a package parity does not ship an
extra for (a user's model importing its own libraries).
"""

from __future__ import annotations

import re

from parity.errors import UnavailableError

# top-level import name -> (distribution on PyPI, pyproject extra that installs it; None: none does)
PACKAGES: dict[str, tuple[str, str | None]] = {
    "torch": ("torch", "cpu"),
    "onnx": ("onnx", "cpu"),
    "onnxscript": ("onnxscript", "cpu"),
    "onnxruntime": ("onnxruntime", "cpu"),
    "tensorflow": ("tensorflow-cpu", "tf"),
    "keras": ("keras", "tf"),
    "tf2onnx": ("tf2onnx", "tf"),
    "openvino": ("openvino", "openvino"),
    "deepctr_torch": ("deepctr-torch", "models"),
    "polygraphy": ("polygraphy", "cpu"),
    "PIL": ("pillow", None),
    "cv2": ("opencv-python-headless", "opencv"),
    "tensorrt": ("tensorrt", None),
    "safetensors": ("safetensors", "cpu"),
}
_NO_MODULE = re.compile(r"No module named '([^']+)'")


def install_hint(module: str) -> str:
    """The command that installs the package providing `module` (a dotted name: its top level counts)."""
    top = module.split(".")[0]
    distribution, extra = PACKAGES.get(top, (top.replace("_", "-"), None))
    return f"pip install -e '.[{extra}]'" if extra else f"pip install {distribution}"


def missing_message(module: str, needed_for: str) -> str:
    top = module.split(".")[0]
    distribution = PACKAGES.get(top, (top,))[0]
    return f"{needed_for} needs {distribution}, which is not installed here: {install_hint(module)}"


def import_reason(needed_for: str, *modules: str) -> str | None:
    """None when every module imports here, else `missing_message` for the first that does not."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return missing_message(missing_module(exc) or module, needed_for)
    return None


def require(needed_for: str, *modules: str) -> None:
    """UnavailableError with `import_reason`'s message unless every module imports here."""
    reason = import_reason(needed_for, *modules)
    if reason is not None:
        raise UnavailableError(reason)


def missing_module(exc: BaseException) -> str | None:
    """The module an ImportError says is missing (its `name`, or the name in its message), or None."""
    if not isinstance(exc, ImportError):
        return None
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return exc.name
    found = _NO_MODULE.search(str(exc))
    return found.group(1) if found else None


def unavailable(exc: BaseException, needed_for: str, own_module: str | None = None) -> UnavailableError | None:
    """An UnavailableError for an ImportError naming a missing module, or None for anything else, and for a
    module that `own_module` (a dotted `_target_`) is or lies in: a mistyped target is the config's error."""
    module = missing_module(exc)
    if module is None:
        return None
    if own_module and (own_module == module or own_module.startswith(module + ".")):
        return None
    return UnavailableError(missing_message(module, needed_for))
