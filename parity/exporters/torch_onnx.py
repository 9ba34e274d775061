"""torch -> ONNX exporters: dynamo (torch.export), TorchScript (legacy) and jit.trace + legacy."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from parity.exporters.base import Exporter, OnnxExporterConfig
from parity.frameworks.torch import to_tensor
from parity.plugins import register


@dataclass
class TorchExporterConfig(OnnxExporterConfig):
    """A torch -> ONNX exporter."""


@dataclass
class DynamoExporterConfig(TorchExporterConfig):
    _target_: str = "parity.exporters.torch_onnx.DynamoExporter"
    name: str = "dynamo"
    opset: Optional[int] = 18
    optimize: bool = True  # onnxscript's graph optimiser (constant_folding=false turns it off too)
    external_data: bool = True  # weights in model.onnx.data beside model.onnx


@dataclass
class TorchScriptExporterConfig(TorchExporterConfig):
    _target_: str = "parity.exporters.torch_onnx.TorchScriptExporter"
    name: str = "torchscript"
    opset: Optional[int] = 17


@dataclass
class JitTraceExporterConfig(TorchExporterConfig):
    _target_: str = "parity.exporters.torch_onnx.JitTraceExporter"
    name: str = "jit_trace"
    opset: Optional[int] = 13


def _ordered(model: Any, output_names: list[str]) -> Any:
    """Wrap the module so it returns a tuple in declared output order (dicts mapped by key).

    ONNX graph outputs are positional; without this a dict-returning model would be exported in
    its insertion order and jit.trace would refuse it outright.
    """
    import torch

    class OrderedOutputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.model = inner

        def forward(self, *args: Any) -> tuple[Any, ...]:
            result = self.model(*args)
            if isinstance(result, dict):
                missing = [n for n in output_names if n not in result]
                if missing:
                    raise KeyError(f"model returned keys {sorted(result)}, missing declared outputs {missing}")
                return tuple(result[n] for n in output_names)
            return tuple(result) if isinstance(result, (list, tuple)) else (result,)

    return OrderedOutputs(model).eval()


class _TorchExporter(Exporter):
    source = "torch"
    Config = TorchExporterConfig

    def versions(self) -> dict[str, str]:
        import onnx
        import torch

        versions = {"torch": torch.__version__, "onnx": onnx.__version__}
        try:
            import onnxscript

            versions["onnxscript"] = onnxscript.__version__
        except ImportError:
            pass
        return versions

    @staticmethod
    def _args(example: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
        return tuple(to_tensor(a) for a in example.values())

    def _legacy_dynamic_axes(self, input_axes: Mapping[str, int],
                             output_axes: Mapping[str, int | None]) -> dict[str, dict[int, str]]:
        if not self.config.dynamic_batch:
            return {}
        axes = {name: {axis: "batch"} for name, axis in input_axes.items() if axis is not None}
        axes.update({name: {axis: "batch"} for name, axis in output_axes.items() if axis is not None})
        return axes

    def _legacy_export(self, model: Any, args: tuple[Any, ...], names: list[str], input_axes: Mapping[str, int],
                       output_names: list[str], path: Path, output_axes: Mapping[str, int | None]) -> Path:
        import torch

        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=False,
            input_names=names,
            output_names=output_names,
            opset_version=self.config.opset,
            do_constant_folding=self.config.constant_folding,
            dynamic_axes=self._legacy_dynamic_axes(input_axes, output_axes) or None,
        )
        return path


@register
class DynamoExporter(_TorchExporter):
    """`torch.onnx.export(..., dynamo=True)`: torch.export + onnxscript translation (torch's default).

    It has no separate constant-folding switch: `constant_folding=false` turns its graph optimiser off.
    Weights go to `model.onnx.data` beside the model when `external_data` is true.
    """

    Config = DynamoExporterConfig
    schema = "base_dynamo_exporter"

    def options(self) -> dict[str, Any]:
        return {**super().options(), "effective_optimize": self.config.optimize and self.config.constant_folding}

    def _export_impl(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
                     output_names: list[str], out_dir: Path,
                     output_axes: Mapping[str, int | None]) -> Path:
        import torch

        path = out_dir / "model.onnx"
        # torch logs one warning per torchvision op it cannot register when torchvision is absent: noise here
        logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
        dynamic_shapes = None
        if self.config.dynamic_batch:
            batch = torch.export.Dim("batch")
            # the OrderedOutputs wrapper takes *args: torch.export sees one tuple argument holding the inputs
            # an input without a batch axis (a fixed shape) has no dynamic dimension: None
            dynamic_shapes = (tuple(None if axis is None else {axis: batch} for axis in input_axes.values()),)
        torch.onnx.export(
            _ordered(model, output_names),
            self._args(example),
            str(path),
            dynamo=True,
            input_names=list(example),
            output_names=output_names,
            opset_version=self.config.opset,
            dynamic_shapes=dynamic_shapes,
            optimize=self.config.optimize and self.config.constant_folding,
            external_data=self.config.external_data,
            verbose=False,
        )
        return path


@register
class TorchScriptExporter(_TorchExporter):
    """The legacy TorchScript-based exporter (`dynamo=False`), scripting through tracing internally."""

    Config = TorchScriptExporterConfig
    schema = "base_torchscript_exporter"

    def _export_impl(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
                     output_names: list[str], out_dir: Path,
                     output_axes: Mapping[str, int | None]) -> Path:
        return self._legacy_export(_ordered(model, output_names), self._args(example), list(example), input_axes,
                                   output_names, out_dir / "model.onnx", output_axes)


@register
class JitTraceExporter(_TorchExporter):
    """`torch.jit.trace` first, then the legacy exporter on the traced ScriptModule (seed 001's fix)."""

    Config = JitTraceExporterConfig
    schema = "base_jit_trace_exporter"

    def _export_impl(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
                     output_names: list[str], out_dir: Path,
                     output_axes: Mapping[str, int | None]) -> Path:
        import torch

        args = self._args(example)
        with torch.no_grad():
            traced = torch.jit.trace(_ordered(model, output_names), args, check_trace=False)
        return self._legacy_export(traced, args, list(example), input_axes, output_names, out_dir / "model.onnx",
                                   output_axes)
