"""localize=source: the source model against the exported artifact, module by module, and the first module whose
own ONNX nodes compute something else (the culprit).

1. One eager forward pass lists every module call (torch: every submodule, through hooks; Keras: every layer)
   in the order the calls finished; the ONNX graph's nodes are matched to modules by the scopes the exporter
   left behind (parity.diagnostics.scopes), and each call to the tensor its nodes hand on (its exit).
2. In chunks of `checks.localize_chunk` marked tensors, the artifact runs on the reference runtime (ONNX Runtime
   CPU, graph optimisations off) with those tensors as outputs, and the source runs again keeping copies of the
   chunk's calls only; each call's tensor is compared under the backend tolerance and only a summary is kept.
3. For a call whose error exceeds its tolerance, its own nodes (the smallest subgraph computing its exit) run on
   the source's own inputs to that module: error above tolerance there is local (this module converts wrongly),
   below it is inherited (it only carries an upstream error). The first call with local error is the culprit.

A module the exporter folded into another (a BatchNorm fused into its Conv) has no nodes of its own: the module
it was folded into is compared with the folded module's output instead.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity import inputs as inputs_mod
from parity.artifact import Artifact
from parity.compare import Tolerance, ToleranceSet, difference
from parity.diagnostics.localize import marked_artifact, prepare_graph
from parity.diagnostics.scopes import GraphScopes, Scope, graph_scopes
from parity.errors import ParityError, one_line
from parity.results import Culprit, LocalizationReport, ModuleEntry

log = logging.getLogger("parity")
REFERENCE = "onnxruntime CPU, graph optimisations disabled"
MAX_LOCAL_RUNS = 64  # suspect calls whose own nodes are run, at most, before giving up on finding the culprit


@dataclass(frozen=True)
class ModuleCall:
    """One finished call of a source module: its path, which call of it this is, and its outputs' shapes."""

    path: str
    index: int
    leaf: bool
    shapes: tuple[tuple[int, ...], ...]
    probeable: bool = True  # returns a tensor (or a list ending in one): a layer probe can take it

    @property
    def label(self) -> str:
        return self.path if self.index == 0 else f"{self.path} (call {self.index + 1})"


@dataclass
class Captured:
    """Copies of one call's tensor inputs and outputs, as numpy arrays."""

    inputs: list[np.ndarray]
    outputs: list[np.ndarray]


@dataclass
class Match:
    """A call and the ONNX tensors that may be its exit (several only where the shape must decide)."""

    call: ModuleCall
    position: int  # in the forward order
    scope: Scope
    candidates: list[str]
    boundary: set[str]
    folded_after: list[ModuleCall]  # following calls with no nodes of their own (folded into this one)
    folded_before: list[ModuleCall]  # preceding calls with no nodes of their own, nearest first
    feeds: dict[str, list[str]] | None = None  # candidate -> tensors its subgraph is fed

    def marked(self) -> list[str]:
        return [*self.candidates, *(t for ts in (self.feeds or {}).values() for t in ts)]


def run_source_localization(plan: Any, cache: Any, golden_inputs: Mapping[str, np.ndarray], batch: int | None,
                            work_dir: Path) -> LocalizationReport:
    """localize=source on the artifact of the first batch size that ran (the one the backend runs)."""
    from parity.backends.onnxruntime import OrtBackend, OrtBackendConfig

    framework = cache.framework
    if framework.artifact_kind is not None or cache.model is None:
        return LocalizationReport(kind="conversion", error="localize=source compares the source model with its "
                                  "artifact: it needs a torch or keras model, not an ONNX file alone")
    artifact = cache.get(batch) if batch is not None and cache.conversion.exporter is not None else None
    if artifact is None or artifact.kind != "onnx" or artifact.failure():
        return LocalizationReport(kind="conversion", error="localize=source needs an exported ONNX artifact whose "
                                  "export and first run succeeded (an eager backend runs the source model itself)")
    reference = OrtBackend(OrtBackendConfig(name="ort_cpu_noopt", graph_optimization_level="disable_all"))
    feeds = inputs_mod.take(dict(golden_inputs), dict(plan.input_axes), batch)
    try:
        return localize_source(artifact, framework, cache.model, feeds, plan.input_names, reference,
                               plan.backend_tolerance, int(plan.checks.localize_chunk), work_dir, batch)
    except ParityError as exc:
        return LocalizationReport(kind="conversion", error=one_line(exc), batch_size=batch)


def localize_source(artifact: Artifact, framework: Any, model: Any, feeds: Mapping[str, np.ndarray],
                    input_names: Sequence[str], reference: Any, tolerances: ToleranceSet, chunk: int,
                    work_dir: Path, batch: int | None = None) -> LocalizationReport:
    skeleton, types = prepare_graph(artifact, work_dir)
    try:
        scopes = graph_scopes(skeleton, framework.module_tree(model))
        calls, _ = framework.module_calls(model, feeds, input_names)
        matches, unmatched = match_calls(calls, scopes)
        graph_inputs = {i.name for i in skeleton.graph.input}
        for match in matches:
            match.feeds = {c: scopes.subgraph(match.scope, c, match.boundary - {c}, bool(match.folded_before))[1]
                           for c in match.candidates}
        log.info("localize=source: %d module calls, %d matched to ONNX tensors", len(calls), len(matches))
        state = _Search(artifact, framework, model, feeds, input_names, reference, tolerances, work_dir, scopes,
                        types, graph_inputs)
        for part in _chunks(matches, chunk, graph_inputs):
            state.run_chunk(skeleton, part)
        entries = state.entries
        first = next((e for e in entries if not e.within_tolerance), None)
        culprit = next((e for e in entries if e.origin == "local"), None)
        message = _message(first, culprit, state.local_runs)
        log.info("localize=source: %s", message)
        tolerance = tolerances.default
        return LocalizationReport(
            kind="conversion", batch_size=batch, reference=REFERENCE, candidate="source model (eager, CPU)",
            culprit=None if culprit is None else _culprit(culprit), first_exceeding=first.module if first else None,
            modules=tuple(entries), modules_total=len(calls), unmatched=unmatched, tensors_total=len(matches),
            tensors_compared=len(entries), chunks_run=state.chunks_run, chunk_size=chunk, local_runs=state.local_runs,
            atol=tolerance.atol, rtol=tolerance.rtol, check=tolerance.check.value, message=message)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def match_calls(calls: Sequence[ModuleCall], scopes: GraphScopes) -> tuple[list[Match], dict[str, str]]:
    """Each call's candidate exit tensors; and why the others have none."""
    scoped = scopes.scoped()
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.path] = counts.get(call.path, 0) + 1
    matches: list[Match] = []
    unmatched: dict[str, str] = {}
    explicit = {path for path, index in scoped if index is not None}
    for position, call in enumerate(calls):
        if call.path in explicit:
            scope: Scope = (call.path, call.index)
            if scope not in scoped:
                unmatched[call.label] = "no ONNX nodes of its own (folded into another module, or constant)"
                continue
            exits = scopes.exits(scope)
            boundary = {t for (p, i) in scoped if p == call.path and i != call.index for t in scopes.exits((p, i))}
        elif (call.path, None) in scoped:
            scope = (call.path, None)
            pooled = scopes.exits(scope)
            if len(pooled) == counts[call.path]:
                exits = [pooled[call.index]]
            elif counts[call.path] == 1:
                exits = pooled
            else:
                unmatched[call.label] = (f"{counts[call.path]} calls but {len(pooled)} exit tensors in the graph: "
                                         "which is which cannot be told")
                continue
            boundary = set(pooled) - set(exits)
        else:
            unmatched[call.label] = "no ONNX nodes of its own (folded into another module, or constant)"
            continue
        if not exits:
            unmatched[call.label] = "its nodes hand no tensor on"
            continue
        matches.append(Match(call, position, scope, exits, boundary, _folded(calls[position + 1:], scoped),
                             _folded(calls[:position][::-1], scoped)))
    return matches, unmatched


def _folded(neighbours: Sequence[ModuleCall], scoped: set[Scope]) -> list[ModuleCall]:
    """The calls at the start of `neighbours` that have no ONNX nodes of their own."""
    folded = []
    for call in neighbours:
        if (call.path, call.index) in scoped or (call.path, None) in scoped:
            break
        folded.append(call)
    return folded


def _chunks(matches: list[Match], size: int, graph_inputs: set[str]) -> list[list[Match]]:
    parts, current, count = [], [], 0
    for match in matches:
        marked = len([t for t in match.marked() if t not in graph_inputs])
        if current and count + marked > size:
            parts.append(current)
            current, count = [], 0
        current.append(match)
        count += marked
    if current:
        parts.append(current)
    return parts


class _Search:
    """The state of one localize=source run: entries so far, local runs, whether the culprit is found."""

    def __init__(self, artifact: Artifact, framework: Any, model: Any, feeds: Mapping[str, np.ndarray],
                 input_names: Sequence[str], reference: Any, tolerances: ToleranceSet, work_dir: Path,
                 scopes: GraphScopes, types: Mapping[str, Any], graph_inputs: set[str]) -> None:
        self.artifact, self.framework, self.model, self.feeds = artifact, framework, model, dict(feeds)
        self.input_names, self.reference, self.tolerances = input_names, reference, tolerances
        self.work_dir, self.scopes, self.types, self.graph_inputs = work_dir, scopes, types, graph_inputs
        self.entries: list[ModuleEntry] = []
        self.chunks_run = 0
        self.local_runs = 0
        self.found = False

    def run_chunk(self, skeleton: Any, part: list[Match]) -> None:
        tensors = [t for m in part for t in m.marked() if t not in self.graph_inputs]
        path = self.work_dir / f"source_chunk_{self.chunks_run:04d}.onnx"
        values: dict[str, np.ndarray] = dict(self.feeds)
        if tensors:
            marked = marked_artifact(skeleton, self.types, tensors, path, self.artifact)
            with self.reference.prepare(marked) as session:
                values.update(session.infer(self.feeds))
        wanted = {(c.path, c.index) for m in part for c in (m.call, *m.folded_after, *m.folded_before)}
        _, captured = self.framework.module_calls(self.model, self.feeds, self.input_names, wanted)
        self.chunks_run += 1
        log.info("localize=source: chunk %d, module calls %d-%d", self.chunks_run, part[0].position + 1,
                 part[-1].position + 1)
        for match in part:
            if (match.call.path, match.call.index) in captured:
                self.entries.append(self._compare(match, values, captured))
        path.unlink(missing_ok=True)

    def _compare(self, match: Match, values: Mapping[str, np.ndarray], captured: Mapping[Any, Captured]) -> ModuleEntry:
        call = match.call
        got = captured[(call.path, call.index)]
        # a module with no nodes of its own right after this one, reading its output, may have been folded into
        # this one's nodes (TorchScript fuses a BatchNorm into the Conv before it) or into the next module's
        # (the dynamo exporter keeps the fused Conv under the BatchNorm's scope): of the outputs along that chain,
        # the exit computes the one it is closest to
        hypotheses = [got.outputs]
        for later in match.folded_after:
            nxt = captured.get((later.path, later.index))
            if nxt is None or not any(_same(i, o) for i in nxt.inputs for o in hypotheses[-1]):
                break
            hypotheses.append(nxt.outputs)
        tensor, expected = _pick(match.candidates, values, hypotheses)
        chosen = next((i for i, h in enumerate(hypotheses) if any(a is expected for a in h)), 0)
        fused = [c.label for c in match.folded_after[:chosen]]
        inputs = got.inputs
        for earlier in match.folded_before:  # folded into this one's nodes: they compute from its inputs
            prev = captured.get((earlier.path, earlier.index))
            if prev is None or not any(_same(o, i) for o in prev.outputs for i in inputs):
                break
            fused.insert(0, earlier.label)
            inputs = inputs + prev.inputs
        node_index = self.scopes.producer.get(tensor)
        node = self.scopes.model.graph.node[node_index] if node_index is not None else None
        where = {"module": call.path, "call": call.index, "leaf": call.leaf, "tensor": tensor, "fused": tuple(fused),
                 "node": (node.name or f"{node.op_type}_{node_index}") if node is not None else tensor,
                 "op_type": node.op_type if node is not None else ""}
        tol = self.tolerances(call.path)
        if expected is None:
            shapes = [list(a.shape) for a in got.outputs]
            return ModuleEntry(**where, shape=(), max_abs=None, mean_abs=None, l2_rel=None, input_max_abs=None,
                               amplification=None, within_tolerance=True,
                               message=f"no output of shape {list(np.shape(values.get(tensor)))} (source: {shapes})")
        artifact_value = np.asarray(values[tensor])
        problems, stats = _problems(expected, artifact_value, tol)
        feeds = (match.feeds or {}).get(tensor, [])
        sources_in, input_error = self._inputs(feeds, values, inputs)
        max_abs = stats["max_abs"] if stats else None
        amplification = (max_abs / input_error) if (max_abs is not None and input_error) else None
        entry = ModuleEntry(**where, shape=tuple(expected.shape), max_abs=max_abs,
                            mean_abs=stats["mean_abs"] if stats else None, l2_rel=stats["l2_rel"] if stats else None,
                            input_max_abs=input_error, amplification=amplification, within_tolerance=not problems,
                            message="; ".join(problems))
        if problems and not self.found and self.local_runs < MAX_LOCAL_RUNS:
            entry = self._local(entry, match, tensor, expected, feeds, sources_in, values, tol)
        return entry

    def _inputs(self, feeds: list[str], values: Mapping[str, np.ndarray],
                torch_inputs: list[np.ndarray]) -> tuple[dict[str, np.ndarray] | None, float | None]:
        """The source's value for each tensor the subgraph is fed (None when one has no counterpart), and the
        largest error on them (source vs artifact)."""
        chosen: dict[str, np.ndarray] = {}
        worst = 0.0
        complete = True
        for name in feeds:
            onnx_value = np.asarray(values[name]) if name in values else None
            if onnx_value is None:
                complete = False
                continue
            if name in self.graph_inputs or onnx_value.dtype.kind not in "fc":
                chosen[name] = onnx_value  # a model input, or an index/shape tensor: the same on both sides
                continue
            same = [laid for a in torch_inputs if a.dtype.kind in "fc" for laid in _layouts(a, onnx_value.shape)]
            if not same:
                complete = False
                continue
            best = min(same, key=lambda a: float(np.max(np.abs(a.astype(np.float64) - onnx_value))) if a.size else 0.0)
            chosen[name] = best.astype(onnx_value.dtype, copy=False)
            if best.size:
                worst = max(worst, float(np.max(np.abs(best.astype(np.float64) - onnx_value))))
        return (chosen if complete else None), worst

    def _local(self, entry: ModuleEntry, match: Match, tensor: str, expected: np.ndarray, feeds: list[str],
               sources_in: dict[str, np.ndarray] | None, values: Mapping[str, np.ndarray], tol: Tolerance) -> ModuleEntry:
        import dataclasses

        nodes, _ = self.scopes.subgraph(match.scope, tensor, match.boundary - {tensor}, bool(match.folded_before))
        names = tuple(self.scopes.model.graph.node[i].name or self.scopes.model.graph.node[i].op_type for i in nodes)
        if sources_in is None:
            return dataclasses.replace(entry, nodes=names, local_message="a tensor its nodes read has no "
                                       "counterpart among the module's inputs: local error not measured")
        self.local_runs += 1
        path = self.work_dir / f"local_{self.local_runs:04d}.onnx"
        sub = _subgraph_artifact(self.scopes.model, nodes, sources_in, tensor, self.types, path)
        with self.reference.prepare(sub) as session:
            local = np.asarray(session.infer(sources_in)[tensor])
        path.unlink(missing_ok=True)
        problems, stats = _problems(expected, local, tol)
        origin = "local" if problems else "inherited"
        if problems:
            self.found = True
        node, op_type = entry.node, entry.op_type
        if problems and not match.call.leaf:  # a block's own nodes (an Add between its children) are the suspects
            own = [i for i in nodes if self.scopes.chains[i] and self.scopes.chains[i][-1][0] == match.call.path]
            if own:
                last = self.scopes.model.graph.node[own[-1]]
                node, op_type = last.name or last.op_type, last.op_type
        return dataclasses.replace(entry, node=node, op_type=op_type, nodes=names,
                                   local_max_abs=stats["max_abs"] if stats else None,
                                   local_within_tolerance=not problems, local_message="; ".join(problems), origin=origin)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def _pick(candidates: list[str], values: Mapping[str, np.ndarray],
          hypotheses: list[list[np.ndarray]]) -> tuple[str, np.ndarray | None]:
    """The candidate exit (the last in graph order first) with a source output of its shape, and that output:
    of several hypotheses (the outputs along a folded chain), the one closest to the exit's value."""
    for tensor in reversed(candidates):
        value = values.get(tensor)
        shape = np.shape(value)
        fitting = [next((a for a in reversed(h) if _layouts(a, shape)), None) for h in hypotheses]
        fitting = [laid for a in fitting if a is not None for laid in _layouts(a, shape)]
        if fitting:
            return tensor, min(fitting, key=lambda a: _distance(a, np.asarray(value)))
    return candidates[-1], None


def _layouts(array: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray]:
    """`array` in each layout that fits a tensor of `shape`: as it is, and channels-last turned channels-first (a
    Keras model's NHWC tensor against tf2onnx's NCHW one); where both fit (as many channels as rows and columns)
    the caller takes the one closer in value."""
    fits = [array] if array.shape == tuple(shape) else []
    if array.ndim >= 3 and len(shape) == array.ndim:
        moved = np.moveaxis(array, -1, 1)
        if moved.shape == tuple(shape):
            fits.append(np.ascontiguousarray(moved))
    return fits


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    if a.dtype.kind not in "fc" or b.dtype.kind not in "fc" or not a.size:
        return 0.0 if np.array_equal(a, b) else float("inf")
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(np.nanmax(np.where(np.isfinite(d), d, np.inf)))


def _problems(expected: np.ndarray, actual: np.ndarray, tol: Tolerance) -> tuple[list[str], dict[str, Any] | None]:
    if expected.shape != actual.shape:
        return [f"shape {list(actual.shape)} vs {list(expected.shape)}"], None
    if expected.dtype.kind not in "fc":
        return ([] if np.array_equal(expected, actual) else ["integer/bool values differ"]), None
    stats = difference(expected, actual, tol)
    return tol.violations(stats), stats


def _subgraph_artifact(model: Any, nodes: list[int], feeds: Mapping[str, np.ndarray], output: str,
                       types: Mapping[str, Any], path: Path) -> Artifact:
    """The nodes `nodes` of `model` (weights from the same external data) as a model fed `feeds`."""
    import onnx
    from onnx import helper

    graph = model.graph
    chosen = [graph.node[i] for i in nodes]
    read = {t for n in chosen for t in n.input}
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
              for name, a in feeds.items()]
    out = types[output] if output in types else helper.ValueInfoProto(name=output)
    sub = helper.make_graph(chosen, "parity_local", inputs, [out],
                            initializer=[t for t in graph.initializer if t.name in read])
    proto = helper.make_model(sub, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    proto.functions.extend(model.functions)
    onnx.save_model(proto, str(path))
    return Artifact(kind="onnx", input_names=list(feeds), output_names=[output], path=path)


def _culprit(entry: ModuleEntry) -> Culprit:
    return Culprit(module=entry.module, call=entry.call, fused=entry.fused, nodes=entry.nodes, node=entry.node,
                   op_type=entry.op_type, tensor=entry.tensor,
                   max_abs=entry.max_abs, local_max_abs=entry.local_max_abs, input_max_abs=entry.input_max_abs,
                   amplification=entry.amplification,
                   message=f"{entry.module} computes something else on its own inputs: {entry.local_message}")


def _message(first: ModuleEntry | None, culprit: ModuleEntry | None, local_runs: int) -> str:
    if culprit is not None:
        where = culprit.module if culprit.call == 0 else f"{culprit.module} (call {culprit.call + 1})"
        if culprit.fused:
            where += f" (fused with {', '.join(culprit.fused)})"
        return (f"culprit {where} ↔ {culprit.node} ({culprit.op_type}): local error max abs "
                f"{culprit.local_max_abs:.3g} on the source's own inputs")
    if first is None:
        return "every matched module is within tolerance of the source model"
    if local_runs >= MAX_LOCAL_RUNS:
        return f"first exceeding: {first.module}; no culprit within {MAX_LOCAL_RUNS} suspect modules"
    return (f"first exceeding: {first.module}, but every module exceeding its tolerance only carries an upstream "
            f"error (no module computes something else on its own inputs)")
