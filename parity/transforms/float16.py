"""fp16 conversion of the ONNX graph (onnxruntime.transformers.float16)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from parity.plugins import register
from parity.transforms.base import Transform, TransformConfig


@dataclass
class Float16TransformConfig(TransformConfig):
    _target_: str = "parity.transforms.float16.Float16Transform"
    name: str = "fp16"
    keep_io_types: bool = True  # inputs and outputs stay float32, so goldens compare as they are
    op_block_list: Optional[list[str]] = None  # None: onnxruntime's default list of ops kept in float32


@register
class Float16Transform(Transform):
    """Every float32 tensor of the graph to float16; I/O kept float32 by default."""

    Config = Float16TransformConfig
    schema = "base_float16_transform"
    calibrates = False  # the calibration samples do not enter the result

    def _apply_impl(self, source: Path, out_dir: Path, calibration: Mapping[str, np.ndarray],
                    batch_size: int | None, input_axes: Mapping[str, int]) -> Path:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = onnx.load(str(source))  # external data (dynamo) is read from beside the file
        kwargs: dict[str, Any] = {"keep_io_types": self.config.keep_io_types}
        if self.config.op_block_list is not None:
            kwargs["op_block_list"] = list(self.config.op_block_list)
        target = out_dir / "model.onnx"
        onnx.save(convert_float_to_float16(model, **kwargs), str(target))
        return target
