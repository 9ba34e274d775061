"""OpenVINO: reads the ONNX artifact, compiles it for a device with properties from config (`openvino` extra)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from parity.artifact import Artifact
from parity.backends.base import Backend
from parity.errors import ConfigError, one_line

_PRECISIONS = ("f32", "bf16", "f16")
_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


class OpenVINOBackend(Backend):
    """`ov.Core().compile_model(read_model(onnx), device, properties)`.

    `inference_precision` None leaves the device's default in force: on CPUs with AVX512-BF16 or AMX that is
    bf16, not f32. The precision the compiled model really uses is read back and recorded.
    """

    def __init__(self, name: str, device: str = "CPU", inference_precision: str | None = None,
                 performance_hint: str = "LATENCY", num_threads: int = 0,
                 properties: Mapping[str, Any] | None = None) -> None:
        super().__init__(name)
        if inference_precision is not None and inference_precision not in _PRECISIONS:
            raise ConfigError(f"backend '{name}': inference_precision '{inference_precision}' is not one of "
                              f"{list(_PRECISIONS)} (or null for the device default)")
        if performance_hint not in _HINTS:
            raise ConfigError(f"backend '{name}': performance_hint '{performance_hint}' is not one of {list(_HINTS)}")
        if num_threads < 0:
            raise ConfigError(f"backend '{name}': num_threads must be >= 0, got {num_threads}")
        self.device = device
        self.inference_precision = inference_precision
        self.performance_hint = performance_hint
        self.num_threads = num_threads
        self.properties = {str(k): v for k, v in (properties or {}).items()}
        typed = {"INFERENCE_PRECISION_HINT": "inference_precision", "PERFORMANCE_HINT": "performance_hint",
                 "INFERENCE_NUM_THREADS": "num_threads"}
        clash = sorted(k for k in self.properties if k in typed)
        if clash:  # one setting, one place: numerics=strict must not be undone by a raw property
            raise ConfigError(f"backend '{name}': set {', '.join(clash)} with "
                              f"{', '.join(typed[k] for k in clash)}, not in properties")
        self._compiled: Any = None
        self._request: Any = None

    def compile_properties(self) -> dict[str, Any]:
        """What parity passes to compile_model: `properties`, then the typed settings (numerics included) on top."""
        props: dict[str, Any] = dict(self.properties)
        props["PERFORMANCE_HINT"] = self.performance_hint
        if self.inference_precision is not None:
            props["INFERENCE_PRECISION_HINT"] = self.inference_precision
        if self.num_threads:
            props["INFERENCE_NUM_THREADS"] = self.num_threads
        return props

    def availability(self) -> str | None:
        try:
            import openvino as ov
        except ImportError as exc:
            return f"openvino is not installed ({one_line(exc)}): pip install -e '.[openvino]'"
        devices = ov.Core().available_devices
        if self.device.split(".")[0] not in devices and self.device not in devices:
            return f"OpenVINO {ov.__version__} has no device '{self.device}' here (available: {', '.join(devices)})"
        return None

    def _load_impl(self, artifact: Artifact) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(artifact.path))  # external data beside the file is found by its relative path
        self._compiled = core.compile_model(model, self.device, self.compile_properties())
        self._request = self._compiled.create_infer_request()
        self._ports = {}
        outputs = list(self._compiled.outputs)
        for index, name in enumerate(artifact.output_names):
            named = [o for o in outputs if name in o.get_names()]
            if named:
                self._ports[name] = named[0]
            elif len(outputs) == len(artifact.output_names):  # names lost in export: by position, as ORT does
                self._ports[name] = outputs[index]
            else:
                raise ValueError(f"the compiled model's outputs {[sorted(o.get_names()) for o in outputs]} do not "
                                 f"match the declared {artifact.output_names}")
        self._inputs = [sorted(i.get_names()) for i in self._compiled.inputs]

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._loaded is not None
        names = [n for names in self._inputs for n in names]
        missing = [group[0] for group in self._inputs if not any(n in feeds for n in group)]
        if missing:
            raise ValueError(f"the model needs inputs {missing} that the model config does not declare")
        run_feeds = {n: np.ascontiguousarray(feeds[n]) for n in names if n in feeds}
        results = self._request.infer(run_feeds)
        # copy: the request owns its output buffers and reuses them on the next inference
        return {name: np.array(results[port], copy=True) for name, port in self._ports.items()}

    def _close_impl(self) -> None:
        self._request = None
        self._compiled = None

    def runtime_info(self) -> dict[str, Any]:
        import openvino as ov

        info: dict[str, Any] = {"framework": "openvino", "openvino": ov.get_version(), "device": self.device,
                                "requested_properties": {k: str(v) for k, v in self.compile_properties().items()}}
        try:
            info["device_name"] = ov.Core().get_property(self.device, "FULL_DEVICE_NAME")
        except Exception:
            pass
        if self._compiled is not None:
            for key, prop in (("inference_precision", "INFERENCE_PRECISION_HINT"),
                              ("performance_hint", "PERFORMANCE_HINT"), ("num_threads", "INFERENCE_NUM_THREADS"),
                              ("execution_devices", "EXECUTION_DEVICES"), ("num_streams", "NUM_STREAMS")):
                try:
                    value = self._compiled.get_property(prop)
                except Exception as exc:
                    value = f"unavailable: {one_line(exc)}"
                info[key] = _plain(value)
        return info


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
