"""Keras / TensorFlow eager on the CPU (seed 002's reference): the Keras model, or its SavedModel's `serve`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from parity.artifact import Artifact
from parity.backends.base import Backend
from parity.errors import ConfigError

_SIGNATURES = ("keras", "serving")


class KerasBackend(Backend):
    """Runs the live Keras model (`signature: keras`), or exports it as a SavedModel, reloads it with
    `tf.saved_model.load` and calls its `serve` endpoint (`signature: serving`), on `device`."""

    accepts = "keras"

    def __init__(self, name: str, signature: str = "keras", device: str = "/CPU:0") -> None:
        super().__init__(name)
        if signature not in _SIGNATURES:
            raise ConfigError(f"backend '{name}': signature '{signature}' is not one of {list(_SIGNATURES)}")
        self.signature = signature
        self.device = device
        self._call: Any = None
        self._restored: Any = None
        self._tmp: Path | None = None

    def availability(self) -> str | None:
        from parity.frameworks.keras import keras_unavailable

        return keras_unavailable()

    def _load_impl(self, artifact: Artifact) -> None:
        from parity.frameworks.keras import import_keras

        tf, _ = import_keras()
        tf.config.experimental.enable_op_determinism()  # as the reference runs; process-wide, TF has no "disable"
        model = artifact.module
        if self.signature == "keras":
            self._call = lambda args: model(args[0] if len(args) == 1 else args, training=False)
            return
        self._tmp = Path(tempfile.mkdtemp(prefix="parity-savedmodel-"))
        model.export(str(self._tmp / "saved_model"), format="tf_saved_model", verbose=False)
        self._restored = tf.saved_model.load(str(self._tmp / "saved_model"))  # keep it: `serve` needs its variables
        serve = self._restored.serve
        self._call = lambda args: serve(*args)

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        from parity.frameworks.keras import keras_outputs

        assert self._loaded is not None
        args = [np.ascontiguousarray(feeds[name]) for name in self._loaded.input_names]
        with tf.device(self.device):
            result = self._call(args)
        return keras_outputs(result, self._loaded.output_names)

    def _close_impl(self) -> None:
        self._call = None
        self._restored = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def runtime_info(self) -> dict[str, Any]:
        import keras
        import tensorflow as tf

        return {"framework": "tensorflow", "tensorflow": tf.__version__, "keras": keras.__version__,
                "signature": self.signature, "device": self.device,
                "op_determinism": True,  # enabled in load()
                "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}
