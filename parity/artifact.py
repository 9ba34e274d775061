"""What runs on a backend: an exported file on disk, or the live source model itself."""

from __future__ import annotations

import contextlib
import hashlib
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parity.results import ExportRecord


@dataclass
class Artifact:
    """A runnable form of the model.

    `kind` is what produced it: a framework's name ("torch", "keras": `module` is the live model, for eager
    backends) or an exporter's / transform's `produces` ("onnx": `path` to the .onnx file, with any external-data
    files beside it in the same directory). Backends declare the kinds they accept.
    """

    kind: str
    input_names: list[str]
    output_names: list[str]
    path: Path | None = None
    module: Any = None
    record: ExportRecord | None = None
    input_axes: dict[str, int] = field(default_factory=dict)  # batch axis of every input

    def failure(self) -> str | None:
        """Why this artifact cannot run (its export or transform failed), or None."""
        return self.record.failure() if self.record is not None else None

    @property
    def sha256(self) -> str | None:
        """The SHA-256 of what runs (the transformed file's when there is a transform); None for a live model."""
        return self.record.final_sha256 if self.record is not None else None


def hash_files(directory: Path) -> tuple[str, tuple[str, ...], int]:
    """SHA-256 of an artifact directory: of the file itself if there is one, else of every file's name and hash.

    Returns (sha256, relative file names, total size in bytes).
    """
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return _hash(files, tuple(str(p.relative_to(directory)) for p in files))


def onnx_files_sha256(path: Path) -> tuple[str, tuple[str, ...], int]:
    """The identity of an ONNX file somebody else wrote: the SHA-256 of the file, or with external data, of every
    file it reads (the model first, then each external-data file, names relative to its directory). External data
    is resolved and checked in one place (parity.paths.external_data_files: never outside the model's directory).

    Returns (sha256, relative file names, total size in bytes), as hash_files does.
    """
    from parity.paths import external_data_files

    base = path.resolve().parent
    files = [path.resolve(), *external_data_files(path)]
    return _hash(files, tuple(str(p.relative_to(base)) for p in files))


def _hash(files: list[Path], names: tuple[str, ...]) -> tuple[str, tuple[str, ...], int]:
    from parity.paths import sha256_file

    size = sum(p.stat().st_size for p in files)
    hashes = [sha256_file(p) for p in files]
    if len(files) == 1:
        return hashes[0], names, size
    combined = hashlib.sha256("".join(f"{n}\0{h}\n" for n, h in zip(names, hashes)).encode()).hexdigest()
    return combined, names, size


@contextlib.contextmanager
def captured_warnings(into: list[str]) -> Iterator[None]:
    """Run a conversion step with every Python warning recorded (one line each, no repeats, appended to `into`)
    and the converter's prints sent to stderr, so stdout keeps only parity's table."""
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                text = f"{w.category.__name__}: {(str(w.message).strip().splitlines() or [''])[0]}"
                if text not in into:
                    into.append(text)


def structure_sha256(path: Path) -> str:
    """SHA-256 of what an ONNX graph computes, blind to the names an exporter made up: nodes hashed in graph
    order by op type, domain, attributes and inputs/outputs, with every tensor that is not a graph input or
    output renamed by first use; initializers by value. Two exports of the same model whose only difference is
    naming (tf2onnx's `const_axes__47` vs `__43`) hash the same; any change to an op, a weight or the wiring
    does not."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    initializers = {t.name: t for t in graph.initializer}
    canonical: dict[str, str] = {}
    digest = hashlib.sha256()

    def name_of(tensor: str) -> str:
        if tensor == "" or tensor in keep:
            return tensor
        if tensor not in canonical:
            canonical[tensor] = f"t{len(canonical)}"
            if tensor in initializers:  # its value, where it is first used
                array = numpy_helper.to_array(initializers[tensor])
                digest.update(f"init {canonical[tensor]} {array.dtype} {array.shape}\n".encode())
                digest.update(array.tobytes())
        return canonical[tensor]

    for value in (*graph.input, *graph.output):
        digest.update(value.SerializeToString())
    for opset in sorted((o.domain, o.version) for o in model.opset_import):
        digest.update(f"opset {opset}\n".encode())
    for node in graph.node:
        ins, outs = [name_of(t) for t in node.input], [name_of(t) for t in node.output]
        attributes = sorted((a.name, a.SerializeToString()) for a in node.attribute)
        digest.update(f"node {node.domain}:{node.op_type} {ins} -> {outs}\n".encode())
        for attribute_name, data in attributes:
            digest.update(attribute_name.encode() + b"=" + data)
    return digest.hexdigest()
