"""Seeded input sets generated from a model's declared inputs (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from parity.config import BATCH, Distribution


# every element type an input or output may have: what numpy holds, and bfloat16 through ml_dtypes
DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                    "float32", "float64", "bfloat16"})


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype called `name` (bfloat16: ml_dtypes', which onnx already depends on)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """A bfloat16 array as its uint16 bit pattern (a view), for what knows no ml_dtypes type: npz, torch, ONNX
    Runtime; any other array as it is."""
    return array.view(np.uint16) if array.dtype.name == "bfloat16" else array


def with_dtype(array: np.ndarray, dtype: str) -> np.ndarray:
    """An array as `dtype`, where it holds that type's bit pattern (bfloat16 from uint16: `bfloat16_bits`
    undone); any other array as it is."""
    return array.view(numpy_dtype("bfloat16")) if dtype == "bfloat16" and array.dtype == np.uint16 else array


def contiguous(array: np.ndarray) -> np.ndarray:
    """`array` C-contiguous, its shape kept (np.ascontiguousarray turns a 0-d scalar into shape (1,))."""
    return np.require(array, requirements="C")


def floating(dtype: np.dtype) -> bool:
    """Whether values of `dtype` can be NaN or Inf (float16/32/64, complex, bfloat16)."""
    return dtype.kind in "fc" or dtype.name == "bfloat16"


def concrete_shape(shape: list[Any], batch: int) -> tuple[int, ...]:
    """The declared shape with its batch symbol replaced by `batch` (a shape without one is fixed)."""
    return tuple(batch if dim == BATCH else int(dim) for dim in shape)


def batch_axis(shape: list[Any]) -> int | None:
    """Position of the batch symbol in a declared shape; None for an input without a batch axis."""
    return list(shape).index(BATCH) if BATCH in list(shape) else None


def generate(inputs_spec: list[Any], num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """Draw `num_samples` samples for every declared input, reproducibly.

    Each input gets its own stream: its `seed` if set, else one derived from the input
    set's seed and the input's position, so adding an input never changes the others.
    """
    arrays: dict[str, np.ndarray] = {}
    for index, spec in enumerate(inputs_spec):
        stream = spec.seed if spec.seed is not None else [seed, index]
        rng = np.random.default_rng(np.random.SeedSequence(stream))
        shape = concrete_shape(spec.shape, num_samples)
        dist = Distribution(spec.distribution)
        if dist is Distribution.normal:
            values = rng.normal(spec.mean, spec.std, size=shape)
        elif dist is Distribution.uniform:
            values = rng.uniform(spec.low, spec.high, size=shape)
        elif dist is Distribution.randint:
            values = rng.integers(int(spec.low), int(spec.high), size=shape)
        elif dist is Distribution.sparse:
            first = batch_axis(spec.shape)
            axis = 0 if first is None else first + 1  # the first axis after the batch one (no batch: axis 0)
            cells = list(shape)
            if axis < len(cells):
                cells[axis] = 1  # one mask value per cell, shared by its channels
            occupied = rng.random(size=cells) < spec.density
            values = np.where(occupied, rng.normal(spec.mean, spec.std, size=shape), 0.0)
        else:  # image: channel axis right after the batch axis (NCHW) unless channel_axis says otherwise
            pixels = rng.integers(0, 256, size=shape).astype(np.float32) / np.float32(255.0)
            channel_axis = getattr(spec, "channel_axis", None)
            first = batch_axis(spec.shape)
            axis = (0 if first is None else first + 1) if channel_axis is None else int(channel_axis) % len(shape)
            bshape = [1] * len(shape)
            bshape[axis] = shape[axis]
            mean = np.asarray(spec.channel_mean, dtype=np.float32).reshape(bshape)
            std = np.asarray(spec.channel_std, dtype=np.float32).reshape(bshape)
            values = (pixels - mean) / std
        if spec.dtype == "bool":
            values = values != 0
        arrays[spec.name] = contiguous(np.asarray(values).astype(numpy_dtype(spec.dtype)))
    return arrays


def take(arrays: dict[str, np.ndarray], axes: dict[str, int | None], count: int) -> dict[str, np.ndarray]:
    """The first `count` samples of every array along its batch axis (axis 0 unless `axes` says; None:
    unchanged)."""
    out = {}
    for name, a in arrays.items():
        axis = axes.get(name, 0)
        out[name] = a if axis is None else contiguous(np.take(a, np.arange(count), axis=axis))
    return out
