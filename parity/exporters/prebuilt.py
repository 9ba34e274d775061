"""`exporter=prebuilt`: an ONNX file the user already has, run as it is; nothing is exported.

The file is never copied or written: backends load it where it lies, its external data is resolved and checked
in one place (parity.paths: only beside the model), and its identity is the SHA-256 of the file with its
external data (parity.artifact.onnx_files_sha256). `exporter.sha256` pins that identity: another file is an
ERROR, never a result. With a source model (torch, keras) the reference check runs the source model against
its golden as always; the backend check runs this file against the same golden.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from parity.artifact import onnx_files_sha256
from parity.errors import ConfigError
from parity.exporters.base import Exporter, ExporterConfig
from parity.paths import resolve_file
from parity.plugins import register

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class PrebuiltExporterConfig(ExporterConfig):
    """The ONNX file to run (`path`) and, optionally, the SHA-256 it must have (`sha256`)."""

    _target_: str = "parity.exporters.prebuilt.PrebuiltExporter"
    name: str = "prebuilt"
    path: Optional[str] = None  # the .onnx file; relative paths resolve against the directory parity starts in
    sha256: Optional[str] = None  # the file's SHA-256 (with its external data); another file is an ERROR

    def with_base_dir(self, base: Any) -> PrebuiltExporterConfig:
        return dataclasses.replace(self, path=resolve_file(self.path, base)) if self.path else self

    def validate(self) -> None:
        if not self.path:
            raise ConfigError(f"exporter '{self.name}' needs exporter.path=<file.onnx>: the ONNX file to run")
        if not Path(self.path).is_file():
            raise ConfigError(f"exporter.path: no such file {self.path}")
        if self.sha256 is not None and not _SHA256.fullmatch(str(self.sha256).lower()):
            raise ConfigError(f"exporter.sha256 '{self.sha256}' is not a SHA-256 (64 hexadecimal digits)")


@register
class PrebuiltExporter(Exporter):
    """Runs an existing ONNX file; takes a model of any framework (or none: an ONNX-only model)."""

    Config = PrebuiltExporterConfig
    schema = "base_prebuilt_exporter"
    source = "any"
    produces = "onnx"
    writes = False

    @classmethod
    def takes(cls, framework: str) -> bool:
        return True

    @property
    def dynamic_batch(self) -> bool:
        return True  # one file serves every batch size (a fixed batch in it is the runtime's error to report)

    def options(self) -> dict[str, Any]:
        return {"path": self.config.path, "sha256": self.config.sha256}

    def _export_impl(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
                     output_names: list[str], out_dir: Path, output_axes: Mapping[str, int | None]) -> Path:
        return Path(self.config.path)

    def identity(self, path: Path, out_dir: Path) -> tuple[str, tuple[str, ...], int]:
        return onnx_files_sha256(path)

    def refuse(self, path: Path, sha256: str) -> str | None:
        pinned = (self.config.sha256 or "").lower()
        if pinned and pinned != sha256:
            return (f"{path.name} has SHA-256 {sha256[:12]}…, exporter.sha256 pins {pinned[:12]}…: not the file that "
                    f"was pinned (set exporter.sha256={sha256} if the new file is intended)")
        return None

    def versions(self) -> dict[str, str]:
        import onnx

        return {"onnx": onnx.__version__}
