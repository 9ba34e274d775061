"""Trained weights from files: a torch state_dict (.pt/.pth, .safetensors) or Keras weights (.keras, .weights.h5).

A checkpoint is data, never code: `.pt`/`.pth` files load with `torch.load(weights_only=True)`; one that needs
the full unpickler (it holds pickled objects, which run code as they load) is refused in one line unless the
model config sets `weights_run_pickled_code: true`. Keys are matched strictly by default: a missing or
unexpected key is an ERROR listing them. The file's SHA-256 is recorded in the golden's manifest
(`weights_file`), so a changed file makes the golden stale.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from parity.errors import ConfigError, one_line

log = logging.getLogger("parity")

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS = ".safetensors"
KERAS_SUFFIXES = (".keras", ".weights.h5")
MAX_LISTED = 8  # keys named in one error line


def file_record(path: str | None) -> dict[str, Any] | None:
    """{"path", "sha256", "size_bytes"} of a weights file (or of a SavedModel directory: every file's name and
    hash, parity.artifact.hash_files), or None when the model takes none."""
    if not path:
        return None
    file = Path(path)
    if file.is_dir():
        from parity.artifact import hash_files

        sha, _, size = hash_files(file)
        return {"path": str(file), "sha256": sha, "size_bytes": size}
    from parity.golden import sha256_file

    return {"path": str(file), "sha256": sha256_file(file), "size_bytes": file.stat().st_size}


def check_file(model_cfg: Any, where: str = "model.weights") -> None:
    """The configured weights file exists and has a suffix its framework reads; ConfigError otherwise."""
    path = Path(model_cfg.weights)
    if not path.is_file():
        raise ConfigError(f"{where}: no such file {path}")
    name = path.name.lower()
    framework = str(getattr(model_cfg.framework, "value", model_cfg.framework))
    known = (*TORCH_SUFFIXES, SAFETENSORS) if framework == "torch" else KERAS_SUFFIXES
    if not name.endswith(known):
        raise ConfigError(f"{where}: {path.name} is not a {framework} weights file (one of {', '.join(known)})")


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", … ({len(keys)} in all)" if len(keys) > MAX_LISTED else "")


def read_torch_state(model_cfg: Any) -> dict[str, Any]:
    """The state_dict in the configured file: the nested key taken, the prefix stripped; ConfigError for a file
    that is not a state_dict of tensors, or that needs pickled code the config did not allow."""
    import torch

    path = Path(model_cfg.weights)
    if path.name.lower().endswith(SAFETENSORS):
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            from parity.dependencies import missing_message

            raise ConfigError(missing_message("safetensors", f"weights file {path.name}")) from exc
        try:
            loaded: Any = load_file(str(path), device="cpu")
        except Exception as exc:
            raise ConfigError(f"model.weights: {path.name} is not a readable safetensors file: {one_line(exc)}") \
                from None
    else:
        loaded = _torch_load(path, bool(model_cfg.weights_run_pickled_code))
    if isinstance(loaded, torch.nn.Module):  # a whole pickled module (only with the opt-in): its weights
        loaded = loaded.state_dict()
    state = _nested(loaded, model_cfg.weights_key, path)
    prefix = model_cfg.weights_strip_prefix
    if prefix:
        state = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}
    return state


def _torch_load(path: Path, run_pickled_code: bool) -> Any:
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not run_pickled_code:
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
            reason = f"it pickles {found.group(1)}" if found else "it holds pickled objects"
            raise ConfigError(
                f"model.weights: {path.name} does not load with torch.load(weights_only=True) ({reason}): loading it "
                f"would run the pickled code inside it. Re-save it as a state_dict (torch.save(model.state_dict(), "
                f"path)) or as .safetensors; if you trust its author, set model.weights_run_pickled_code=true"
            ) from None
    except Exception as exc:
        raise ConfigError(f"model.weights: {path.name} is not a torch checkpoint: {one_line(exc)}") from None
    log.warning("model.weights_run_pickled_code=true: loading %s with the full unpickler (runs its code)", path.name)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ConfigError(f"model.weights: {path.name} does not load even with weights_only=False: "
                          f"{one_line(exc)}") from None


def _nested(loaded: Any, key: str | None, path: Path) -> dict[str, Any]:
    """The state_dict at the dotted `key` of a checkpoint (the whole file when None), checked to be tensors."""
    import torch

    value = loaded
    for part in (key.split(".") if key else []):
        if not isinstance(value, Mapping) or part not in value:
            keys = sorted(map(str, value)) if isinstance(value, Mapping) else []
            raise ConfigError(f"model.weights_key '{key}': {path.name} has no '{part}' "
                              f"(keys there: {_listed(keys) or 'none, it is not a dict'})")
        value = value[part]
    if not isinstance(value, Mapping):
        raise ConfigError(f"model.weights: {path.name}{f' [{key}]' if key else ''} holds a {type(value).__name__}, "
                          f"not a state_dict")
    not_tensors = [str(k) for k, v in value.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        dicts = [str(k) for k, v in value.items() if isinstance(v, Mapping)]
        hint = f"; set model.weights_key to the state_dict's key (dict entries: {_listed(dicts)})" if dicts else ""
        raise ConfigError(f"model.weights: {path.name}{f' [{key}]' if key else ''} is not a state_dict of tensors: "
                          f"entries {_listed(not_tensors)} are not tensors{hint}")
    return dict(value)


def load_torch(module: Any, model_cfg: Any) -> None:
    """Load the configured weights into `module`; missing / unexpected keys and shape mismatches are ConfigErrors
    listing them (missing / unexpected only a warning with weights_strict=false)."""
    state = read_torch_state(model_cfg)
    own = module.state_dict()
    shapes = [f"{k} {list(v.shape)} vs model {list(own[k].shape)}" for k, v in state.items()
              if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if shapes:
        raise ConfigError(f"model.weights: {len(shapes)} tensor(s) of {Path(model_cfg.weights).name} do not fit the "
                          f"model's shapes: {_listed(shapes)}")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        detail = "; ".join(p for p in (f"missing keys {_listed(missing)}" if missing else "",
                                       f"unexpected keys {_listed(unexpected)}" if unexpected else "") if p)
        hint = _prefix_hint(list(own), unexpected)
        if model_cfg.weights_strict:
            raise ConfigError(f"model.weights: {Path(model_cfg.weights).name} does not match the model: {detail}"
                              f"{hint} (model.weights_strict=false loads what matches)")
        log.warning("model.weights (weights_strict=false): %s", detail)
    try:
        module.load_state_dict(state, strict=False)
    except Exception as exc:
        raise ConfigError(f"model.weights: {Path(model_cfg.weights).name} does not load: {one_line(exc)}") from None


def _prefix_hint(own: list[str], unexpected: list[str]) -> str:
    """A hint when the unexpected keys are the model's keys behind a common prefix (DataParallel's `module.`)."""
    if not unexpected or not own:
        return ""
    first = unexpected[0]
    for key in own:
        if first != key and first.endswith(key):
            prefix = first[: len(first) - len(key)]
            if prefix and all(k.startswith(prefix) for k in unexpected):
                return f"; the file's keys carry the prefix '{prefix}': set model.weights_strip_prefix={prefix}"
    return ""


def load_keras(model: Any, model_cfg: Any) -> None:
    """Load a .keras or .weights.h5 file's weights into the built Keras model; ConfigError when they do not fit."""
    if model_cfg.weights_key or model_cfg.weights_strip_prefix:
        raise ConfigError("model.weights_key and model.weights_strip_prefix apply to torch checkpoints only")
    try:
        model.load_weights(str(model_cfg.weights))
    except Exception as exc:
        raise ConfigError(f"model.weights: {Path(model_cfg.weights).name} does not load into model "
                          f"'{model_cfg.name}': {one_line(exc)}") from None
