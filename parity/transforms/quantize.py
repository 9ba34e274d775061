"""ONNX Runtime INT8 quantization: dynamic (weights ahead of time) and static (QDQ, calibrated on the input set)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from parity.errors import ConfigError, one_line
from parity.inputs import contiguous
from parity.plugins import register
from parity.transforms.base import Transform, TransformConfig

log = logging.getLogger("parity")
_QUANT_TYPES = {"qint8": "QInt8", "quint8": "QUInt8"}
_CALIBRATION = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


@dataclass
class DynamicQuantizeConfig(TransformConfig):
    _target_: str = "parity.transforms.quantize.DynamicQuantizeTransform"
    name: str = "int8_dynamic"
    per_channel: bool = False
    reduce_range: bool = False
    weight_type: str = "qint8"  # qint8 | quint8
    op_types: Optional[list[str]] = None  # None: every op type the quantizer supports
    preprocess: bool = True  # run onnxruntime's quant_pre_process (shape inference + optimisation) first

    def validate(self) -> None:
        _one_of(self.name, "weight_type", self.weight_type, _QUANT_TYPES)


@dataclass
class StaticQuantizeConfig(DynamicQuantizeConfig):
    _target_: str = "parity.transforms.quantize.StaticQuantizeTransform"
    name: str = "int8_static"
    activation_type: str = "quint8"  # qint8 | quint8
    calibrate_method: str = "minmax"  # minmax | entropy | percentile
    calibration_samples: Optional[int] = None  # None: every sample of the input set

    def validate(self) -> None:
        super().validate()
        _one_of(self.name, "activation_type", self.activation_type, _QUANT_TYPES)
        _one_of(self.name, "calibrate_method", self.calibrate_method, _CALIBRATION)
        if self.calibration_samples is not None and self.calibration_samples < 1:
            raise ConfigError(f"transform '{self.name}': calibration_samples must be >= 1, "
                              f"got {self.calibration_samples}")


def _one_of(name: str, key: str, value: str, allowed: Mapping[str, str]) -> None:
    if value not in allowed:
        raise ConfigError(f"transform '{name}': {key} '{value}' is not one of {sorted(allowed)}")


class _Quantize(Transform):
    @contextlib.contextmanager
    def _prepared(self, source: Path) -> Iterator[Path]:
        """The model to quantize: onnxruntime's quant_pre_process output when it works, else the source."""
        if not self.config.preprocess:
            yield source
            return
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with tempfile.TemporaryDirectory(prefix="parity-quant-") as tmp:
            prepared: Path = Path(tmp) / "preprocessed.onnx"
            try:
                quant_pre_process(str(source), str(prepared))
            except Exception as exc:  # some graphs defeat symbolic shape inference: quantize the export as it is
                note = f"parity: quant_pre_process failed ({one_line(exc)}); quantized without it"
                log.warning(note)
                warnings.warn(note, stacklevel=1)
                prepared = source
            yield prepared

    def _qtype(self, key: str) -> Any:
        from onnxruntime.quantization import QuantType

        return getattr(QuantType, _QUANT_TYPES[key])


@register
class DynamicQuantizeTransform(_Quantize):
    """onnxruntime.quantization.quantize_dynamic: weights to INT8 ahead of time, activations at run time."""

    Config = DynamicQuantizeConfig
    schema = "base_dynamic_quantize_transform"
    calibrates = False  # the calibration samples do not enter the result

    def _apply_impl(self, source: Path, out_dir: Path, calibration: Mapping[str, np.ndarray],
                    batch_size: int | None, input_axes: Mapping[str, int]) -> Path:
        from onnxruntime.quantization import quantize_dynamic

        target, c = out_dir / "model.onnx", self.config
        with self._prepared(source) as model:
            quantize_dynamic(str(model), str(target), op_types_to_quantize=c.op_types, per_channel=c.per_channel,
                             reduce_range=c.reduce_range, weight_type=self._qtype(c.weight_type))
        return target


@register
class StaticQuantizeTransform(_Quantize):
    """onnxruntime.quantization.quantize_static in QDQ format, calibrated on the input set's samples."""

    Config = StaticQuantizeConfig
    schema = "base_static_quantize_transform"

    def options(self) -> dict[str, Any]:
        return {"format": "QDQ", **super().options()}

    def _apply_impl(self, source: Path, out_dir: Path, calibration: Mapping[str, np.ndarray],
                    batch_size: int | None, input_axes: Mapping[str, int]) -> Path:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

        target, c = out_dir / "model.onnx", self.config
        reader = _CalibrationReader(calibration, input_axes, batch_size, c.calibration_samples)
        with self._prepared(source) as model:
            quantize_static(str(model), str(target), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=c.op_types, per_channel=c.per_channel,
                            reduce_range=c.reduce_range, activation_type=self._qtype(c.activation_type),
                            weight_type=self._qtype(c.weight_type),
                            calibrate_method=getattr(CalibrationMethod, _CALIBRATION[c.calibrate_method]))
        return target


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over the input set: one sample per batch for a dynamic-batch
    export, batches of the export's own size (samples repeated if there are too few) for a static one."""

    def __init__(self, arrays: Mapping[str, np.ndarray], axes: Mapping[str, int | None], batch_size: int | None,
                 limit: int | None) -> None:
        if not arrays:
            raise ValueError("static quantization needs calibration inputs, and the input set is empty")
        batched = next((n for n in arrays if axes.get(n, 0) is not None), None)  # None: no input has a batch axis
        total = arrays[batched].shape[axes.get(batched, 0)] if batched is not None else 1
        count = min(total, limit) if limit else total
        step = batch_size or 1
        batches = []
        for start in range(0, count, step):
            index = np.arange(start, start + step) % total
            batches.append({name: a if axes.get(name, 0) is None else
                            contiguous(np.take(a, index, axis=axes.get(name, 0)))
                            for name, a in arrays.items()})
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # part of the protocol in newer releases; one pass is all parity needs
        return None
