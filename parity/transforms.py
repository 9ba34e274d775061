"""Post-export transforms of the ONNX artifact: fp16 conversion and ONNX Runtime INT8 quantization.

A transform takes the exported artifact and writes a new one beside it; the backend runs the new one, and the
export record carries both: the original's path/SHA-256/size and, under `transform`, the transformed one's.
Like an exporter, `apply` never raises: a failure is recorded and the backend check becomes an ERROR.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from parity.artifact import Artifact, captured_warnings, hash_files
from parity.errors import ConfigError, one_line

log = logging.getLogger("parity")
MAX_WARNINGS = 20


class Transform(ABC):
    """Turns one ONNX artifact into another in `out_dir`."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def identity(self) -> bool:
        """True for `none`: the artifact is used as exported."""
        return False

    def availability(self) -> str | None:
        """None when the transform can run here, else why not (the backend check becomes a SKIP)."""
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"transform '{self.name}' needs onnx and onnxruntime ({one_line(exc)})"
        return None

    def options(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def _apply_impl(self, source: Path, target: Path, calibration: Mapping[str, np.ndarray],
                    batch_size: int | None, input_axes: Mapping[str, int]) -> None:
        """Write the transformed model of `source` to `target` (external data may go beside it)."""

    def apply(self, artifact: Artifact, calibration: Mapping[str, np.ndarray], out_dir: Path) -> Artifact:
        """The transformed artifact; on failure the same artifact with the failure in its record."""
        if self.identity or artifact.kind != "onnx" or artifact.record is None or not artifact.record.ok:
            return artifact
        import onnxruntime

        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / "model.onnx"
        captured: list[str] = []
        error = None
        start = time.perf_counter()
        log.info("transforming the artifact: %s", self.name)
        try:
            with captured_warnings(captured):
                self._apply_impl(Path(artifact.path), target, calibration, artifact.record.batch_size,
                                 artifact.input_axes)
            if not target.is_file():
                raise FileNotFoundError(f"transform finished but wrote no {target.name}")
        except Exception as exc:  # the transform's fault becomes an ERROR verdict, not a crash
            error = one_line(exc)
        record: dict[str, Any] = {
            "name": self.name, "ok": error is None, "error": error, "options": self.options(),
            "seconds": time.perf_counter() - start, "versions": {"onnxruntime": onnxruntime.__version__},
            "warnings": captured[:MAX_WARNINGS], "path": None, "files": [], "sha256": None, "size_bytes": None,
        }
        if error is None:
            sha, files, size = hash_files(out_dir)
            record.update(path=str(target), files=list(files), sha256=sha, size_bytes=size)
            log.info("transformed %s (sha256 %s…, %.1f MB, was %.1f MB)", target, sha[:12], size / 1e6,
                     (artifact.record.size_bytes or 0) / 1e6)
        new_record = dataclasses.replace(artifact.record, transform=record)
        return dataclasses.replace(artifact, path=target if error is None else artifact.path, record=new_record)


class NoTransform(Transform):
    """The artifact as exported."""

    @property
    def identity(self) -> bool:
        return True

    def availability(self) -> str | None:
        return None

    def _apply_impl(self, source: Path, target: Path, calibration: Mapping[str, np.ndarray],
                    batch_size: int | None, input_axes: Mapping[str, int]) -> None:
        raise AssertionError("NoTransform is never applied")


class Float16Transform(Transform):
    """Every float32 tensor of the graph to float16 (onnxruntime.transformers.float16); I/O kept float32 by default."""

    def __init__(self, name: str, keep_io_types: bool = True, op_block_list: list[str] | None = None) -> None:
        super().__init__(name)
        self.keep_io_types = keep_io_types
        self.op_block_list = list(op_block_list) if op_block_list is not None else None

    def options(self) -> dict[str, Any]:
        return {"keep_io_types": self.keep_io_types, "op_block_list": self.op_block_list}

    def _apply_impl(self, source: Path, target: Path, calibration: Mapping[str, np.ndarray],
                    batch_size: int | None, input_axes: Mapping[str, int]) -> None:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = onnx.load(str(source))  # external data (dynamo) is read from beside the file
        kwargs: dict[str, Any] = {"keep_io_types": self.keep_io_types}
        if self.op_block_list is not None:
            kwargs["op_block_list"] = self.op_block_list
        onnx.save(convert_float_to_float16(model, **kwargs), str(target))


_QUANT_TYPES = {"qint8": "QInt8", "quint8": "QUInt8"}
_CALIBRATION = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


class _Quantize(Transform):
    def __init__(self, name: str, per_channel: bool = False, reduce_range: bool = False, weight_type: str = "qint8",
                 activation_type: str = "quint8", calibrate_method: str = "minmax",
                 calibration_samples: int | None = None, op_types: list[str] | None = None,
                 preprocess: bool = True) -> None:
        super().__init__(name)
        for key, value, allowed in (("weight_type", weight_type, _QUANT_TYPES),
                                    ("activation_type", activation_type, _QUANT_TYPES),
                                    ("calibrate_method", calibrate_method, _CALIBRATION)):
            if value not in allowed:
                raise ConfigError(f"transform '{name}': {key} '{value}' is not one of {sorted(allowed)}")
        if calibration_samples is not None and calibration_samples < 1:
            raise ConfigError(f"transform '{name}': calibration_samples must be >= 1, got {calibration_samples}")
        self.per_channel = per_channel
        self.reduce_range = reduce_range
        self.weight_type = weight_type
        self.activation_type = activation_type
        self.calibrate_method = calibrate_method
        self.calibration_samples = calibration_samples
        self.op_types = list(op_types) if op_types is not None else None
        self.preprocess = preprocess

    @contextlib.contextmanager
    def _prepared(self, source: Path) -> Iterator[tuple[Path, list[str]]]:
        """The model to quantize: onnxruntime's quant_pre_process output when it works, else the source."""
        notes: list[str] = []
        if not self.preprocess:
            yield source, notes
            return
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with tempfile.TemporaryDirectory(prefix="parity-quant-") as tmp:
            prepared: Path = Path(tmp) / "preprocessed.onnx"
            try:
                quant_pre_process(str(source), str(prepared))
            except Exception as exc:  # some graphs defeat symbolic shape inference: quantize the export as it is
                notes.append(f"parity: quant_pre_process failed ({one_line(exc)}); quantized without it")
                log.warning(notes[-1])
                prepared = source
            yield prepared, notes

    def _qtype(self, key: str) -> Any:
        from onnxruntime.quantization import QuantType

        return getattr(QuantType, _QUANT_TYPES[key])


class DynamicQuantizeTransform(_Quantize):
    """onnxruntime.quantization.quantize_dynamic: weights to INT8 ahead of time, activations at run time."""

    def options(self) -> dict[str, Any]:
        return {"per_channel": self.per_channel, "reduce_range": self.reduce_range, "weight_type": self.weight_type,
                "op_types": self.op_types, "preprocess": self.preprocess}

    def _apply_impl(self, source: Path, target: Path, calibration: Mapping[str, np.ndarray],
                    batch_size: int | None, input_axes: Mapping[str, int]) -> None:
        from onnxruntime.quantization import quantize_dynamic

        with self._prepared(source) as (model, notes):
            for note in notes:
                warnings.warn(note, stacklevel=1)
            quantize_dynamic(str(model), str(target), op_types_to_quantize=self.op_types,
                             per_channel=self.per_channel, reduce_range=self.reduce_range,
                             weight_type=self._qtype(self.weight_type))


class StaticQuantizeTransform(_Quantize):
    """onnxruntime.quantization.quantize_static in QDQ format, calibrated on the input set's samples."""

    def options(self) -> dict[str, Any]:
        return {"format": "QDQ", "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "weight_type": self.weight_type, "activation_type": self.activation_type,
                "calibrate_method": self.calibrate_method, "calibration_samples": self.calibration_samples,
                "op_types": self.op_types, "preprocess": self.preprocess}

    def _apply_impl(self, source: Path, target: Path, calibration: Mapping[str, np.ndarray],
                    batch_size: int | None, input_axes: Mapping[str, int]) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

        reader = _CalibrationReader(calibration, input_axes, batch_size, self.calibration_samples)
        with self._prepared(source) as (model, notes):
            for note in notes:
                warnings.warn(note, stacklevel=1)
            quantize_static(str(model), str(target), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=self.op_types, per_channel=self.per_channel,
                            reduce_range=self.reduce_range, activation_type=self._qtype(self.activation_type),
                            weight_type=self._qtype(self.weight_type),
                            calibrate_method=getattr(CalibrationMethod, _CALIBRATION[self.calibrate_method]))


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over the input set: one sample per batch for a dynamic-batch
    export, batches of the export's own size (samples repeated if there are too few) for a static one."""

    def __init__(self, arrays: Mapping[str, np.ndarray], axes: Mapping[str, int], batch_size: int | None,
                 limit: int | None) -> None:
        if not arrays:
            raise ValueError("static quantization needs calibration inputs, and the input set is empty")
        total = next(iter(arrays.values())).shape[axes.get(next(iter(arrays)), 0)]
        count = min(total, limit) if limit else total
        step = batch_size or 1
        batches = []
        for start in range(0, count, step):
            index = np.arange(start, start + step) % total
            batches.append({name: np.ascontiguousarray(np.take(a, index, axis=axes.get(name, 0)))
                            for name, a in arrays.items()})
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # part of the protocol in newer releases; one pass is all parity needs
        return None
