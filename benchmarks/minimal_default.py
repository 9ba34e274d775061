"""The default parity job written by hand, as a deployment engineer would: the benchmark's baseline.

Build the seeded resnet18, export it with the dynamo exporter (same options as conf/exporter/dynamo.yaml),
run ONNX Runtime CPU and torch eager on the same 4 inputs, diff with numpy.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from parity.models.resnet import resnet18  # noqa: E402  (the model itself, not the harness)


def main() -> None:
    torch.manual_seed(0)
    model = resnet18().eval()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(4, 3, 224, 224)).astype(np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    x = ((pixels - mean) / std).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.onnx")
        torch.onnx.export(model, (torch.from_numpy(x),), path, dynamo=True, opset_version=18,
                          input_names=["image"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=True)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        onnx_out = session.run(["logits"], {"image": x})[0]
    with torch.inference_mode():
        torch_out = model(torch.from_numpy(x)).numpy()
    diff = np.abs(onnx_out - torch_out)
    print(f"max abs {diff.max():.3g} mean abs {diff.mean():.3g} allclose {np.allclose(onnx_out, torch_out, 1e-3, 1e-4)}")


if __name__ == "__main__":
    main()
