"""ONNX-only models (`framework: onnx`, `path: model.onnx`): no source model, the file is the model.

Its inputs and outputs are read from the graph (`declared_io`): names, element types and shapes, the first
symbolic dimension of an input being its batch axis (an input without one has a fixed shape and no batch
axis). The reference, which makes the goldens and runs the reference check, is a declared backend (default:
ONNX Runtime CPU with every graph optimisation disabled); the model's identity in a golden is the SHA-256 of the
file with its external data. Every ONNX backend runs the file itself (through `exporter=prebuilt`, which the
`onnx` model option selects), so transforms, sweeps, benchmarks and `localize=all` work as for an export.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parity.config import BATCH, Distribution, InputSpec, ModelConfig, OutputSpec, typed_node
from parity.errors import ConfigError, ModelError, one_line
from parity.frameworks.base import Framework
from parity.inputs import DTYPES

REFERENCE = {"_target_": "parity.backends.onnxruntime.OrtBackend", "name": "ort_reference",
             "graph_optimization_level": "disable_all"}


@dataclass
class OnnxModel:
    """The file, its identity, and the reference session opened on first use (kept for the job)."""

    path: Path
    sha256: str
    files: tuple[str, ...]
    reference: Any  # the reference backend (a parity.backends.base.Backend)
    input_names: list[str]
    output_names: list[str]
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _session: Any = None

    def session(self) -> Any:
        if self._session is None:
            from parity.artifact import Artifact

            artifact = Artifact(kind="onnx", input_names=self.input_names, output_names=self.output_names,
                                path=self.path)
            self._session = self._stack.enter_context(self.reference.prepare(artifact))
        return self._session


def reference_config(model_cfg: ModelConfig) -> Any:
    """The typed config of the model's reference backend (REFERENCE unless model.reference_backend says)."""
    from omegaconf import OmegaConf

    from parity import plugins

    node = OmegaConf.create(dict(model_cfg.reference_backend) or REFERENCE)
    return plugins.typed_config("backend", node)


class OnnxFramework(Framework):
    name = "onnx"
    reference_backend = "ort_reference"
    artifact_kind = "onnx"  # the model is already an ONNX artifact: backends run it through exporter=prebuilt

    def availability(self) -> str | None:
        from parity.dependencies import import_reason

        return import_reason("an ONNX model", "onnx", "onnxruntime")

    def build(self, model_cfg: Any) -> OnnxModel:
        from parity import plugins
        from parity.artifact import onnx_files_sha256
        from parity.conversion import availability

        path = Path(model_cfg.path)
        try:
            sha, files, _ = onnx_files_sha256(path)
        except Exception as exc:
            raise ModelError(f"model '{model_cfg.name}': {one_line(exc)}") from exc
        reference = plugins.build("backend", reference_config(model_cfg))
        reason = availability(reference)
        if reason is not None:
            from parity.errors import UnavailableError

            raise UnavailableError(f"reference backend '{reference.name}' cannot run here: {reason}")
        return OnnxModel(path, sha, files, reference, [s.name for s in model_cfg.inputs],
                         [o.name for o in model_cfg.outputs])

    def weights_sha256(self, model: OnnxModel) -> str:
        return model.sha256

    def run(self, model: OnnxModel, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
            output_names: Sequence[str]) -> dict[str, np.ndarray]:
        outputs = model.session().infer({name: feeds[name] for name in input_names})
        return {name: outputs[name] for name in output_names}

    def reference_info(self) -> dict[str, Any]:
        return {"backend": "onnx file on its reference backend", "device": "cpu", "deterministic": True}

    def reference_details(self, model: OnnxModel) -> dict[str, Any]:
        """What the reference of this model is: the backend's config and what really ran."""
        return {"reference_backend": dataclasses.asdict(model.reference.config), "runtime": model.session().runtime_info(), "files": list(model.files)}


# -- inputs and outputs from the graph ------------------------------------------------------------------------


def declared_io(model: ModelConfig) -> ModelConfig:
    """`model` with its inputs and outputs as the graph declares them, where the config leaves them empty, and
    the config's overrides applied; declared ones are checked against the graph. ConfigError (one line) for a
    graph parity cannot feed (unknown rank, several symbolic dimensions without a declared shape, strings)."""
    import onnx

    path = Path(model.path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ConfigError(f"model.path: {path.name} is not an ONNX model: {one_line(exc)}") from None
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    graph_inputs = [v for v in graph.input if v.name not in initializers]
    inputs = _inputs(model, graph_inputs)
    outputs = _outputs(model, list(graph.output), inputs, graph_inputs)
    return dataclasses.replace(model, inputs=inputs, outputs=outputs)


def _dims(value: Any) -> list[int | str] | None:
    """A value's dimensions: ints, and the dim_param (or "?") of a symbolic one; None when the rank is unknown."""
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise ConfigError(f"model.path: '{value.name}' is not a tensor (sequences and maps are not supported)")
    if not tensor.HasField("shape"):
        return None
    return [int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
            for d in tensor.shape.dim]


def element_type(value: Any) -> str:
    """The numpy name of a graph value's element type ('float32', 'bool', 'bfloat16', …); ConfigError for one
    numpy cannot hold."""
    from onnx import TensorProto, helper

    elem = value.type.tensor_type.elem_type
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem))
    except Exception:
        dtype = None
    name = TensorProto.DataType.Name(elem) if elem in TensorProto.DataType.values() else str(elem)
    if dtype is None or dtype.name not in DTYPES:
        raise ConfigError(f"model.path: '{value.name}' has element type {name}, which parity cannot generate or "
                          f"compare (supported: {', '.join(sorted(DTYPES))})")
    return dtype.name


def _default_values(dtype: str) -> dict[str, Any]:
    """How values are drawn for a discovered input of `dtype` (overridable per input)."""
    kind = np.dtype(dtype).kind if dtype != "bfloat16" else "f"
    if kind == "b":
        return {"distribution": Distribution.randint.value, "low": 0, "high": 2}
    if kind in "iu":  # indices: small non-negative integers; set `high` to the vocabulary size
        return {"distribution": Distribution.randint.value, "low": 0, "high": 10}
    return {"distribution": Distribution.normal.value, "mean": 0.0, "std": 1.0}


def _inputs(model: ModelConfig, graph_inputs: list[Any]) -> list[InputSpec]:
    names = [v.name for v in graph_inputs]
    unknown = sorted(set(model.input_overrides) - set(names))
    if unknown:
        raise ConfigError(f"model.input_overrides names {unknown}, which are not inputs of {Path(model.path).name} "
                          f"(its inputs: {names})")
    if model.inputs:  # declared in full: they must be the graph's
        declared = [s.name for s in model.inputs]
        if sorted(declared) != sorted(names):
            raise ConfigError(f"model.inputs {declared} are not the graph inputs of {Path(model.path).name}: "
                              f"{names} (leave model.inputs empty to read them from the graph)")
        return [_override(spec, model.input_overrides.get(spec.name), InputSpec, "input") for spec in model.inputs]
    specs = []
    for value in graph_inputs:
        override = dict(model.input_overrides.get(value.name) or {})
        dtype = override.get("dtype") or element_type(value)
        entry: dict[str, Any] = {"name": value.name, "dtype": dtype, **_default_values(dtype)}
        if "shape" not in override:
            entry["shape"] = _input_shape(value, model.path)
        specs.append(_override(entry, override, InputSpec, "input"))
    return specs


def _input_shape(value: Any, path: str) -> list[Any]:
    dims = _dims(value)
    hint = f"set model.input_overrides.{value.name}.shape, e.g. [batch, 3, 224, 224]"
    if dims is None:
        raise ConfigError(f"model.path: input '{value.name}' of {Path(path).name} has no shape in the graph; {hint}")
    symbolic = [i for i, d in enumerate(dims) if isinstance(d, str)]
    if len(symbolic) > 1:
        names = [dims[i] for i in symbolic]
        raise ConfigError(f"model.path: input '{value.name}' of {Path(path).name} has {len(symbolic)} symbolic "
                          f"dimensions {names}; parity takes the first as the batch axis and needs the others' "
                          f"sizes: {hint}")
    return [BATCH if isinstance(d, str) else d for d in dims]


def _outputs(model: ModelConfig, graph_outputs: list[Any], inputs: list[InputSpec],
             graph_inputs: list[Any]) -> list[OutputSpec]:
    names = [v.name for v in graph_outputs]
    unknown = sorted(set(model.output_overrides) - set(names))
    if unknown:
        raise ConfigError(f"model.output_overrides names {unknown}, which are not outputs of "
                          f"{Path(model.path).name} (its outputs: {names})")
    if model.outputs:
        declared = [o.name for o in model.outputs]
        missing = [n for n in declared if n not in names]
        if missing:
            raise ConfigError(f"model.outputs {missing} are not outputs of {Path(model.path).name}: {names}")
        return [_override(o, model.output_overrides.get(o.name), OutputSpec, "output") for o in model.outputs]
    batch_params = set()  # the symbol each batched input uses for its batch axis ("N", "batch_size", ...)
    for spec, value in zip(inputs, graph_inputs):
        dims = _dims(value) or []
        if BATCH in spec.shape and len(dims) == len(spec.shape):
            symbol = dims[list(spec.shape).index(BATCH)]
            if isinstance(symbol, str) and symbol != "?":
                batch_params.add(symbol)
    batched = any(BATCH in s.shape for s in inputs)
    specs = []
    for value in graph_outputs:
        element_type(value)  # an output parity cannot compare is refused here, naming its type
        dims = _dims(value)
        entry: dict[str, Any] = {"name": value.name, "batch_axis": _output_axis(dims, batch_params, batched)}
        specs.append(_override(entry, model.output_overrides.get(value.name), OutputSpec, "output"))
    return specs


def _output_axis(dims: list[int | str] | None, batch_params: set[str], batched: bool) -> int | None:
    """An output's batch axis: the dimension carrying an input's batch symbol, else its first symbolic one, else
    (shape unknown) 0 for a batched model; None for a fixed shape or a model without a batch axis."""
    if not batched:
        return None
    if dims is None:
        return 0  # checked when the golden is made: a wrong guess is an error naming output_overrides
    for i, d in enumerate(dims):
        if isinstance(d, str) and d in batch_params:
            return i
    return next((i for i, d in enumerate(dims) if isinstance(d, str)), None)


def _override(entry: Any, override: Any, schema: type, what: str) -> Any:
    base = dataclasses.asdict(entry) if dataclasses.is_dataclass(entry) else dict(entry)
    merged = {**base, **dict(override or {})}
    return typed_node(schema, merged, f"model.{what}_overrides.{merged.get('name')}")
