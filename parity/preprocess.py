"""Declared image preprocessing: decode (Pillow), resize with the named library and interpolation, centre crop,
scale, per-channel normalisation, layout, dtype (parity.config.PreprocessConfig, in that order)."""

from __future__ import annotations

import dataclasses
import glob
from pathlib import Path
from typing import Any

import numpy as np

from parity.errors import ConfigError, DataError, one_line
from parity.inputs import DTYPES, numpy_dtype

PILLOW_FILTERS = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "lanczos": "LANCZOS",
                  "box": "BOX", "hamming": "HAMMING"}
OPENCV_FLAGS = ("INTER_NEAREST", "INTER_LINEAR", "INTER_CUBIC", "INTER_AREA", "INTER_LANCZOS4",
                "INTER_LINEAR_EXACT", "INTER_NEAREST_EXACT")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
COLORS = {"RGB": 3, "BGR": 3, "L": 1}
LAYOUTS = ("NCHW", "NHWC")


def check(pre: Any, where: str = "inputs.preprocess") -> None:
    """Every preprocessing value valid (no library imported); ConfigError naming the key otherwise."""
    if pre.color not in COLORS:
        raise ConfigError(f"{where}.color '{pre.color}' is not one of {', '.join(COLORS)}")
    if pre.library == "pillow":
        if pre.interpolation not in PILLOW_FILTERS:
            raise ConfigError(f"{where}.interpolation '{pre.interpolation}' is not a Pillow filter "
                              f"({', '.join(PILLOW_FILTERS)})")
    elif pre.library == "opencv":
        if pre.interpolation not in OPENCV_FLAGS:
            raise ConfigError(f"{where}.interpolation '{pre.interpolation}' is not an OpenCV interpolation "
                              f"({', '.join(OPENCV_FLAGS)})")
    else:
        raise ConfigError(f"{where}.library '{pre.library}' is not one of pillow, opencv")
    if pre.resize is not None and pre.resize_shorter is not None:
        raise ConfigError(f"{where}: set resize ([height, width]) or resize_shorter, not both")
    for key in ("resize", "crop"):
        value = getattr(pre, key)
        if value is not None and (len(value) != 2 or any(int(v) < 1 for v in value)):
            raise ConfigError(f"{where}.{key} must be [height, width] of positive sizes, got {list(value)}")
    if pre.resize_shorter is not None and pre.resize_shorter < 1:
        raise ConfigError(f"{where}.resize_shorter must be >= 1, got {pre.resize_shorter}")
    channels = COLORS[pre.color]
    for key in ("mean", "std"):
        value = list(getattr(pre, key))
        if value and len(value) not in (1, channels):
            raise ConfigError(f"{where}.{key} has {len(value)} values; color {pre.color} has {channels} channel(s)")
    if bool(pre.mean) != bool(pre.std):
        raise ConfigError(f"{where}: set mean and std together (or neither)")
    if any(float(v) <= 0 for v in pre.std):
        raise ConfigError(f"{where}.std must be > 0, got {list(pre.std)}")
    if pre.layout not in LAYOUTS:
        raise ConfigError(f"{where}.layout '{pre.layout}' is not one of {', '.join(LAYOUTS)}")
    if pre.dtype not in DTYPES or pre.dtype == "bool":
        raise ConfigError(f"{where}.dtype '{pre.dtype}' is not a numeric dtype ({sorted(DTYPES - {'bool'})})")


def image_files(path: str) -> list[Path]:
    """The images of a directory (by name) or a glob (sorted); DataError when there are none."""
    candidate = Path(path)
    if candidate.is_dir():
        files = sorted(p for p in candidate.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        where = f"directory {candidate}"
    elif candidate.is_file():
        files, where = [candidate], str(candidate)
    else:
        files = sorted(Path(p) for p in glob.glob(path, recursive=True) if Path(p).is_file())
        where = f"pattern {path}"
    if not files:
        raise DataError(f"no images in {where} (suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _opencv() -> Any:
    from parity.dependencies import require

    require("inputs.preprocess.library=opencv", "cv2")
    import cv2

    return cv2


def decode(path: Path, color: str) -> np.ndarray:
    """An image file as uint8 pixels, HWC (L: HW1), through Pillow."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode in ("I", "F") or image.mode.startswith("I;"):  # 16/32-bit: convert() would clip to 255
                raise DataError(f"{path} is a {image.mode} image (more than 8 bits per channel); parity's image "
                                f"pipeline takes 8-bit images: convert it, or give the tensors as .npy")
            pixels = np.asarray(image.convert("L" if color == "L" else "RGB"))
    except (OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} is not a readable image: {one_line(exc)}") from None
    if color == "BGR":
        pixels = pixels[..., ::-1]
    return np.ascontiguousarray(pixels if pixels.ndim == 3 else pixels[..., None])


def resize(pixels: np.ndarray, height: int, width: int, library: str, interpolation: str) -> np.ndarray:
    """uint8 HWC pixels resized to height x width with the named library and interpolation."""
    if pixels.shape[:2] == (height, width):
        return pixels
    if library == "opencv":
        cv2 = _opencv()
        out = cv2.resize(pixels, (width, height), interpolation=getattr(cv2, interpolation))
    else:
        from PIL import Image

        image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
        out = np.asarray(image.resize((width, height), getattr(Image.Resampling, PILLOW_FILTERS[interpolation])))
    return np.ascontiguousarray(out if out.ndim == 3 else out[..., None])


def target_size(height: int, width: int, pre: Any) -> tuple[int, int]:
    """The size an image of height x width is resized to (unchanged without a resize step); resize_shorter keeps
    the aspect ratio, the longer side truncated (torchvision's Resize(int))."""
    if pre.resize is not None:
        return int(pre.resize[0]), int(pre.resize[1])
    if pre.resize_shorter is not None:
        short = int(pre.resize_shorter)
        if height <= width:
            return short, int(short * width / height)
        return int(short * height / width), short
    return height, width


def center_crop(pixels: np.ndarray, height: int, width: int, path: Path) -> np.ndarray:
    h, w = pixels.shape[:2]
    if height > h or width > w:
        raise DataError(f"{path}: a centre crop of {height}x{width} does not fit the resized {h}x{w} image")
    top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    return pixels[top:top + height, left:left + width]


def to_tensor(pixels: np.ndarray, pre: Any) -> np.ndarray:
    """uint8 HWC pixels as the declared tensor of one sample: scaled, normalised, in layout, of dtype."""
    values = pixels.astype(np.float32)
    divisor = 1.0 / float(pre.scale) if pre.scale else 0.0
    if divisor and abs(divisor - round(divisor)) < 1e-6:  # 1/N: divide by N, as torchvision's ToTensor (x / 255)
        values = values / np.float32(round(divisor))     # does; x * float32(1/255) differs in the last bit
    else:
        values = values * np.float32(pre.scale)
    if pre.mean:
        channels = pixels.shape[2]
        mean = np.resize(np.asarray(pre.mean, dtype=np.float32), channels)
        std = np.resize(np.asarray(pre.std, dtype=np.float32), channels)
        values = (values - mean) / std
    if pre.layout == "NCHW":
        values = values.transpose(2, 0, 1)
    target = numpy_dtype(pre.dtype)
    if target.kind in "iu":
        info = np.iinfo(target)
        values = np.clip(np.rint(values), info.min, info.max)
    return np.ascontiguousarray(values.astype(target))


def run(files: list[Path], pre: Any) -> np.ndarray:
    """Every image through the pipeline, stacked on a new first (batch) axis."""
    samples = []
    for path in files:
        pixels = decode(path, pre.color)
        height, width = target_size(pixels.shape[0], pixels.shape[1], pre)
        pixels = resize(pixels, height, width, pre.library, pre.interpolation)
        if pre.crop is not None:
            pixels = center_crop(pixels, int(pre.crop[0]), int(pre.crop[1]), path)
        samples.append(to_tensor(pixels, pre))
    shapes = {s.shape for s in samples}
    if len(shapes) > 1:
        raise DataError(f"the preprocessed images differ in shape ({sorted(shapes)}): without resize or crop to one "
                        f"size they cannot form one batch; set inputs.preprocess.resize or crop")
    return np.stack(samples)


def steps(pre: Any) -> dict[str, Any]:
    """The configured steps as plain values (what a golden's inputs depend on)."""
    record = dataclasses.asdict(pre) if dataclasses.is_dataclass(pre) else dict(pre)
    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in record.items()}


def describe(pre: Any) -> dict[str, Any]:
    """The pipeline as the report and the manifest record it, with the versions of the libraries that ran."""
    record = steps(pre)
    record["decoder"] = "pillow"
    try:
        import PIL

        record["pillow_version"] = PIL.__version__
    except ImportError:
        pass
    if pre.library == "opencv":
        try:
            import cv2

            record["opencv_version"] = cv2.__version__
        except ImportError:
            pass
    return record
