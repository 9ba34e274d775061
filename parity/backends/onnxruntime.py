"""ONNX Runtime with any execution providers; a requested provider that did not load is an ERROR."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parity.backends.base import Backend, BackendConfig, Session
from parity.dependencies import missing_message
from parity.errors import BackendError, ConfigError, ProviderFallbackError
from parity.inputs import bfloat16_bits, contiguous
from parity.plugins import register

log = logging.getLogger("parity")

_OPT_LEVELS = {
    "disable_all": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
_EXEC_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}


@dataclass
class ProviderConfig:
    """One ONNX Runtime execution provider and its options."""

    name: str = "CPUExecutionProvider"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OrtBackendConfig(BackendConfig):
    """ONNX Runtime with an ordered list of execution providers."""

    _target_: str = "parity.backends.onnxruntime.OrtBackend"
    name: str = "ort_cpu"
    providers: list[ProviderConfig] = field(default_factory=lambda: [ProviderConfig()])
    graph_optimization_level: str = "all"  # disable_all | basic | extended | all
    intra_op_num_threads: int = 0  # 0: ONNX Runtime's default
    inter_op_num_threads: int = 0
    execution_mode: str = "sequential"  # sequential | parallel

    def validate(self) -> None:
        if self.graph_optimization_level not in _OPT_LEVELS:
            raise ConfigError(f"backend '{self.name}': graph_optimization_level '{self.graph_optimization_level}' "
                              f"is not one of {sorted(_OPT_LEVELS)}")
        if self.execution_mode not in _EXEC_MODES:
            raise ConfigError(f"backend '{self.name}': execution_mode '{self.execution_mode}' is not one of "
                              f"{sorted(_EXEC_MODES)}")
        for key in ("intra_op_num_threads", "inter_op_num_threads"):
            if getattr(self, key) < 0:
                raise ConfigError(f"backend '{self.name}': {key} must be >= 0 (0: ONNX Runtime's default), "
                                  f"got {getattr(self, key)}")
        if not self.providers:
            raise ConfigError(f"backend '{self.name}': providers is empty; name at least one execution provider")
        known = known_providers()
        for provider in self.providers:
            if known and provider.name not in known:  # a typo would otherwise be a SKIP ("not available")
                near = difflib.get_close_matches(provider.name, known, n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise ConfigError(f"backend '{self.name}': '{provider.name}' is not an ONNX Runtime execution "
                                  f"provider{hint}")

    def with_numerics(self, numerics: Any) -> OrtBackendConfig:
        if numerics.ort_graph_optimization_level is None:
            return self
        return dataclasses.replace(self, graph_optimization_level=numerics.ort_graph_optimization_level)


class OrtSession(Session):
    """onnxruntime.InferenceSession over the ONNX artifact; checks that every requested provider really loaded."""

    def _open(self) -> None:
        import onnxruntime as ort

        config = self.backend.config
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   _OPT_LEVELS[config.graph_optimization_level])
        options.execution_mode = getattr(ort.ExecutionMode, _EXEC_MODES[config.execution_mode])
        options.intra_op_num_threads = config.intra_op_num_threads
        options.inter_op_num_threads = config.inter_op_num_threads
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(self.artifact.path), sess_options=options,
            providers=[(p.name, {str(k): str(v) for k, v in (p.options or {}).items()}) for p in config.providers],
        )
        active = self._session.get_providers()
        fell_back = [p for p in self.backend.requested if p not in active]
        if fell_back:
            raise ProviderFallbackError(
                f"requested provider(s) {', '.join(fell_back)} did not load; ONNX Runtime ran on "
                f"{', '.join(active)} instead (a silent fallback, not a valid result)"
            )
        self._graph_outputs = [o.name for o in self._session.get_outputs()]
        self._bfloat16_outputs = {o.name for o in self._session.get_outputs() if o.type == "tensor(bfloat16)"}
        self._graph_inputs = [i.name for i in self._session.get_inputs()]
        self._positional = False

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        declared = self.artifact.output_names
        missing = [name for name in self._graph_inputs if name not in feeds]
        if missing:
            raise ValueError(f"the ONNX graph needs inputs {missing} that the model config does not declare")
        run_feeds = {name: contiguous(feeds[name]) for name in self._graph_inputs}
        if all(name in self._graph_outputs for name in declared):
            names = list(declared)
        elif len(self._graph_outputs) == len(declared):  # names lost in export: match by position, and say so
            if not self._positional:
                log.warning("ONNX outputs %s do not carry the declared names %s: matched by position",
                            self._graph_outputs, declared)
            self._positional = True
            names = list(self._graph_outputs)
        else:
            raise ValueError(f"the ONNX graph's outputs {self._graph_outputs} do not match the declared {declared}")
        self._refuse_bfloat16_outputs(names)
        if any(a.dtype.name == "bfloat16" for a in run_feeds.values()):
            values = [v.numpy() for v in self._session.run_with_ort_values(names, _ort_values(run_feeds))]
        else:
            values = self._session.run(names, run_feeds)
        return dict(zip(declared, values))

    def _refuse_bfloat16_outputs(self, names: list[str]) -> None:
        bf16 = [n for n in names if n in self._bfloat16_outputs]
        if bf16:  # ONNX Runtime's Python API has no numpy type to hand them back as
            raise BackendError(f"backend '{self.backend.name}': ONNX Runtime's Python API cannot return bfloat16 "
                               f"outputs ({', '.join(bf16)})")

    def timer(self, feeds: Mapping[str, np.ndarray], include_transfers: bool = True) -> tuple[Any, str]:
        """session.run on CPU providers; with a CUDA/TensorRT provider, I/O binding plus synchronisation, inputs
        and outputs on the device unless `include_transfers` (then the host<->device copies are timed too)."""
        import onnxruntime as ort

        session = self._session
        run_feeds = {name: contiguous(feeds[name]) for name in self._graph_inputs}
        outputs = list(self._graph_outputs)
        self._refuse_bfloat16_outputs(outputs)
        bf16 = [name for name, a in run_feeds.items() if a.dtype.name == "bfloat16"]
        if not (_GPU_PROVIDERS & set(session.get_providers())):
            if bf16:  # OrtValues made once, outside the timed region
                values = _ort_values(run_feeds)

                def run_values() -> float:
                    start = time.perf_counter()
                    session.run_with_ort_values(outputs, values)
                    return time.perf_counter() - start

                return run_values, "perf_counter around session.run_with_ort_values (CPU execution provider)"

            def run_cpu() -> float:
                start = time.perf_counter()
                session.run(outputs, run_feeds)
                return time.perf_counter() - start

            return run_cpu, "perf_counter around session.run (CPU execution provider)"
        if bf16:
            raise BackendError(f"backend '{self.backend.name}': bfloat16 inputs ({', '.join(bf16)}) are not timed "
                               f"with I/O binding on a device provider")
        options = session.get_provider_options().get("CUDAExecutionProvider", {})
        device_id = int(options.get("device_id", 0) or 0)
        binding = session.io_binding()
        for name, array in run_feeds.items():
            if include_transfers:
                binding.bind_cpu_input(name, array)
            else:
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", device_id))
        for name in self._graph_outputs:
            binding.bind_output(name, "cpu" if include_transfers else "cuda", 0 if include_transfers else device_id)

        def run_bound() -> float:
            start = time.perf_counter()
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            return time.perf_counter() - start

        what = "including" if include_transfers else "excluding"
        return run_bound, f"perf_counter around run_with_iobinding + synchronize_outputs, {what} host<->device copies"

    def runtime_info(self) -> dict[str, Any]:
        import onnxruntime as ort

        config = self.backend.config
        active = self._session.get_providers()
        info: dict[str, Any] = {
            "framework": "onnxruntime",
            "onnxruntime": ort.__version__,
            # where it ran: onnxruntime-gpu's get_device() says GPU even for a session on the CPU provider alone
            "device": ort.get_device() if set(active) - {"CPUExecutionProvider"} else "CPU",
            "build_device": ort.get_device(),
            "providers_requested": self.backend.requested,
            "graph_optimization_level": config.graph_optimization_level,
            "intra_op_num_threads": config.intra_op_num_threads,
            "inter_op_num_threads": config.inter_op_num_threads,
            "execution_mode": config.execution_mode,
            "providers_active": active,
            "provider_options": self._session.get_provider_options(),
            "graph_outputs": list(self._graph_outputs),
        }
        if _GPU_PROVIDERS & set(info["providers_active"]):
            from parity.backends.gpu import device_info

            options = info["provider_options"].get("CUDAExecutionProvider", {})
            info.update(device_info(int(options.get("device_id", 0) or 0)))
            if "TensorrtExecutionProvider" in info["providers_active"]:
                info["tensorrt"] = tensorrt_version()
        return info

    def _close(self) -> None:
        self._session = None


def _ort_values(feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Feeds as OrtValues: ONNX Runtime's Python API takes no ml_dtypes arrays, so a bfloat16 input goes in as
    its uint16 bit pattern typed BFLOAT16."""
    import onnxruntime as ort
    from onnx import TensorProto

    return {name: ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bfloat16_bits(a), TensorProto.BFLOAT16)
            if a.dtype.name == "bfloat16" else ort.OrtValue.ortvalue_from_numpy(a) for name, a in feeds.items()}


@register
class OrtBackend(Backend):
    """ONNX Runtime over the ONNX artifact, with `providers` in order.

    ORT silently falls back to CPU when a provider cannot load; parity makes that an ERROR naming the providers
    that really ran, never a PASS computed somewhere else (there is no switch to allow it).
    """

    Config = OrtBackendConfig
    schema = "base_ort_backend"
    session_class = OrtSession

    @property
    def requested(self) -> list[str]:
        return [p.name for p in self.config.providers]

    def availability(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return (missing_message("onnxruntime", f"backend '{self.name}'") +
                    " (onnxruntime-gpu for the GPU providers)")
        import onnxruntime as ort

        available = ort.get_available_providers()
        missing = [p for p in self.requested if p not in available]
        if missing:
            hint = "; GPU providers come with onnxruntime-gpu, not onnxruntime" if _GPU_PROVIDERS & set(missing) else ""
            return f"onnxruntime {ort.__version__} lacks {', '.join(missing)} (available: {', '.join(available)}{hint})"
        if "TensorrtExecutionProvider" in self.requested and tensorrt_version() is None:
            # onnxruntime-gpu always lists the provider; without libnvinfer it silently falls back
            return ("ONNX Runtime's TensorRT provider needs the TensorRT libraries (libnvinfer), not found here: "
                    "pip install tensorrt")
        return None


def known_providers() -> list[str]:
    """Every execution provider name ONNX Runtime knows (built here or not); [] when it is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime as ort

    return list(ort.get_all_providers())


def tensorrt_version() -> str | None:
    """The TensorRT version whose libraries this process can load (the tensorrt wheel, or libnvinfer), or None."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-libs", "tensorrt-cu13-libs",
                 "tensorrt-cu12-libs"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    import ctypes
    import ctypes.util

    for name in ("libnvinfer.so.10", "libnvinfer.so", ctypes.util.find_library("nvinfer")):
        if not name:
            continue
        try:
            ctypes.CDLL(name)
            return f"libnvinfer ({name})"
        except OSError:
            continue
    return None
