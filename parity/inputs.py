"""Seeded input sets generated from a model's declared inputs (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from parity.config import BATCH, Distribution


def concrete_shape(shape: list[Any], batch: int) -> tuple[int, ...]:
    """The declared shape with its batch symbol replaced by `batch`."""
    return tuple(batch if dim == BATCH else int(dim) for dim in shape)


def batch_axis(shape: list[Any]) -> int:
    """Position of the batch symbol in a declared shape."""
    return list(shape).index(BATCH)


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
            axis = batch_axis(spec.shape) + 1
            cells = list(shape)
            if axis < len(cells):
                cells[axis] = 1  # one mask value per cell, shared by its channels
            occupied = rng.random(size=cells) < spec.density
            values = np.where(occupied, rng.normal(spec.mean, spec.std, size=shape), 0.0)
        else:  # image: channel axis right after the batch axis (NCHW) unless channel_axis says otherwise
            pixels = rng.integers(0, 256, size=shape).astype(np.float32) / np.float32(255.0)
            channel_axis = getattr(spec, "channel_axis", None)
            axis = batch_axis(spec.shape) + 1 if channel_axis is None else int(channel_axis) % len(shape)
            bshape = [1] * len(shape)
            bshape[axis] = shape[axis]
            mean = np.asarray(spec.channel_mean, dtype=np.float32).reshape(bshape)
            std = np.asarray(spec.channel_std, dtype=np.float32).reshape(bshape)
            values = (pixels - mean) / std
        arrays[spec.name] = np.ascontiguousarray(values.astype(np.dtype(spec.dtype)))
    return arrays


def take(arrays: dict[str, np.ndarray], axes: dict[str, int | None], count: int) -> dict[str, np.ndarray]:
    """The first `count` samples of every array along its batch axis (arrays with axis None: unchanged)."""
    return {
        name: a if axes.get(name, 0) is None else np.ascontiguousarray(np.take(a, np.arange(count), axis=axes[name]))
        for name, a in arrays.items()
    }


def repeat_to(arrays: dict[str, np.ndarray], axes: dict[str, int], count: int) -> dict[str, np.ndarray]:
    """Tile samples along the batch axis up to `count` (an export example must not have batch 1)."""
    out = {}
    for name, a in arrays.items():
        n = a.shape[axes[name]]
        index = np.arange(count) % n
        out[name] = np.ascontiguousarray(np.take(a, index, axis=axes[name]))
    return out
