"""Test-only plugins, wired in through `_target_` exactly as a user's own code would be: each declares its own
config dataclass (parity.plugins), and the job plan types the composed node against it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from parity.backends.onnxruntime import OrtBackend, OrtBackendConfig, OrtSession
from parity.exporters.torch_onnx import TorchScriptExporter, TorchScriptExporterConfig
from parity.report.formats import ReportWriter, writer
from parity.transforms.base import Transform, TransformConfig
from parity.transforms.float16 import Float16Transform


class TinyConvNet(nn.Module):
    """A user's own model: conv -> BN -> ReLU -> pool -> linear, two named outputs."""

    def __init__(self, channels: int = 4, num_classes: int = 3, in_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = torch.relu(self.bn(self.conv(image))).mean(dim=(2, 3))
        return {"features": features, "scores": self.head(features)}


def tiny_conv_net(channels: int = 4, num_classes: int = 3, in_channels: int = 1) -> nn.Module:
    return TinyConvNet(channels, num_classes, in_channels)


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


@dataclass
class PerturbingExporterConfig(TorchScriptExporterConfig):
    """The torchscript exporter's keys, plus where to plant the fault."""

    _target_: str = "tests.plugins.PerturbingExporter"
    name: str = "perturbing"
    delta: float = 0.5
    initializer: Optional[str] = None
    node_contains: Optional[str] = None


class PerturbingExporter(TorchScriptExporter):
    """Exports for real, then perturbs one weight (see perturb_onnx): a planted conversion fault."""

    Config = PerturbingExporterConfig

    def _export_impl(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
                     output_names: list[str], out_dir: Path, output_axes: Mapping[str, int | None]) -> Path:
        path = super()._export_impl(model, example, input_axes, output_names, out_dir, output_axes)
        perturb_onnx(path, self.config.delta, self.config.initializer, self.config.node_contains)
        return path


class NumericVersionExporter(TorchScriptExporter):
    """The torchscript exporter reporting a version as a number: a plugin's slip that breaks the report schema."""

    def versions(self) -> dict[str, Any]:
        return {**super().versions(), "torch": 2.13}


class ExampleRecordingExporter(TorchScriptExporter):
    """The torchscript exporter, keeping the example it traced beside the artifact (example.npz)."""

    def _export_impl(self, model: Any, example: Mapping[str, np.ndarray], input_axes: Mapping[str, int],
                     output_names: list[str], out_dir: Path, output_axes: Mapping[str, int | None]) -> Path:
        np.savez(out_dir.parent / f"{out_dir.name}-example.npz", **example)
        return super()._export_impl(model, example, input_axes, output_names, out_dir, output_axes)


class NaNSession(OrtSession):
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = super()._infer(feeds)
        first = next(iter(outputs))
        poisoned = outputs[first].astype(outputs[first].dtype, copy=True)
        poisoned.flat[0] = np.nan
        outputs[first] = poisoned
        return outputs


class NaNBackend(OrtBackend):
    """Real ONNX Runtime whose first output gets a NaN planted in it."""

    session_class = NaNSession


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


@dataclass
class PerturbingOrtBackendConfig(OrtBackendConfig):
    """ONNX Runtime's keys, plus which node's weight to corrupt at load time."""

    _target_: str = "tests.plugins.PerturbingOrtBackend"
    node_contains: str = ""
    delta: float = 0.5


class PerturbingOrtSession(OrtSession):
    def _open(self) -> None:
        import dataclasses
        import tempfile

        import onnx

        workdir = Path(tempfile.mkdtemp(prefix="perturbed-"))
        copy = workdir / "model.onnx"
        onnx.save(onnx.load(str(self.artifact.path)), str(copy))  # weights embedded: the copy stands alone
        self.backend.perturbed_node = perturb_onnx(copy, self.backend.config.delta,
                                                   node_contains=self.backend.config.node_contains)
        self.artifact = dataclasses.replace(self.artifact, path=copy)
        super()._open()

    def runtime_info(self) -> dict[str, Any]:
        return {**super().runtime_info(), "perturbed_node": self.backend.perturbed_node}


class PerturbingOrtBackend(OrtBackend):
    """Real ONNX Runtime that corrupts one node's weight at load time: a planted backend fault."""

    Config = PerturbingOrtBackendConfig
    session_class = PerturbingOrtSession
    perturbed_node = ""


class NoisySession(OrtSession):
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = super()._infer(feeds)
        rng = np.random.default_rng()
        return {k: (v + rng.normal(0, 1e-6, v.shape)).astype(v.dtype) for k, v in outputs.items()}


class NoisyBackend(OrtBackend):
    """Real ONNX Runtime plus fresh noise on every run: a non-deterministic runtime."""

    session_class = NoisySession


class BrokenTransform(Float16Transform):
    """A transform that crashes part-way (as a quantizer does on an op it cannot handle)."""

    def _apply_impl(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Unsupported op for quantization: NoSuchOp")


@writer
class VerdictLineWriter(ReportWriter):
    """A user's own report format: one line per job (`<verdict> <model>`) in verdict.txt, one per sweep."""

    name = "verdict_line"

    def job(self, report: dict[str, Any], settings: Any, output_dir: Path) -> Path:
        path = output_dir / "verdict.txt"
        path.write_text(f"{report['verdict']} {report['model']['name']}\n")
        return path

    def sweep(self, document: dict[str, Any], settings: Any, sweep_dir: Path) -> Path:
        path = sweep_dir / "verdict.txt"
        path.write_text(f"{document['verdict']} {len(document['jobs'])} jobs\n")
        return path


@writer
class BrokenWriter(ReportWriter):
    """A report format that fails: the job that asked for it is an ERROR."""

    name = "broken"

    def job(self, report: dict[str, Any], settings: Any, output_dir: Path) -> Path:
        raise OSError("disk full")

    def sweep(self, document: dict[str, Any], settings: Any, sweep_dir: Path) -> Path:
        raise OSError("disk full")


class ShapeRecordingSession(OrtSession):
    def runtime_info(self) -> dict[str, Any]:
        return {**super().runtime_info(), "expected_batch_sizes": list(self.backend.batch_sizes)}


class ShapeRecordingBackend(OrtBackend):
    """Real ONNX Runtime that says which batch sizes it was told to expect (what TensorRT builds its profile
    from)."""

    session_class = ShapeRecordingSession


class RepeatFailingSession(OrtSession):
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls % 2 == 0:
            raise RuntimeError("device lost on a repeated run")
        return super()._infer(feeds)


class RepeatFailingBackend(OrtBackend):
    """Real ONNX Runtime whose every second run in a session fails (a flaky device)."""

    session_class = RepeatFailingSession


class NumpyRoundTrip(nn.Module):
    """A forward the tracers cannot follow: values leave torch through numpy, so torchscript / jit_trace freeze
    them into a constant graph with no inputs at all."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.from_numpy(x.detach().numpy() * 2.0))


def numpy_round_trip() -> nn.Module:
    return NumpyRoundTrip()


class Bfloat16Head(nn.Module):
    """A model answering in bfloat16 (as models run in reduced precision do)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).to(torch.bfloat16)


def bfloat16_head(**_: object) -> nn.Module:  # mlp's builder arguments are ignored
    return Bfloat16Head()


def weight_node(proto: Any, target: str) -> Any:
    """The first node with a weight (a second input) whose name, or whose weight's name, contains `target`."""
    return next(n for n in proto.graph.node if len(n.input) > 1 and (target in n.name or target in n.input[1]))


def scale_weight(source: Path, dest: Path, target: str, factor: float) -> str:
    """Copy the ONNX model at `source` to `dest` (weights embedded) with the weight of the node `weight_node`
    picks scaled by `factor`; returns that node's name."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(source))
    node = weight_node(proto, target)
    init = next(i for i in proto.graph.initializer if i.name == node.input[1])
    init.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(init) * factor).astype(np.float32), init.name))
    onnx.save(proto, str(dest))
    return node.name


def scale_tensor(source: Path, dest: Path, node_contains: str, factor: float) -> str:
    """Copy the ONNX model at `source` to `dest` with the first output of the first node whose name contains
    `node_contains` multiplied by `factor` before anything reads it; returns that node's name."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(source))
    node = next(n for n in proto.graph.node if node_contains in n.name)
    tensor = node.output[0]
    node.output[0] = tensor + "__unscaled"
    scale = numpy_helper.from_array(np.array(factor, dtype=np.float32), tensor + "__factor")
    proto.graph.initializer.append(scale)
    index = list(proto.graph.node).index(node)
    proto.graph.node.insert(index + 1, helper.make_node("Mul", [node.output[0], scale.name], [tensor],
                                                        name=tensor + "__scale"))
    onnx.save(proto, str(dest))
    return node.name


@dataclass
class ScaleWeightTransformConfig(TransformConfig):
    """Which weight to scale (a node name or weight name fragment), by how much."""

    _target_: str = "tests.plugins.ScaleWeightTransform"
    name: str = "scale_weight"
    target: str = ""
    factor: float = 1.1


class _PlantedFault(Transform):
    """A transform that writes the artifact with one fault planted (`_plant(source, dest)`)."""

    def _plant(self, source: Path, dest: Path) -> None:
        raise NotImplementedError

    def _apply_impl(self, source: Path, out_dir: Path, calibration: Mapping[str, np.ndarray],
                    batch_size: int | None, input_axes: Mapping[str, int]) -> Path:
        self._plant(source, out_dir / "model.onnx")
        return out_dir / "model.onnx"


class ScaleWeightTransform(_PlantedFault):
    """A transform that changes one weight of the artifact: a planted conversion fault after the export."""

    Config = ScaleWeightTransformConfig

    def _plant(self, source: Path, dest: Path) -> None:
        self.scaled_node = scale_weight(source, dest, self.config.target, self.config.factor)


@dataclass
class ScaleTensorTransformConfig(TransformConfig):
    _target_: str = "tests.plugins.ScaleTensorTransform"
    name: str = "scale_tensor"
    node_contains: str = ""
    factor: float = 1.1


class ScaleTensorTransform(_PlantedFault):
    """A transform that scales one node's output in the artifact (a wrong Add between modules, say)."""

    Config = ScaleTensorTransformConfig

    def _plant(self, source: Path, dest: Path) -> None:
        scale_tensor(source, dest, self.config.node_contains, self.config.factor)


@dataclass
class ScaleTensorOrtBackendConfig(OrtBackendConfig):
    _target_: str = "tests.plugins.ScaleTensorOrtBackend"
    node_contains: str = ""
    factor: float = 1.1


class ScaleTensorOrtSession(OrtSession):
    def _open(self) -> None:
        import dataclasses
        import tempfile

        copy = Path(tempfile.mkdtemp(prefix="scaled-")) / "model.onnx"
        self.backend.perturbed_node = scale_tensor(Path(self.artifact.path), copy, self.backend.config.node_contains,
                                                   self.backend.config.factor)
        self.artifact = dataclasses.replace(self.artifact, path=copy)
        super()._open()

    def runtime_info(self) -> dict[str, Any]:
        return {**super().runtime_info(), "perturbed_node": self.backend.perturbed_node}


class ScaleTensorOrtBackend(OrtBackend):
    """Real ONNX Runtime that scales one intermediate tensor of every model it loads: a planted runtime fault."""

    Config = ScaleTensorOrtBackendConfig
    session_class = ScaleTensorOrtSession
    perturbed_node = ""


class WithScaleDrifted(WithScale):
    """WithScale's parameters (the same weights hash), computing a little more: the model code drifted."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, temperature = super().forward(x)
        return logits + 0.01, temperature


def with_scale_drifted() -> nn.Module:
    return WithScaleDrifted()


def killed_model(delay: float = 0.0) -> nn.Module:
    """A model whose building kills its own process, as the kernel's OOM killer would: the job leaves no report.
    With PARITY_TEST_KILL_AFTER (a glob) it first waits, up to a minute, for a file matching it (another job's
    report), so a test knows which jobs finished before the kill."""
    import glob
    import os
    import signal
    import time

    pattern = os.environ.get("PARITY_TEST_KILL_AFTER")
    deadline = time.monotonic() + 60
    while pattern and not glob.glob(pattern) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")
