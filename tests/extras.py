"""Which optional extras are installed here, for skip markers (cheap: no import of the frameworks themselves)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


# the modules each optional extra (noxfile.py's EXTRAS, pyproject's extras) and profile package provides
EXTRA_MODULES = {
    "tf": ("tensorflow", "keras", "tf2onnx"),
    "openvino": ("openvino",),
    "opencv": ("cv2",),
    "ray": ("ray", "hydra_plugins.hydra_ray_launcher"),
    "onnxruntime-gpu": ("onnxruntime",),
    "model-explorer": ("model_explorer", "model_explorer_onnx", "dacite"),
}
_TF = _missing(*EXTRA_MODULES["tf"])
_OV = _missing(*EXTRA_MODULES["openvino"])
_CV = _missing(*EXTRA_MODULES["opencv"])

needs_tf = pytest.mark.skipif(bool(_TF), reason=f"the `tf` extra is not installed here (missing: {', '.join(_TF)})")
needs_openvino = pytest.mark.skipif(bool(_OV), reason="the `openvino` extra is not installed here")
needs_opencv = pytest.mark.skipif(bool(_CV), reason="the `opencv` extra (opencv-python-headless) is not installed here")

def _cpu_flags() -> set[str]:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return set()
    return set(line.split(":", 1)[1].split())


# The README's quoted numbers were taken on an Intel Xeon with AMX, AVX512-BF16 and VNNI (this workplace's CI
# machine). Elsewhere the kernels take other paths (other last bits in float32, another INT8 path, OpenVINO's bf16
# without AMX), so tests pin those numbers exactly only here, and hold them within a factor elsewhere.
README_CPU = {"amx_tile", "avx512_bf16", "avx512_vnni"} <= _cpu_flags()

# real photographs that ship inside scikit-image (skimage/data/*.png: files of the package, never downloaded)
SAMPLE_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png", "hubble_deep_field.jpg",
                 "rocket.jpg")


def sample_images(directory: Path, count: int) -> Path:
    """`count` of scikit-image's bundled colour photos copied into `directory` as PNG files (sizes differ)."""
    import skimage
    from PIL import Image

    data = Path(skimage.__file__).parent / "data"
    directory.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_PHOTOS[:count]:
        with Image.open(data / name) as image:
            image.convert("RGB").save(directory / (Path(name).stem + ".png"))
    return directory


def openvino_reason() -> str | None:
    """None where the openvino extra is installed, else why the parts of a test that need it are left out."""
    return "the `openvino` extra is not installed here" if _OV else None

# a sitecustomize that makes these modules unimportable in a child process, the way an absent package is:
# `import x` raises ImportError and importlib.util.find_spec("x") answers None
BLOCKER = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
"""
