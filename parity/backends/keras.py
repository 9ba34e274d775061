"""Keras / TensorFlow eager on the CPU (seed 002's reference): the Keras model, or its SavedModel's `serve`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.backends.base import Backend, BackendConfig, Session
from parity.errors import ConfigError
from parity.inputs import contiguous
from parity.plugins import register

_SIGNATURES = ("keras", "serving")


@dataclass
class KerasBackendConfig(BackendConfig):
    """Keras / TensorFlow eager on the CPU: the Keras model itself, or its SavedModel's serving signature."""

    _target_: str = "parity.backends.keras.KerasBackend"
    name: str = "tf_cpu"
    signature: str = "keras"  # keras: call the Keras model | serving: export a SavedModel, reload, call `serve`
    device: str = "/CPU:0"

    def validate(self) -> None:
        if self.signature not in _SIGNATURES:
            raise ConfigError(f"backend '{self.name}': signature '{self.signature}' is not one of {list(_SIGNATURES)}")


class KerasSession(Session):
    def _open(self) -> None:
        from parity.frameworks.keras import import_keras

        tf, _ = import_keras()
        tf.config.experimental.enable_op_determinism()  # as the reference runs; process-wide, TF has no "disable"
        model = self.artifact.module
        self._tmp: Path | None = None
        self._restored: Any = None
        from parity.frameworks.keras import SavedModel

        if isinstance(model, SavedModel):  # a SavedModel is its serving signature: both settings call it
            self._call = lambda args: model(args)
            return
        if self.backend.config.signature == "keras":
            self._call = lambda args: model(args[0] if len(args) == 1 else args, training=False)
            return
        self._tmp = Path(tempfile.mkdtemp(prefix="parity-savedmodel-"))
        model.export(str(self._tmp / "saved_model"), format="tf_saved_model", verbose=False)
        self._restored = tf.saved_model.load(str(self._tmp / "saved_model"))  # keep it: `serve` needs its variables
        serve = self._restored.serve
        self._call = lambda args: serve(*args)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        from parity.frameworks.keras import keras_outputs

        args = [contiguous(feeds[name]) for name in self.artifact.input_names]
        with tf.device(self.backend.config.device):
            result = self._call(args)
        return keras_outputs(result, self.artifact.output_names)

    def runtime_info(self) -> dict[str, Any]:
        import keras
        import tensorflow as tf

        return {"framework": "tensorflow", "tensorflow": tf.__version__, "keras": keras.__version__,
                "signature": self.backend.config.signature, "device": self.backend.config.device,
                "op_determinism": True,  # enabled in _open()
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}

    def _close(self) -> None:
        self._call = None
        self._restored = None
        if getattr(self, "_tmp", None) is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


@register
class KerasBackend(Backend):
    """Runs the live Keras model (`signature: keras`), or exports it as a SavedModel, reloads it with
    `tf.saved_model.load` and calls its `serve` endpoint (`signature: serving`), on `device`."""

    Config = KerasBackendConfig
    schema = "base_keras_backend"
    accepts = frozenset({"keras"})
    session_class = KerasSession

    def availability(self) -> str | None:
        from parity.frameworks.keras import keras_unavailable

        return keras_unavailable()
