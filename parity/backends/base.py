"""The backend contract every runtime implements: availability, load, infer, close, runtime_info."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from parity.artifact import Artifact
from parity.errors import BackendError, ParityError, one_line


class Backend(ABC):
    """A runtime executing an Artifact.

    Lifecycle: `availability()` (None, or the reason it cannot run here: a SKIP) -> `plan(shapes, sizes)` ->
    `load(artifact)` -> `infer(feeds)` any number of times -> `close()`. `runtime_info()`
    records what really ran (device, providers, versions) and is valid after `load`.
    Subclasses override the `*_impl` methods; the public methods turn their failures into
    BackendError so the runner reports an ERROR verdict with the message.
    """

    accepts: ClassVar[str] = "onnx"  # the Artifact kind it runs: "onnx" or "torch"

    def __init__(self, name: str) -> None:
        self.name = name
        self._loaded: Artifact | None = None
        self.input_shapes: dict[str, list[Any]] = {}
        self.batch_sizes: list[int] = []

    # -- the contract ---------------------------------------------------------------------------

    def availability(self) -> str | None:
        """None when this backend can run here, else a one-line reason (the verdict becomes SKIP)."""
        return None

    def plan(self, input_shapes: Mapping[str, Sequence[Any]], batch_sizes: Sequence[int]) -> None:
        """Told before any load: each input's declared shape (`batch` on its batch axis) and the run's
        batch sizes, for backends that build for a shape range (TensorRT's optimisation profiles)."""
        self.input_shapes = {name: list(shape) for name, shape in input_shapes.items()}
        self.batch_sizes = list(batch_sizes)

    def load(self, artifact: Artifact) -> None:
        if artifact.kind != self.accepts:
            raise BackendError(f"backend '{self.name}' runs {self.accepts} artifacts, got {artifact.kind}")
        try:
            self._load_impl(artifact)
        except ParityError:
            raise
        except Exception as exc:
            raise BackendError(f"backend '{self.name}' failed to load the model: {one_line(exc)}") from exc
        self._loaded = artifact

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._loaded is None:
            raise BackendError(f"backend '{self.name}': infer() before load()")
        try:
            outputs = self._infer_impl(feeds)
        except ParityError:
            raise
        except Exception as exc:
            raise BackendError(f"backend '{self.name}' inference failed: {one_line(exc)}") from exc
        return {name: np.asarray(value) for name, value in outputs.items()}

    def timer(self, feeds: Mapping[str, np.ndarray], include_transfers: bool = True) -> tuple[Callable[[], float], str]:
        """For benchmarks: a zero-argument callable running one inference on `feeds` and returning its latency
        in seconds, and what that interval covers. Inputs are prepared here, outside the timed region;
        device backends synchronise before reading the clock. After `load`."""
        if self._loaded is None:
            raise BackendError(f"backend '{self.name}': timer() before load()")
        prepared = {k: np.ascontiguousarray(v) for k, v in feeds.items()}

        def run() -> float:
            start = time.perf_counter()
            self._infer_impl(prepared)
            return time.perf_counter() - start

        return run, "perf_counter around one inference call (host memory in and out)"

    def close(self) -> None:
        try:
            self._close_impl()
        finally:
            self._loaded = None

    def runtime_info(self) -> dict[str, Any]:
        """What actually ran: device, providers, library versions, settings in force."""
        return {}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for subclasses ---------------------------------------------------------------------------

    @abstractmethod
    def _load_impl(self, artifact: Artifact) -> None: ...

    @abstractmethod
    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _close_impl(self) -> None:
        return None
