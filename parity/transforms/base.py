"""The transform contract: one artifact in, another out; apply() never raises. And `none`, the identity."""

from __future__ import annotations

import dataclasses
import logging
import time
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from parity.artifact import Artifact, captured_warnings, hash_files
from parity.errors import one_line
from parity.plugins import Plugin, PluginConfig, register

log = logging.getLogger("parity")
MAX_WARNINGS = 20


@dataclass
class TransformConfig(PluginConfig):
    """A post-export step on the artifact."""


class Transform(Plugin):
    """Turns one artifact (of kind `takes`) into another (of kind `produces`) in a directory of its own.

    Subclasses implement `_apply_impl` (write the new artifact, return its main file) and `versions`.
    Like an exporter, `apply` never raises: a failure is recorded and the backend check becomes an ERROR.
    """

    group = "transform"
    Config: ClassVar[type[TransformConfig]] = TransformConfig
    takes: ClassVar[str] = "onnx"
    produces: ClassVar[str] = "onnx"
    identity: ClassVar[bool] = False  # True for `none`: the artifact runs as exported
    # whether the result depends on the calibration samples (the export cache's key then includes them); a
    # transform of your own is assumed to, unless it says otherwise
    calibrates: ClassVar[bool] = True

    def availability(self) -> str | None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"transform '{self.name}' needs onnx and onnxruntime ({one_line(exc)})"
        return None

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self.config).items() if k not in ("_target_", "name")}

    def versions(self) -> dict[str, str]:
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__}

    @abstractmethod
    def _apply_impl(self, source: Path, out_dir: Path, calibration: Mapping[str, np.ndarray],
                    batch_size: int | None, input_axes: Mapping[str, int]) -> Path:
        """Write the transformed model of `source` into `out_dir` (external data may go beside it); its path."""

    def apply(self, artifact: Artifact, calibration: Mapping[str, np.ndarray], out_dir: Path) -> Artifact:
        """The transformed artifact; on failure the same artifact with the failure in its record."""
        if self.identity or artifact.kind != self.takes or artifact.record is None or not artifact.record.ok:
            return artifact
        out_dir.mkdir(parents=True, exist_ok=True)
        captured: list[str] = []
        error, target = None, None
        start = time.perf_counter()
        log.info("transforming the artifact: %s", self.name)
        try:
            with captured_warnings(captured):
                target = Path(self._apply_impl(Path(artifact.path), out_dir, calibration, artifact.record.batch_size,
                                               artifact.input_axes))
            if not target.is_file():
                raise FileNotFoundError(f"transform finished but wrote no {target.name}")
        except Exception as exc:  # the transform's fault becomes an ERROR verdict, not a crash
            error = one_line(exc)
        record: dict[str, Any] = {
            "name": self.name, "ok": error is None, "error": error, "options": self.options(),
            "seconds": time.perf_counter() - start, "versions": self.versions(),
            "warnings": captured[:MAX_WARNINGS], "path": None, "files": [], "sha256": None, "size_bytes": None,
        }
        if error is None:
            sha, files, size = hash_files(out_dir)
            record.update(path=str(target), files=list(files), sha256=sha, size_bytes=size)
            log.info("transformed %s (sha256 %s…, %.1f MB, was %.1f MB)", target, sha[:12], size / 1e6,
                     (artifact.record.size_bytes or 0) / 1e6)
        new_record = dataclasses.replace(artifact.record, transform=record)
        return dataclasses.replace(artifact, kind=self.produces if error is None else artifact.kind,
                                   path=target if error is None else artifact.path, record=new_record)


@dataclass
class NoTransformConfig(TransformConfig):
    _target_: str = "parity.transforms.base.NoTransform"
    name: str = "none"


@register
class NoTransform(Transform):
    """The artifact as exported."""

    Config = NoTransformConfig
    schema = "base_none_transform"
    identity = True

    def availability(self) -> str | None:
        return None

    def _apply_impl(self, source: Path, out_dir: Path, calibration: Mapping[str, np.ndarray],
                    batch_size: int | None, input_axes: Mapping[str, int]) -> Path:
        raise AssertionError("NoTransform is never applied")
