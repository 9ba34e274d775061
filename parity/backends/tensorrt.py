"""TensorRT through Polygraphy: network from the ONNX file, builder flags, optimisation profiles, engine cache."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.artifact import Artifact
from parity.backends.base import Backend, BackendConfig, Session
from parity.backends.gpu import device_info, gpu_missing_reason
from parity.config import BATCH
from parity.dependencies import missing_message
from parity.inputs import contiguous
from parity.plugins import register

log = logging.getLogger("parity")
DEFAULT_CACHE = "~/.cache/parity/tensorrt"


def derive_profile(input_shapes: Mapping[str, Sequence[Any]], batch_sizes: Sequence[int]
                   ) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """One optimisation profile from the declared shapes (`batch` marks the dynamic axis) and the run's sizes.

    min = the smallest batch size of the run, max = the largest, opt = the largest (the size deployments
    tune for); every other dimension is the declared one.
    """
    if not batch_sizes:
        raise ValueError("a TensorRT profile needs at least one batch size")
    low, high = min(batch_sizes), max(batch_sizes)

    def shape(declared: Sequence[Any], batch: int) -> list[int]:
        return [batch if d == BATCH else int(d) for d in declared]

    return {name: (shape(s, low), shape(s, high), shape(s, high)) for name, s in input_shapes.items()}


def onnx_content_sha256(path: Path) -> str:
    """SHA-256 over the .onnx file and every external-data file it references (parity.artifact.onnx_files_sha256:
    the one identity of an ONNX file, external data resolved and checked by parity.paths)."""
    from parity.artifact import onnx_files_sha256

    return onnx_files_sha256(path)[0]


def engine_cache_key(onnx_sha256: str, settings: Mapping[str, Any]) -> str:
    """The cache key of an engine: the ONNX content plus every build setting (flags, profile, versions, device)."""
    payload = json.dumps({"onnx_sha256": onnx_sha256, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class TensorRTBackendConfig(BackendConfig):
    """TensorRT through Polygraphy."""

    _target_: str = "parity.backends.tensorrt.TensorRTBackend"
    name: str = "tensorrt"
    fp16: bool = False
    tf32: bool = True  # numerics=strict turns it off
    workspace_mib: int = 4096
    engine_cache_dir: str = DEFAULT_CACHE
    use_cache: bool = True
    device_id: int = 0

    def with_numerics(self, numerics: Any) -> TensorRTBackendConfig:
        if numerics.trt_tf32 is None:
            return self
        return dataclasses.replace(self, tf32=bool(numerics.trt_tf32))


class TensorRTSession(Session):
    """A TensorRT engine for the ONNX artifact (built, or loaded from parity's own cache), run by TrtRunner."""

    def _open(self) -> None:
        import tensorrt as trt
        from polygraphy.backend.trt import (
            CreateConfig,
            EngineBytesFromNetwork,
            EngineFromBytes,
            NetworkFromOnnxPath,
            Profile,
            TrtRunner,
        )

        backend, config = self.backend, self.backend.config
        self._runner: Any = None
        settings = backend.settings(self.artifact)
        key = engine_cache_key(onnx_content_sha256(self.artifact.path), settings)
        engine_path, sidecar = backend.cache_dir / f"{key}.engine", backend.cache_dir / f"{key}.json"
        serialized = backend._cached(key, engine_path, sidecar) if config.use_cache else None
        hit = serialized is not None
        if serialized is None:
            profiles = None
            if settings["profile"]:
                profile = Profile()
                for name, (low, opt, high) in settings["profile"].items():
                    profile.add(name, min=low, opt=opt, max=high)
                profiles = [profile]
            create = CreateConfig(fp16=config.fp16, tf32=config.tf32, profiles=profiles,
                                  memory_pool_limits={trt.MemoryPoolType.WORKSPACE: config.workspace_mib << 20})
            log.info("building a TensorRT engine (fp16=%s tf32=%s)", config.fp16, config.tf32)
            serialized = bytes(EngineBytesFromNetwork(NetworkFromOnnxPath(str(self.artifact.path)), config=create)())
            if config.use_cache:
                backend._store(key, settings, serialized, engine_path, sidecar)
        engine = EngineFromBytes(serialized)()
        self._runner = TrtRunner(engine, name=backend.name)
        self._runner.activate()
        self._engine_record = {"cache_key": key, "cache_hit": hit, "settings": settings,
                               "engine_sha256": hashlib.sha256(serialized).hexdigest()}

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._runner.infer({k: contiguous(v) for k, v in feeds.items()})
        return {name: np.array(outputs[name], copy=True) for name in self.artifact.output_names}  # buffers reused

    def timer(self, feeds: Mapping[str, np.ndarray], include_transfers: bool = True) -> tuple[Any, str]:
        """Polygraphy's TrtRunner.infer copies inputs in and outputs out and synchronises: transfers always count."""
        run, _ = super().timer(feeds, include_transfers)
        return run, "perf_counter around TrtRunner.infer (always including host<->device copies)"

    def runtime_info(self) -> dict[str, Any]:
        config = self.backend.config
        info: dict[str, Any] = {"framework": "tensorrt", "device": f"cuda:{config.device_id}", "fp16": config.fp16,
                                "tf32": config.tf32, **device_info(config.device_id)}
        try:
            import tensorrt as trt

            info["tensorrt"] = trt.__version__
        except ImportError:
            pass
        info.update(self._engine_record)
        return info

    def _close(self) -> None:
        if getattr(self, "_runner", None) is not None:
            self._runner.deactivate()
            self._runner = None


@register
class TensorRTBackend(Backend):
    """Builds (or loads from parity's own cache) a TensorRT engine for the ONNX artifact and runs it.

    Engines are cached as <key>.engine beside <key>.json in `engine_cache_dir`; a cached engine is loaded
    only when its sidecar names the same key and the engine file's SHA-256 matches the one recorded when
    parity built it: engines are executable, so nothing else is ever deserialised.
    """

    Config = TensorRTBackendConfig
    # TensorRT's I/O types that Polygraphy feeds from numpy (no 16/32/64-bit unsigned, int16, float64, bfloat16)
    dtypes = frozenset({"bool", "int8", "int32", "int64", "uint8", "float16", "float32"})
    schema = "base_tensorrt_backend"
    session_class = TensorRTSession

    @property
    def cache_dir(self) -> Path:
        return Path(os.path.expanduser(self.config.engine_cache_dir))

    def availability(self) -> str | None:
        if importlib.util.find_spec("tensorrt") is None:
            return (missing_message("tensorrt", f"backend '{self.name}'") +
                    " (its wheels install on NVIDIA GPU machines only)")
        if importlib.util.find_spec("polygraphy") is None:
            return missing_message("polygraphy", f"backend '{self.name}'")
        return gpu_missing_reason()

    def settings(self, artifact: Artifact) -> dict[str, Any]:
        """Everything that changes the engine, for the cache key and the report."""
        import tensorrt as trt

        config = self.config
        profile = self._profile(artifact)
        return {
            "fp16": config.fp16,
            "tf32": config.tf32,
            "workspace_mib": config.workspace_mib,
            "profile": {k: [list(x) for x in v] for k, v in profile.items()} if profile else None,
            "tensorrt": trt.__version__,
            "device": device_info(config.device_id).get("device_name"),
        }

    def _profile(self, artifact: Artifact) -> dict[str, tuple[list[int], list[int], list[int]]] | None:
        """The profile for dynamic-batch artifacts; None when the ONNX inputs are static."""
        import onnx

        graph = onnx.load(str(artifact.path), load_external_data=False).graph
        dynamic = any(d.dim_param or not d.HasField("dim_value") for i in graph.input
                      for d in i.type.tensor_type.shape.dim)
        if not dynamic or not self.input_shapes:
            return None
        return derive_profile(self.input_shapes, self.batch_sizes or [1])

    def _cached(self, key: str, engine_path: Path, sidecar: Path) -> bytes | None:
        """The cached engine bytes, only if parity's sidecar vouches for exactly this file."""
        if not (engine_path.is_file() and sidecar.is_file()):
            return None
        try:
            meta = json.loads(sidecar.read_text())
        except ValueError:
            return None
        data = engine_path.read_bytes()
        if meta.get("key") != key or meta.get("engine_sha256") != hashlib.sha256(data).hexdigest():
            log.warning("ignoring cached engine %s: it does not match parity's record", engine_path)
            return None
        return data

    def _store(self, key: str, settings: dict[str, Any], data: bytes, engine_path: Path, sidecar: Path) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = engine_path.with_suffix(".engine.tmp")
        tmp.write_bytes(data)
        tmp.replace(engine_path)
        sidecar.write_text(json.dumps({"key": key, "settings": settings,
                                       "engine_sha256": hashlib.sha256(data).hexdigest()}, indent=2))
