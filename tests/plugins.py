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
from parity.transforms import Float16Transform


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


def perturb_onnx(path: Path, delta: float, initializer: str | None = None, node_contains: str | None = None) -> str:
    """Add `delta` to one element of an initializer, in place: the named one, the weight of the first node whose
    name contains `node_contains`, or the first float initializer. Returns the name of the node consuming it."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    target, node_name = initializer, ""
    if node_contains is not None:
        node = next(n for n in proto.graph.node if node_contains in n.name and len(n.input) > 1)
        target, node_name = node.input[1], node.name
    for init in proto.graph.initializer:
        if target in (None, init.name):
            array = numpy_helper.to_array(init).copy()
            if array.dtype.kind != "f" or array.size == 0:
                continue
            array.flat[0] += delta
            init.CopyFrom(numpy_helper.from_array(array, init.name))
            if not node_name:
                node_name = next((n.name for n in proto.graph.node if init.name in n.input), "")
            break
    else:
        raise ValueError(f"no float initializer {target!r} in {path}")
    onnx.save(proto, str(path))
    return node_name


class PerturbingExporter(TorchScriptExporter):
    """Exports for real, then perturbs one weight (see perturb_onnx): a planted conversion fault."""

    def __init__(self, *args: Any, delta: float = 0.5, initializer: str | None = None,
                 node_contains: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delta = delta
        self.initializer = initializer
        self.node_contains = node_contains

    def _export_impl(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
                     output_names: list[str], path: Path, output_axes: Mapping[str, int | None]) -> None:
        super()._export_impl(model, example, input_axes, output_names, path, output_axes)
        perturb_onnx(path, self.delta, self.initializer, self.node_contains)


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


class PerturbingOrtBackend(OrtBackend):
    """Real ONNX Runtime that corrupts one node's weight at load time: a planted backend fault."""

    def __init__(self, *args: Any, node_contains: str = "", delta: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.node_contains = node_contains
        self.delta = delta
        self.perturbed_node = ""

    def _load_impl(self, artifact: Any) -> None:
        import dataclasses
        import tempfile

        import onnx

        workdir = Path(tempfile.mkdtemp(prefix="perturbed-"))
        copy = workdir / "model.onnx"
        onnx.save(onnx.load(str(artifact.path)), str(copy))  # weights embedded: the copy stands alone
        self.perturbed_node = perturb_onnx(copy, self.delta, node_contains=self.node_contains)
        super()._load_impl(dataclasses.replace(artifact, path=copy))

    def runtime_info(self) -> dict[str, Any]:
        return {**super().runtime_info(), "perturbed_node": self.perturbed_node}


class NoisyBackend(OrtBackend):
    """Real ONNX Runtime plus fresh noise on every run: a non-deterministic runtime."""

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = super()._infer_impl(feeds)
        rng = np.random.default_rng()
        return {k: (v + rng.normal(0, 1e-6, v.shape)).astype(v.dtype) for k, v in outputs.items()}



class BrokenTransform(Float16Transform):
    """A transform that crashes part-way (as a quantizer does on an op it cannot handle)."""

    def _apply_impl(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Unsupported op for quantization: NoSuchOp")
