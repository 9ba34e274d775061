"""Path safety: names that become one directory, targets that must stay below a root, ONNX external data.

Every place that turns a user's string into a path goes through here, so one set of tested rules decides what
may be read or written: a model or input-set name is one plain path segment; a write target, with symlinks
resolved, lies below its root; an ONNX model's external-data files lie in the model's own directory.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from parity.errors import ConfigError, ParityError

MAX_NAME = 100  # characters of a model / input-set / report name: room for prefixes in a 255-byte file name
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def check_segment(value: object, what: str, example: str = "default") -> str:
    """`value` if it is one safe path segment: non-empty, at most MAX_NAME characters of letters, digits and
    `_ . + -`, not starting with `.` (so never `.`, `..` or a hidden name); else a one-line ConfigError."""
    text = "" if value is None else str(value)
    if not text:
        raise ConfigError(f"{what} is empty; it becomes a file or directory name, so it must be a plain name "
                          f"such as '{example}'")
    if len(text) > MAX_NAME:
        raise ConfigError(f"{what} is {len(text)} characters long; at most {MAX_NAME} are allowed")
    if not _SEGMENT.fullmatch(text):
        raise ConfigError(f"{what} '{text}' must be one plain name such as '{example}': letters, digits and "
                          f"'_ . + -', not starting with '.', no '/' (it becomes a file or directory name)")
    return text


def label(value: object, limit: int = 40) -> str:
    """`value` made safe for a directory name: unsafe characters become `_`, at most `limit` characters."""
    text = re.sub(r"[^A-Za-z0-9_.+-]", "_", str(value)).lstrip(".") or "_"
    return text[:limit]


def cache_dir(name: str) -> Path:
    """parity's cache directory `name`: $PARITY_CACHE/name, else ~/.cache/parity/name."""
    root = os.environ.get("PARITY_CACHE")
    return Path(root).expanduser() / name if root else Path.home() / ".cache" / "parity" / name


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_file(value: str, base: Path) -> str:
    """A configured file path made absolute: `~` expanded, a relative one taken against `base` (the directory
    parity was started in)."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else Path(base) / path)


def is_within(path: Path, root: Path) -> bool:
    """Whether `path` is `root` or below it, both with symlinks resolved."""
    path, root = path.resolve(), root.resolve()
    return path == root or root in path.parents


def protected_roots(env_value: str | None) -> list[Path]:
    """The resolved roots an os.pathsep-separated environment value names."""
    return [Path(p).resolve() for p in (env_value or "").split(os.pathsep) if p]


def under_any(path: Path, roots: Iterable[Path]) -> Path | None:
    """The first of `roots` that `path` (resolved) lies in, or None."""
    resolved = path.resolve()
    return next((r for r in roots if resolved == r or r in resolved.parents), None)


class ExternalDataError(ParityError):
    """An ONNX model references external data outside its own directory, or data that is missing."""


def external_data_files(model_path: Path, model: Any = None) -> list[Path]:
    """The external-data files an ONNX model references, in reference order without repeats, each resolved and
    checked to lie in the model's own directory (as ONNX Runtime and onnx require); ExternalDataError for a
    location that is absolute, climbs out (`..`, a symlink leaving the directory) or does not exist.
    Reads only the model's own file for that (never a referenced location before it is checked); `model`: that
    file already loaded without its external data."""
    import onnx

    if model is None:
        model = onnx.load(str(model_path), load_external_data=False)
    base = model_path.resolve().parent
    seen: list[Path] = []
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if not location:
            raise ExternalDataError(f"{model_path}: tensor '{tensor.name}' is external but names no location")
        target = resolve_external(base, location, model_path, tensor.name)
        if target not in seen:
            seen.append(target)
    return seen


def resolve_external(base: Path, location: str, model_path: Path, tensor: str) -> Path:
    """One external-data location, resolved against the model's directory `base` and refused outside it."""
    if os.path.isabs(location) or Path(location).is_absolute():
        raise ExternalDataError(f"{model_path}: tensor '{tensor}' reads external data from an absolute path "
                                f"'{location}'; only files beside the model are allowed")
    target = (base / location).resolve()
    if base not in target.parents:
        raise ExternalDataError(f"{model_path}: tensor '{tensor}' reads external data from '{location}', "
                                f"outside the model's directory {base}; refused")
    if not target.is_file():
        raise ExternalDataError(f"{model_path}: external data file '{location}' of tensor '{tensor}' is missing")
    return target


def _tensors(graph):  # every initializer and Constant-node tensor, subgraphs included
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors(sub)
