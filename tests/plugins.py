"""Test-only plugins, wired in through `_target_` exactly as a user's own code would be."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from parity.backends.onnxruntime import OrtBackend
from parity.exporters.torch_onnx import TorchScriptExporter


class TinyConvNet(nn.Module):
    """A user's own model: conv -> BN -> ReLU -> pool -> linear, two named outputs."""

    def __init__(self, channels: int = 4, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.relu(self.bn(self.conv(image))).mean(dim=(2, 3))
        return {"features": features, "scores": self.head(features)}


def tiny_conv_net(channels: int = 4, num_classes: int = 3) -> nn.Module:
    return TinyConvNet(channels, num_classes)


class PerturbingExporter(TorchScriptExporter):
    """Exports for real, then adds `delta` to one element of the named (or first float) initializer."""

    def __init__(self, *args: Any, delta: float = 0.5, initializer: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delta = delta
        self.initializer = initializer

    def _export_impl(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
                     output_names: list[str], path: Path, output_axes: Mapping[str, int | None]) -> None:
        import onnx
        from onnx import numpy_helper

        super()._export_impl(model, example, input_axes, output_names, path, output_axes)
        proto = onnx.load(str(path))
        for init in proto.graph.initializer:
            if self.initializer in (None, init.name):
                array = numpy_helper.to_array(init).copy()
                if array.dtype.kind != "f" or array.size == 0:
                    continue
                array.flat[0] += self.delta
                init.CopyFrom(numpy_helper.from_array(array, init.name))
                break
        onnx.save(proto, str(path))


class NaNBackend(OrtBackend):
    """Real ONNX Runtime whose first output gets a NaN planted in it."""

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = super()._infer_impl(feeds)
        first = next(iter(outputs))
        poisoned = outputs[first].astype(outputs[first].dtype, copy=True)
        poisoned.flat[0] = np.nan
        outputs[first] = poisoned
        return outputs


class WithScale(nn.Module):
    """Logits plus an output with no batch axis (a learned temperature)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.temperature = nn.Parameter(torch.tensor(1.5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x) / self.temperature, self.temperature * 1.0


def with_scale() -> nn.Module:
    return WithScale()


class NaNModel(nn.Module):
    """Produces NaN: log of a negative number."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x - 10.0)


def nan_model() -> nn.Module:
    return NaNModel()


class BrokenAvailabilityBackend(OrtBackend):
    """A runtime whose availability probe itself crashes (a half-installed library)."""

    def availability(self) -> str | None:
        raise ImportError("libonnxruntime_providers_shared.so: cannot open shared object file")
