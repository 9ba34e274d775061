"""The framework contract: build a model under its seed, hash its weights, run the eager reference."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from parity.errors import ConfigError, ModelError, UnavailableError, one_line


class Framework(ABC):
    """What a job needs from the framework a model is written in.

    `name` is also the artifact kind of the live model (a backend that accepts it runs the model itself, with
    nothing exported) and the `source` that this framework's exporters declare. `reference_backend` is the
    backend option that runs its models eagerly (the goldens' reference).
    """

    name: ClassVar[str]
    reference_backend: ClassVar[str]
    # the artifact kind a model of this framework already is ("onnx" for an ONNX file): backends never run it
    # as a live model, it goes through an exporter that takes the file as it is (exporter=prebuilt)
    artifact_kind: ClassVar[str | None] = None

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

    def reference_details(self, model: Any) -> dict[str, Any]:
        """How the reference ran for this model, for golden manifests (reference_info unless a framework knows
        more once the model is built)."""
        return self.reference_info()

    def require(self) -> None:
        reason = self.availability()
        if reason is not None:
            raise UnavailableError(reason)

    def code_classes(self, model: Any) -> list[type]:
        """The classes whose source code decides what the model computes (the export cache's key hashes their
        files; the framework's own classes are left out there, their version is in the key)."""
        return [type(model)]

    def probed(self, model: Any, paths: Sequence[str]) -> Any:
        """The model returning its outputs followed by the tensors of the modules at `paths` (layer probes)."""
        raise ConfigError(f"layer probes need forward hooks, which {self.name} models do not offer")

    def run_probes(self, model: Any, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
                   paths: Sequence[str]) -> dict[str, np.ndarray]:
        """The probe modules' outputs in one eager forward pass, by path, in the order the modules ran."""
        raise ConfigError(f"layer probes need forward hooks, which {self.name} models do not offer")

    def module_tree(self, model: Any) -> Any:
        """The model's modules (parity.diagnostics.scopes.ModuleTree), for localize=source."""
        raise ConfigError(f"localize=source needs the source model's modules, which {self.name} models do not offer")

    def module_calls(self, model: Any, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
                     wanted: set[tuple[str, int]] | None = None) -> tuple[list[Any], dict[Any, Any]]:
        """Every module call of one eager forward pass in the order they finished, and copies of the inputs and
        outputs of the calls in `wanted` (parity.diagnostics.source.ModuleCall / Captured)."""
        raise ConfigError(f"localize=source needs the source model's modules, which {self.name} models do not offer")


def builder_error(model_cfg: Any, exc: BaseException) -> Exception:
    """What a failed model builder is: UnavailableError when a package it imports is missing (the one rule for
    optional dependencies: parity.dependencies), else the config's error (a bad _target_ or arguments)."""
    from parity.dependencies import unavailable

    cause = exc.__cause__ or exc
    target = str(getattr(model_cfg, "builder", {}).get("_target_", ""))
    missing = unavailable(cause, f"model '{model_cfg.name}'", own_module=target or None)
    return missing or ConfigError(f"model '{model_cfg.name}': builder failed: {one_line(cause)}")


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
