"""Keras / TensorFlow -> ONNX exporters (seed 002): tf2onnx from a SavedModel, and Keras 3's own ONNX export."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from parity.exporters.base import Exporter, OnnxExporterConfig
from parity.plugins import register


@dataclass
class KerasExporterConfig(OnnxExporterConfig):
    """A Keras -> ONNX exporter (tf2onnx underneath)."""

    opset: Optional[int] = 17
    constant_folding: bool = True  # tf2onnx always optimises: false is recorded as a warning, nothing more


@dataclass
class Tf2OnnxExporterConfig(KerasExporterConfig):
    _target_: str = "parity.exporters.keras_onnx.Tf2OnnxExporter"
    name: str = "tf2onnx"


@dataclass
class KerasOnnxExporterConfig(KerasExporterConfig):
    _target_: str = "parity.exporters.keras_onnx.KerasOnnxExporter"
    name: str = "keras_export"


class _KerasExporter(Exporter):
    source = "keras"
    Config = KerasExporterConfig
    # tf2onnx names the nodes and constants it adds from a counter whose order follows the SavedModel's
    # (run-dependent) function order: equal configs give equal graphs under other names (structure_sha256)
    deterministic = False

    def availability(self) -> str | None:
        from parity.frameworks.keras import keras_unavailable

        return keras_unavailable("tf2onnx")

    def versions(self) -> dict[str, str]:
        versions: dict[str, str] = {}
        for module in ("tensorflow", "keras", "tf2onnx", "onnx"):
            try:
                versions[module] = __import__(module).__version__
            except ImportError:
                continue
        return versions

    def _signature(self, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int]) -> list[Any]:
        """tf.TensorSpecs of the inputs in declared order; the batch axis is None for a dynamic-batch export."""
        import tensorflow as tf

        specs = []
        for name, array in example.items():
            shape: list[int | None] = list(array.shape)
            if self.dynamic_batch and input_axes.get(name) is not None:  # a fixed-shape input stays fixed
                shape[input_axes[name]] = None
            specs.append(tf.TensorSpec(shape, tf.as_dtype(array.dtype), name=name))
        return specs if len(specs) == 1 else [specs]

    def _warn_constant_folding(self) -> None:
        if not self.config.constant_folding:
            warnings.warn(f"parity: {self.name} always runs tf2onnx's graph optimisers; constant_folding=false "
                          "has no effect on this exporter", stacklevel=2)


@register
class Tf2OnnxExporter(_KerasExporter):
    """Keras model -> SavedModel (`model.export(format="tf_saved_model")`) -> `python -m tf2onnx.convert
    --saved-model` (seed 002's pipeline, through tf2onnx's documented command line, in a subprocess).
    The SavedModel is kept beside the artifact directory (`<dir>_saved_model`) for inspection."""

    Config = Tf2OnnxExporterConfig
    schema = "base_tf2onnx_exporter"
    timeout_s = 600

    def _export_impl(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
                     output_names: list[str], out_dir: Path, output_axes: Mapping[str, int | None]) -> Path:
        from parity.frameworks.keras import SavedModel

        self._warn_constant_folding()
        path = out_dir / "model.onnx"
        signature: list[str] = []
        if isinstance(model, SavedModel):  # the user's SavedModel converts as it is, through its signature
            saved = model.path
            signature = ["--signature_def", model.signature]
        else:
            saved = out_dir.with_name(out_dir.name + "_saved_model")
            model.export(str(saved), format="tf_saved_model", verbose=False,
                         input_signature=self._signature(example, input_axes))
        # tf2onnx numbers the nodes it adds (Transpose__66) in an order that follows Python's string hashing:
        # a fixed PYTHONHASHSEED makes the same SavedModel convert to the same bytes, so equal configs hash equal
        command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved), *signature,
                   "--output", str(path)]
        if self.config.opset is not None:
            command += ["--opset", str(self.config.opset)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout_s,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"})
        for line in done.stderr.splitlines():
            if " - WARNING - " in line or " - ERROR - " in line:
                warnings.warn(f"tf2onnx: {line.split(' - ', 3)[-1].strip()}", stacklevel=1)
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            errors = [ln for ln in lines if "Error" in ln or "ERROR" in ln] or lines[-1:] or ["(no output)"]
            raise RuntimeError(f"tf2onnx.convert exited with {done.returncode}: {errors[-1].strip()}")
        return path


@register
class KerasOnnxExporter(_KerasExporter):
    """Keras 3's `model.export(path, format="onnx", opset_version=...)` (tf2onnx underneath, in process)."""

    Config = KerasOnnxExporterConfig
    schema = "base_keras_export_exporter"

    def _export_impl(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
                     output_names: list[str], out_dir: Path, output_axes: Mapping[str, int | None]) -> Path:
        from parity.frameworks.keras import SavedModel

        if isinstance(model, SavedModel):
            raise ValueError("keras_export needs a Keras model; a SavedModel converts with exporter=tf2onnx")
        self._warn_constant_folding()
        path = out_dir / "model.onnx"
        model.export(str(path), format="onnx", opset_version=self.config.opset, verbose=False,
                     input_signature=self._signature(example, input_axes))
        return path
