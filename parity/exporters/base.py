"""The exporter contract: export() never raises; failures come back as a record with ok=False."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from parity.artifact import Artifact, captured_warnings, hash_files
from parity.errors import one_line
from parity.results import ExportRecord

MAX_WARNINGS = 20
log = logging.getLogger("parity")


class Exporter(ABC):
    """Converts a source model into an ONNX artifact inside a directory of its own.

    Subclasses implement `_export_impl` (write the file, return its path) and `versions`.
    """

    source: ClassVar[str] = "torch"  # the model framework this exporter takes (parity.frameworks)

    def __init__(
        self,
        name: str,
        opset: int | None = None,
        dynamic_batch: bool = True,
        constant_folding: bool = True,
        optimize: bool = True,
        external_data: bool = True,
    ) -> None:
        self.name = name
        self.opset = opset
        self.dynamic_batch = dynamic_batch
        self.constant_folding = constant_folding
        self.optimize = optimize
        self.external_data = external_data

    def availability(self) -> str | None:
        """None when this exporter can run here, else the reason it cannot (the backend check becomes a SKIP)."""
        return None

    def options(self) -> dict[str, Any]:
        return {
            "opset": self.opset,
            "dynamic_batch": self.dynamic_batch,
            "constant_folding": self.constant_folding,
            "optimize": self.optimize,
            "external_data": self.external_data,
        }

    @abstractmethod
    def _export_impl(
        self,
        model: Any,
        example: Mapping[str, np.ndarray],
        input_axes: Mapping[str, int],
        output_names: list[str],
        path: Path,
        output_axes: Mapping[str, int | None],
    ) -> None:
        """Write the ONNX model to `path` (external data may go beside it).

        `example` is in declared input order; `input_axes` / `output_axes` give each batch axis
        (an output's may be None: not batched).
        """

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the libraries doing the export."""

    def export(
        self,
        model: Any,
        example: Mapping[str, np.ndarray],
        input_axes: Mapping[str, int],
        output_names: list[str],
        out_dir: Path,
        batch_size: int | None,
        output_axes: Mapping[str, int | None] | None = None,
    ) -> Artifact:
        """Export into `out_dir`; records hash, size, time, warnings. Never raises for exporter faults."""
        axes_out = dict(output_axes) if output_axes is not None else {name: 0 for name in output_names}
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "model.onnx"
        captured: list[str] = []
        start = time.perf_counter()
        error = None
        try:
            with captured_warnings(captured):
                self._export_impl(model, example, input_axes, output_names, path, axes_out)
            if not path.is_file():
                raise FileNotFoundError(f"exporter finished but wrote no {path.name}")
        except Exception as exc:  # the exporter's fault becomes an ERROR verdict, not a crash
            error = one_line(exc)
        seconds = time.perf_counter() - start
        record_kwargs: dict[str, Any] = {
            "exporter": self.name,
            "batch_size": None if self.dynamic_batch else batch_size,
            "seconds": seconds,
            "versions": self.versions(),
            "warnings": tuple(captured[:MAX_WARNINGS]),
            "options": self.options(),
        }
        if error is not None:
            record = ExportRecord(ok=False, error=error, **record_kwargs)
            return Artifact(kind="onnx", input_names=list(example), output_names=output_names, record=record)
        sha, files, size = hash_files(out_dir)
        opset = _opset_of(path)
        if self.opset is not None and opset is not None and opset != self.opset:
            note = f"parity: opset {self.opset} was requested but the artifact declares opset {opset}"
            log.warning("%s (%s exporter)", note, self.name)
            record_kwargs["warnings"] = (note, *record_kwargs["warnings"])
        record = ExportRecord(
            ok=True, path=str(path), files=files, sha256=sha, size_bytes=size, opset=opset, **record_kwargs
        )
        return Artifact(
            kind="onnx",
            input_names=list(example),
            output_names=output_names,
            path=path,
            record=record,
            input_axes=dict(input_axes),
        )


def _opset_of(path: Path) -> int | None:
    """The default-domain opset of an ONNX file (external data not loaded)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    except Exception:
        return None
