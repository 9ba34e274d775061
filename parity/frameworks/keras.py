"""Keras 3 models on the TensorFlow backend (the `tf` extra): seeded construction, weight hashing, the reference."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from parity.dependencies import missing_message, missing_module
from parity.errors import ConfigError, ModelError, UnavailableError, one_line
from parity.frameworks.base import Framework, builder_error, output_values
from parity.inputs import contiguous


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
        raise UnavailableError(missing_message(missing_module(exc) or "tensorflow", "a Keras model")) from exc
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
        return missing_message(missing_module(exc) or "tensorflow", "a Keras model")
    except Exception as exc:  # installed but broken (e.g. a protobuf mismatch): it cannot run here either
        return f"tensorflow/keras do not import here ({one_line(exc)})"
    return None


def keras_outputs(result: Any, output_names: Sequence[str]) -> dict[str, np.ndarray]:
    """A Keras call result as numpy arrays by declared output name."""
    return {name: np.asarray(value) for name, value in zip(output_names, output_values(result, output_names))}


class SavedModel:
    """A TensorFlow SavedModel directory as the model itself (seed 002 starts from one): its signature called with
    the declared inputs by name, its outputs in declared order (by name, else by position when the signature
    names them otherwise, as Keras' export does: output_0, ...)."""

    def __init__(self, path: Path, signature: str, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        tf, _ = import_keras()
        try:
            self.loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ConfigError(f"model.path: {path} is not a loadable SavedModel: {one_line(exc)}") from None
        signatures = dict(self.loaded.signatures)
        if signature not in signatures:
            raise ConfigError(f"model.signature '{signature}' is not a signature of {path.name} "
                              f"(it has: {', '.join(sorted(signatures)) or 'none'})")
        self.path, self.signature = path, signature
        self.function = signatures[signature]
        self.signature_inputs = sorted(self.function.structured_input_signature[1])
        self.signature_outputs = sorted(self.function.structured_outputs, key=_output_order)
        if sorted(input_names) != self.signature_inputs:
            raise ConfigError(f"model.inputs {list(input_names)} are not the inputs of signature '{signature}' of "
                              f"{path.name}: {self.signature_inputs}")
        self.input_names, self.output_names = list(input_names), list(output_names)
        self.by_name = set(output_names) <= set(self.signature_outputs)
        # by position only where the signature's names say the position (Keras' output_0, output_1, ...) or there
        # is one output: a dict of other names has no order to trust
        positional = len(output_names) == len(self.signature_outputs) and (
            len(output_names) == 1 or all(_output_order(n)[0] == 0 for n in self.signature_outputs))
        if not (self.by_name or positional):
            raise ConfigError(f"model.outputs {list(output_names)} are not the outputs of signature '{signature}' "
                              f"of {path.name}: {self.signature_outputs} (name the model's outputs as the "
                              f"signature does)")

    def __call__(self, args: Any, training: bool = False) -> dict[str, Any]:
        """Positional inputs in declared order (as Keras models are called), outputs by declared name."""
        values = list(args) if isinstance(args, (list, tuple)) else [args]
        return self.call(dict(zip(self.input_names, values)))

    def call(self, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
        tf, _ = import_keras()
        result = self.function(**{name: tf.constant(feeds[name]) for name in self.input_names})
        if self.by_name:
            return {name: result[name] for name in self.output_names}
        return dict(zip(self.output_names, (result[name] for name in self.signature_outputs)))

    @property
    def weights(self) -> list[Any]:
        """Every variable the signature reads, once each (by identity: two variables may share a name), in a
        stable order: by name, then as the function captures them."""
        unique: dict[int, Any] = {}
        for variable in getattr(self.function, "variables", None) or getattr(self.loaded, "variables", ()):
            unique.setdefault(id(variable), variable)
        return sorted(unique.values(), key=lambda v: v.name)


def _layers(model: Any) -> list[Any]:
    if isinstance(model, SavedModel):
        raise ConfigError("localize=source needs the Keras model's layers; a SavedModel directory has none to list "
                          "(build the model with its builder, or use localize=all)")
    _, keras = import_keras()
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _flat(value: Any) -> list[Any]:
    return [v for item in value for v in _flat(item)] if isinstance(value, (list, tuple)) else [value]


def _output_order(name: str) -> tuple[int, int | str]:
    """Sort key of a signature's output names: Keras' `output_<n>` by n (before any other name), others by name."""
    match = re.fullmatch(r"output_(\d+)", name)
    return (0, int(match.group(1))) if match else (1, name)


class KerasFramework(Framework):
    """Keras 3 on TensorFlow, run eagerly on the CPU with op determinism on."""

    name = "keras"
    reference_backend = "tf_cpu"

    def availability(self) -> str | None:
        return keras_unavailable()

    def build(self, model_cfg: Any) -> Any:
        from hydra.utils import instantiate

        _, keras = import_keras()
        if model_cfg.path:  # a SavedModel directory is the model itself
            return SavedModel(Path(model_cfg.path), model_cfg.signature, [s.name for s in model_cfg.inputs],
                              [o.name for o in model_cfg.outputs])
        keras.utils.set_random_seed(int(model_cfg.seed))  # python, numpy and TensorFlow seeds at once
        try:
            model = instantiate(model_cfg.builder, _convert_="all")
        except Exception as exc:
            raise builder_error(model_cfg, exc) from exc
        if not isinstance(model, keras.Model):
            raise ConfigError(f"model '{model_cfg.name}': builder returned {type(model).__name__}, not a keras.Model")
        if model.dtype_policy.name != "float32":
            raise ConfigError(f"model '{model_cfg.name}': dtype policy {model.dtype_policy.name}, parity needs float32")
        if model_cfg.weights:  # trained weights replace the seeded ones (parity.weights)
            from parity.weights import load_keras

            load_keras(model, model_cfg)
        return model

    def weights_sha256(self, model: Any) -> str:
        digest = hashlib.sha256()
        for variable in model.weights:  # trainable and non-trainable (BatchNorm moving statistics), in layer order
            array = np.ascontiguousarray(np.asarray(variable.numpy()))
            name = getattr(variable, "path", None) or variable.name  # a SavedModel's tf.Variables have no path
            digest.update(f"{name}|{array.dtype}|{tuple(array.shape)}\n".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def run(self, model: Any, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
            output_names: Sequence[str]) -> dict[str, np.ndarray]:
        tf, _ = import_keras()
        tf.config.experimental.enable_op_determinism()
        args = [contiguous(feeds[name]) for name in input_names]
        try:
            with tf.device("/CPU:0"):
                result = model.call(feeds) if isinstance(model, SavedModel) else \
                    model(args[0] if len(args) == 1 else args, training=False)
        except Exception as exc:
            raise ModelError(f"keras forward failed: {one_line(exc)}") from exc
        return keras_outputs(result, output_names)

    def code_classes(self, model: Any) -> list[type]:
        """The model's class and every layer's, nested ones included (a SavedModel: its own wrapper only, its
        graph is in the key through the directory's SHA-256)."""
        walk = getattr(model, "_flatten_layers", None)  # keras 3: every layer, recursively, the model first
        try:
            layers = list(walk(include_self=True, recursive=True)) if walk is not None else [model]
        except TypeError:
            layers = [model]
        return list({type(layer): None for layer in layers})

    def module_tree(self, model: Any) -> Any:
        from parity.diagnostics.scopes import flat_tree

        return flat_tree([layer.name for layer in _layers(model)])

    def module_calls(self, model: Any, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
                     wanted: set[tuple[str, int]] | None = None) -> tuple[list[Any], dict[Any, Any]]:
        """Every layer's output (and, for `wanted`, its inputs) from one eager pass of a model that lists its
        layers' outputs, in layer order (a Sequential or functional model: the order they run in)."""
        from parity.diagnostics.source import Captured, ModuleCall

        tf, keras = import_keras()
        layers = _layers(model)
        keep = [layer for layer in layers if wanted is not None and (layer.name, 0) in wanted]
        inputs_of = [_flat(layer.input) for layer in keep]
        try:
            probe = keras.Model(model.inputs, [layer.output for layer in layers] + [t for ts in inputs_of for t in ts])
        except Exception as exc:
            raise ConfigError(f"localize=source needs a Keras model whose layers' outputs it can list (a Sequential "
                              f"or functional model): {one_line(exc)}") from exc
        args = [contiguous(feeds[name]) for name in input_names]
        with tf.device("/CPU:0"):
            values = [np.asarray(v) for v in _flat(probe(args[0] if len(args) == 1 else args, training=False))]
        outputs, rest = values[:len(layers)], values[len(layers):]
        calls = [ModuleCall(layer.name, 0, True, (tuple(out.shape),)) for layer, out in zip(layers, outputs)]
        captured = {}
        by_name = dict(zip((layer.name for layer in layers), outputs))
        for layer, ins in zip(keep, inputs_of):
            captured[(layer.name, 0)] = Captured(rest[:len(ins)], [by_name[layer.name]])
            rest = rest[len(ins):]
        return calls, captured

    def reference_info(self) -> dict[str, Any]:
        import tensorflow as tf

        return {"backend": "keras eager (tensorflow)", "device": "cpu", "dtype": "float32", "deterministic": True,
                "tensorflow": tf.__version__}
