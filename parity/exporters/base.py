"""The exporter contract: a source model in, an artifact directory out; export() never raises."""

from __future__ import annotations

import dataclasses
import logging
import time
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from parity.artifact import Artifact, captured_warnings, hash_files
from parity.errors import one_line
from parity.plugins import Plugin, PluginConfig
from parity.results import ExportRecord

MAX_WARNINGS = 20
log = logging.getLogger("parity")


@dataclass
class ExporterConfig(PluginConfig):
    """What every exporter takes: whether one export serves every batch size."""

    dynamic_batch: bool = True  # False: an export per batch size, each with a fixed batch


@dataclass
class OnnxExporterConfig(ExporterConfig):
    """An exporter writing ONNX: the opset it targets and whether it folds constants."""

    opset: Optional[int] = None  # None: the exporter's default
    constant_folding: bool = True

    def with_numerics(self, numerics: Any) -> OnnxExporterConfig:
        """numerics.export_constant_folding (seed 003's strict set turns it off) overrides constant_folding."""
        if numerics.export_constant_folding is None:
            return self
        return dataclasses.replace(self, constant_folding=bool(numerics.export_constant_folding))


class Exporter(Plugin):
    """Converts a source model into an artifact inside a directory of its own.

    Declares `source`, the framework of the models it takes (parity.frameworks), and `produces`, the artifact
    kind it writes (backends declare the kinds they accept). Subclasses implement `_export_impl` (write the
    artifact, return its main file) and `versions`.
    """

    group = "exporter"
    Config: ClassVar[type[ExporterConfig]] = ExporterConfig
    source: ClassVar[str] = "torch"
    produces: ClassVar[str] = "onnx"

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.config.dynamic_batch)

    def options(self) -> dict[str, Any]:
        """The settings this export ran with, for the record."""
        return {k: v for k, v in dataclasses.asdict(self.config).items() if k not in ("_target_", "name")}

    def requested_opset(self) -> int | None:
        """The opset the config asks for, when this exporter has one."""
        return getattr(self.config, "opset", None)

    @abstractmethod
    def _export_impl(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
                     output_names: list[str], out_dir: Path, output_axes: Mapping[str, int | None]) -> Path:
        """Write the artifact into `out_dir` (other files, e.g. external data, may go beside it); return its path.

        `example` is in declared input order; `input_axes` / `output_axes` give each batch axis
        (an output's may be None: not batched).
        """

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the libraries doing the export."""

    def export(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
               output_names: list[str], out_dir: Path, batch_size: int | None,
               output_axes: Mapping[str, int | None] | None = None) -> Artifact:
        """Export into `out_dir`; records hash, size, time, warnings. Never raises for exporter faults."""
        axes_out = dict(output_axes) if output_axes is not None else {name: 0 for name in output_names}
        out_dir.mkdir(parents=True, exist_ok=True)
        captured: list[str] = []
        start = time.perf_counter()
        error, path = None, None
        try:
            with captured_warnings(captured):
                path = Path(self._export_impl(model, example, input_axes, output_names, out_dir, axes_out))
            if not path.is_file():
                raise FileNotFoundError(f"exporter finished but wrote no {path.name}")
        except Exception as exc:  # the exporter's fault becomes an ERROR verdict, not a crash
            error = one_line(exc)
        record_kwargs: dict[str, Any] = {
            "exporter": self.name,
            "batch_size": None if self.dynamic_batch else batch_size,
            "seconds": time.perf_counter() - start,
            "versions": self.versions(),
            "warnings": tuple(captured[:MAX_WARNINGS]),
            "options": self.options(),
        }
        if error is not None or path is None:
            record = ExportRecord(ok=False, error=error, **record_kwargs)
            return Artifact(kind=self.produces, input_names=list(example), output_names=output_names, record=record)
        sha, files, size = hash_files(out_dir)
        opset = _opset_of(path) if self.produces == "onnx" else None
        requested = self.requested_opset()
        if requested is not None and opset is not None and opset != requested:
            note = f"parity: opset {requested} was requested but the artifact declares opset {opset}"
            log.warning("%s (%s exporter)", note, self.name)
            record_kwargs["warnings"] = (note, *record_kwargs["warnings"])
        record = ExportRecord(ok=True, path=str(path), files=files, sha256=sha, size_bytes=size, opset=opset,
                              **record_kwargs)
        return Artifact(kind=self.produces, input_names=list(example), output_names=output_names, path=path,
                        record=record, input_axes=dict(input_axes))


def _opset_of(path: Path) -> int | None:
    """The default-domain opset of an ONNX file (external data not loaded)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    except Exception:
        return None
