"""Source-model frameworks: build a model under its seed, hash its weights, run the eager reference.

torch is the default; keras (Keras 3 on TensorFlow, the `tf` extra) serves seed 002's models. Each framework's
libraries are imported only when a job needs them; a missing one raises UnavailableError (a SKIP with the reason).
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from parity.config import framework_name
from parity.errors import ConfigError, ModelError, UnavailableError, one_line


class Framework(ABC):
    """What the runner needs from the framework a model is written in."""

    name: ClassVar[str]
    reference_backend: ClassVar[str]  # the backend option that runs this framework's models eagerly

    @abstractmethod
    def availability(self) -> str | None:
        """None when the framework imports here, else the reason it does not."""

    @abstractmethod
    def build(self, model_cfg: Any) -> Any:
        """Call the configured builder under the model's seed; the model in inference mode, float32, CPU."""

    @abstractmethod
    def weights_sha256(self, model: Any) -> str:
        """SHA-256 over every parameter and buffer (name, dtype, shape, bytes) in a stable order."""

    @abstractmethod
    def run(self, model: Any, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
            output_names: Sequence[str]) -> dict[str, np.ndarray]:
        """The reference: one deterministic eager forward pass on the CPU, outputs by declared name."""

    @abstractmethod
    def reference_info(self) -> dict[str, Any]:
        """How the reference runs, for golden manifests."""

    def require(self) -> None:
        reason = self.availability()
        if reason is not None:
            raise UnavailableError(reason)


class TorchFramework(Framework):
    name = "torch"
    reference_backend = "torch_cpu"

    def availability(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return f"torch is not installed ({one_line(exc)}): pip install -e '.[cpu]'"
        return None

    def build(self, model_cfg: Any) -> Any:
        from parity.models import build_model

        return build_model(model_cfg)

    def weights_sha256(self, model: Any) -> str:
        from parity.models import weights_sha256

        return weights_sha256(model)

    def run(self, model: Any, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
            output_names: Sequence[str]) -> dict[str, np.ndarray]:
        from parity.models import deterministic, run_torch

        with deterministic():
            return run_torch(model, feeds, input_names, output_names)

    def reference_info(self) -> dict[str, Any]:
        return {"backend": "torch eager", "device": "cpu", "dtype": "float32", "deterministic": True}


def import_keras() -> tuple[Any, Any]:
    """(tensorflow, keras) with Keras on the TensorFlow backend and TensorFlow's C++ log chatter off.

    Raises UnavailableError naming what is missing or misconfigured.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import keras
        import tensorflow as tf
    except ImportError as exc:
        raise UnavailableError(f"tensorflow/keras are not installed ({one_line(exc)}): "
                               "pip install -e '.[tf]' (tensorflow-cpu, keras, tf2onnx)") from exc
    if keras.backend.backend() != "tensorflow":
        raise UnavailableError(f"Keras runs on the '{keras.backend.backend()}' backend; parity's keras models need "
                               "KERAS_BACKEND=tensorflow")
    return tf, keras


def keras_unavailable(*extra_modules: str) -> str | None:
    """None when Keras on TensorFlow (and `extra_modules`) import here, else the reason they do not."""
    try:
        import_keras()
        for module in extra_modules:
            __import__(module)
    except UnavailableError as exc:
        return str(exc)
    except ImportError as exc:
        return f"{exc.name or 'a module'} is not installed ({one_line(exc)}): pip install -e '.[tf]'"
    except Exception as exc:  # installed but broken (e.g. a protobuf mismatch): it cannot run here either
        return f"tensorflow/keras do not import here ({one_line(exc)})"
    return None


class KerasFramework(Framework):
    """Keras 3 on TensorFlow, run eagerly on the CPU with op determinism on."""

    name = "keras"
    reference_backend = "tf_cpu"

    def availability(self) -> str | None:
        return keras_unavailable()

    def build(self, model_cfg: Any) -> Any:
        from hydra.utils import instantiate

        _, keras = import_keras()
        keras.utils.set_random_seed(int(model_cfg.seed))  # python, numpy and TensorFlow seeds at once
        try:
            model = instantiate(model_cfg.builder, _convert_="all")
        except Exception as exc:
            cause = exc.__cause__ or exc
            raise ConfigError(f"model '{model_cfg.name}': builder failed: {one_line(cause)}") from exc
        if not isinstance(model, keras.Model):
            raise ConfigError(f"model '{model_cfg.name}': builder returned {type(model).__name__}, not a keras.Model")
        if model.dtype_policy.name != "float32":
            raise ConfigError(f"model '{model_cfg.name}': dtype policy {model.dtype_policy.name}, parity needs float32")
        return model

    def weights_sha256(self, model: Any) -> str:
        digest = hashlib.sha256()
        for variable in model.weights:  # trainable and non-trainable (BatchNorm moving statistics), in layer order
            array = np.ascontiguousarray(np.asarray(variable.numpy()))
            digest.update(f"{variable.path}|{array.dtype}|{tuple(array.shape)}\n".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def run(self, model: Any, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
            output_names: Sequence[str]) -> dict[str, np.ndarray]:
        tf, _ = import_keras()
        tf.config.experimental.enable_op_determinism()
        args = [np.ascontiguousarray(feeds[name]) for name in input_names]
        try:
            with tf.device("/CPU:0"):
                result = model(args[0] if len(args) == 1 else args, training=False)
        except Exception as exc:
            raise ModelError(f"keras forward failed: {one_line(exc)}") from exc
        return keras_outputs(result, output_names)

    def reference_info(self) -> dict[str, Any]:
        import tensorflow as tf

        return {"backend": "keras eager (tensorflow)", "device": "cpu", "dtype": "float32", "deterministic": True,
                "tensorflow": tf.__version__}


def output_values(result: Any, output_names: Sequence[str]) -> list[Any]:
    """A forward result of any framework (one value, a list/tuple, or a dict by name) as its values in declared
    output order; ModelError when it does not match the declared outputs."""
    if isinstance(result, Mapping):
        missing = [n for n in output_names if n not in result]
        if missing:
            raise ModelError(f"model returned keys {sorted(result)}, missing declared outputs {missing}")
        values = [result[n] for n in output_names]
    elif isinstance(result, (list, tuple)):
        values = list(result)
    else:
        values = [result]
    if len(values) != len(output_names):
        raise ModelError(f"model returned {len(values)} outputs, config declares {len(output_names)}: "
                         f"{list(output_names)}")
    return values


def keras_outputs(result: Any, output_names: Sequence[str]) -> dict[str, np.ndarray]:
    """A Keras call result as numpy arrays by declared output name."""
    return {name: np.asarray(value) for name, value in zip(output_names, output_values(result, output_names))}


_FRAMEWORKS: dict[str, type[Framework]] = {"torch": TorchFramework, "keras": KerasFramework}


def framework_for(model_cfg: Any) -> Framework:
    """The framework a model config declares (`framework: torch | keras`)."""
    return _FRAMEWORKS[framework_name(model_cfg)]()
