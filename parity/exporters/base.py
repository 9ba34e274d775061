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

from parity.artifact import Artifact, captured_warnings, hash_files, structure_sha256
from parity.errors import ConfigError, one_line
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
    # an artifact declaring another opset than `opset` is an export ERROR unless this is true (then a warning)
    allow_opset_fallback: bool = False

    def validate(self) -> None:
        if self.opset is None:
            return
        try:
            import onnx
        except ImportError:  # the export itself will say onnx is missing; only the lower bound is known here
            known, newest = "opsets start at 1", None
        else:
            newest = int(onnx.defs.onnx_opset_version())
            known = f"onnx {onnx.__version__} knows opsets 1 to {newest}"
        if self.opset < 1 or (newest is not None and self.opset > newest):
            raise ConfigError(f"exporter '{self.name}': opset {self.opset} does not exist ({known})")

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
    deterministic: ClassVar[bool] = True  # False: the same config can give other bytes (generated names)
    writes: ClassVar[bool] = True  # False: runs a file it did not write (exporter=prebuilt)

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.config.dynamic_batch)

    def options(self) -> dict[str, Any]:
        """The settings this export ran with, for the record."""
        return {k: v for k, v in dataclasses.asdict(self.config).items() if k not in ("_target_", "name")}

    @classmethod
    def takes(cls, framework: str) -> bool:
        """Whether this exporter takes models of `framework` (its `source`)."""
        return cls.source == framework

    def identity(self, path: Path, out_dir: Path) -> tuple[str, tuple[str, ...], int]:
        """(sha256, file names, size in bytes) of what the export wrote: every file of `out_dir`."""
        return hash_files(out_dir)

    def refuse(self, path: Path, sha256: str) -> str | None:
        """Why an artifact with this identity may not run (a pinned hash it does not have), or None."""
        return None

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
            "deterministic": self.deterministic,
        }
        def failed(reason: str | None, **found: Any) -> Artifact:
            record = ExportRecord(ok=False, error=reason, **found, **record_kwargs)
            return Artifact(kind=self.produces, input_names=list(example), output_names=output_names, record=record)

        if error is not None or path is None:
            return failed(error)
        opset = None
        if self.produces == "onnx":
            import onnx

            try:
                proto = onnx.load(str(path), load_external_data=False)  # the graph only, read once for both checks
            except Exception as exc:
                return failed(f"{path.name} is not an ONNX model: {one_line(exc)}", path=str(path))
            mismatch = graph_inputs_mismatch(proto, list(example))
            if mismatch is not None:
                return failed(mismatch, path=str(path))
            opset = next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        requested = self.requested_opset()
        if requested is not None and opset is not None and opset != requested:
            note = f"opset {requested} was requested but the {self.name} exporter wrote opset {opset}"
            if not getattr(self.config, "allow_opset_fallback", False):
                return failed(f"{note}; exporter.allow_opset_fallback=true accepts that", path=str(path), opset=opset)
            log.warning("%s (allowed: exporter.allow_opset_fallback)", note)
            record_kwargs["warnings"] = (note, *record_kwargs["warnings"])
        try:
            sha, files, size = self.identity(path, out_dir)
        except Exception as exc:  # e.g. external data outside the model's directory (parity.paths)
            return failed(one_line(exc), path=str(path), opset=opset)
        refused = self.refuse(path, sha)
        if refused is not None:
            return failed(refused, path=str(path), opset=opset, sha256=sha)
        structure = structure_sha256(path) if self.produces == "onnx" else None
        record = ExportRecord(ok=True, path=str(path), files=files, sha256=sha, size_bytes=size, opset=opset,
                              structure_sha256=structure, **record_kwargs)
        return Artifact(kind=self.produces, input_names=list(example), output_names=output_names, path=path,
                        record=record, input_axes=dict(input_axes))


def graph_inputs_mismatch(model: Any, declared: list[str]) -> str | None:
    """Why a loaded ONNX model's graph inputs (initializers left out) are not the declared inputs, or None.

    An exporter that cannot follow the model's forward (a round trip through numpy, say) may write a graph of
    constants with no inputs at all: it would reproduce its export example whatever it is fed, so it is an
    error, never a result. (Backend.prepare asks the same of every ONNX artifact a backend loads.)"""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    actual = [i.name for i in graph.input if i.name not in initializers]
    if sorted(actual) == sorted(declared):
        return None
    missing, extra = [n for n in declared if n not in actual], [n for n in actual if n not in declared]
    detail = "; ".join(part for part in (f"missing {missing}" if missing else "", f"extra {extra}" if extra else "")
                       if part)
    hint = " (the exporter could not follow the model's forward: it ignores its inputs)" if not actual else ""
    return f"the exported graph's inputs {actual} differ from the declared inputs {declared}: {detail}{hint}"
