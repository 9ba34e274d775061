"""OpenVINO: reads the ONNX artifact, compiles it for a device with properties from config (`openvino` extra)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from parity.backends.base import Backend, BackendConfig, Session
from parity.dependencies import missing_message, missing_module
from parity.errors import BackendError, ConfigError, one_line
from parity.inputs import contiguous
from parity.plugins import register

_PRECISIONS = ("f32", "bf16", "f16")
_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
_TYPED = {"INFERENCE_PRECISION_HINT": "inference_precision", "PERFORMANCE_HINT": "performance_hint",
          "INFERENCE_NUM_THREADS": "num_threads"}


@dataclass
class OpenVINOBackendConfig(BackendConfig):
    """OpenVINO runtime compiling the ONNX artifact for a device."""

    _target_: str = "parity.backends.openvino.OpenVINOBackend"
    name: str = "openvino_cpu"
    device: str = "CPU"
    inference_precision: Optional[str] = None  # None: the device's default (bf16 on CPUs with AMX/AVX512-BF16)
    performance_hint: str = "LATENCY"  # LATENCY | THROUGHPUT | CUMULATIVE_THROUGHPUT
    num_threads: int = 0  # 0: OpenVINO's default (INFERENCE_NUM_THREADS)
    properties: dict[str, Any] = field(default_factory=dict)  # any other compile property, passed as given

    def validate(self) -> None:
        if self.inference_precision is not None and self.inference_precision not in _PRECISIONS:
            raise ConfigError(f"backend '{self.name}': inference_precision '{self.inference_precision}' is not one "
                              f"of {list(_PRECISIONS)} (or null for the device default)")
        if self.performance_hint not in _HINTS:
            raise ConfigError(f"backend '{self.name}': performance_hint '{self.performance_hint}' is not one of "
                              f"{list(_HINTS)}")
        if self.num_threads < 0:
            raise ConfigError(f"backend '{self.name}': num_threads must be >= 0, got {self.num_threads}")
        clash = sorted(str(k) for k in self.properties if str(k) in _TYPED)
        if clash:  # one setting, one place: numerics=strict must not be undone by a raw property
            raise ConfigError(f"backend '{self.name}': set {', '.join(clash)} with "
                              f"{', '.join(_TYPED[k] for k in clash)}, not in properties")

    def with_numerics(self, numerics: Any) -> OpenVINOBackendConfig:
        if numerics.openvino_precision is None:
            return self
        return dataclasses.replace(self, inference_precision=numerics.openvino_precision)

    def compile_properties(self) -> dict[str, Any]:
        """What parity passes to compile_model: `properties`, then the typed settings (numerics included) on top."""
        props: dict[str, Any] = {str(k): v for k, v in self.properties.items()}
        props["PERFORMANCE_HINT"] = self.performance_hint
        if self.inference_precision is not None:
            props["INFERENCE_PRECISION_HINT"] = self.inference_precision
        if self.num_threads:
            props["INFERENCE_NUM_THREADS"] = self.num_threads
        return props


_LOCATION = re.compile(r"^(Exception from )?\S+\.(cpp|hpp|h):\d+:?$")
_CHECK = re.compile(r"Check '.*?' failed at \S+\.(cpp|hpp|h):\d+:\s*")


def openvino_reason(exc: BaseException) -> str:
    """OpenVINO's message without its C++ source locations ("Exception from src/inference/src/cpp/core.cpp:84:"
    lines, which come first and hide the cause, and "Check 'false' failed at <file>:<line>:" prefixes), on one
    line."""
    lines = [_CHECK.sub("", ln.strip()) for ln in str(exc).splitlines() if ln.strip() and
             not _LOCATION.match(ln.strip())]
    return " ".join(ln for ln in lines if ln) or type(exc).__name__


class OpenVINOSession(Session):
    def _open(self) -> None:
        import openvino as ov

        config = self.backend.config
        core = ov.Core()
        try:
            model = core.read_model(str(self.artifact.path))  # external data beside the file: by relative path
            self._compiled = core.compile_model(model, config.device, config.compile_properties())
            self._request = self._compiled.create_infer_request()
        except RuntimeError as exc:
            raise BackendError(f"backend '{self.backend.name}' failed to load the model: {openvino_reason(exc)}") \
                from exc
        self._ports = {}
        outputs = list(self._compiled.outputs)
        declared = self.artifact.output_names
        for index, name in enumerate(declared):
            named = [o for o in outputs if name in o.get_names()]
            if named:
                self._ports[name] = named[0]
            elif len(outputs) == len(declared):  # names lost in export: by position, as ORT does
                self._ports[name] = outputs[index]
            else:
                raise ValueError(f"the compiled model's outputs {[sorted(o.get_names()) for o in outputs]} do not "
                                 f"match the declared {declared}")
        self._inputs = [sorted(i.get_names()) for i in self._compiled.inputs]

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [n for names in self._inputs for n in names]
        missing = [group[0] for group in self._inputs if not any(n in feeds for n in group)]
        if missing:
            raise ValueError(f"the model needs inputs {missing} that the model config does not declare")
        run_feeds = {n: contiguous(feeds[n]) for n in names if n in feeds}
        results = self._request.infer(run_feeds)
        # copy: the request owns its output buffers and reuses them on the next inference
        return {name: np.array(results[port], copy=True) for name, port in self._ports.items()}

    def runtime_info(self) -> dict[str, Any]:
        import openvino as ov

        config = self.backend.config
        info: dict[str, Any] = {"framework": "openvino", "openvino": ov.get_version(), "device": config.device,
                                "requested_properties": {k: str(v) for k, v in config.compile_properties().items()}}
        try:
            info["device_name"] = ov.Core().get_property(config.device, "FULL_DEVICE_NAME")
        except Exception:
            pass
        for key, prop in (("inference_precision", "INFERENCE_PRECISION_HINT"),
                          ("performance_hint", "PERFORMANCE_HINT"), ("num_threads", "INFERENCE_NUM_THREADS"),
                          ("execution_devices", "EXECUTION_DEVICES"), ("num_streams", "NUM_STREAMS")):
            try:
                value = self._compiled.get_property(prop)
            except Exception as exc:
                value = f"unavailable: {one_line(exc)}"
            info[key] = _plain(value)
        return info

    def _close(self) -> None:
        self._request = None
        self._compiled = None


@register
class OpenVINOBackend(Backend):
    """`ov.Core().compile_model(read_model(onnx), device, properties)`.

    `inference_precision` None leaves the device's default in force: on CPUs with AVX512-BF16 or AMX that is
    bf16, not f32. The precision the compiled model really uses is read back and recorded.
    """

    Config = OpenVINOBackendConfig
    schema = "base_openvino_backend"
    # bfloat16 numpy inputs come back as float16 with other values (OpenVINO 2026.4): refused, never converted
    dtypes = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                        "float32", "float64"})
    session_class = OpenVINOSession

    def availability(self) -> str | None:
        try:
            import openvino as ov
        except ImportError as exc:
            return missing_message(missing_module(exc) or "openvino", f"backend '{self.name}'")
        devices = ov.Core().available_devices
        device = self.config.device
        if device.split(".")[0] not in devices and device not in devices:
            return f"OpenVINO {ov.__version__} has no device '{device}' here (available: {', '.join(devices)})"
        return None


def _plain(value: Any) -> Any:
    """OpenVINO property values (Type, enums, lists) as JSON-friendly values; precision as e.g. 'f32'."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    get_type_name = getattr(value, "get_type_name", None)  # ov.Type: 'f32', 'bf16', 'f16'
    if callable(get_type_name):
        return str(get_type_name())
    return str(getattr(value, "name", value))
