"""localize=all: mark every intermediate ONNX tensor as an output, name the first node that diverges.

The reference is ONNX Runtime CPU with every graph optimisation disabled, running the same artifact
as the candidate backend. Tensors are marked `chunk` at a time, in topological order; each chunk's
tensors are compared and dropped before the next, so memory stays bounded on big graphs, and the
search stops at the first chunk holding a divergent tensor.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity import inputs as inputs_mod
from parity.artifact import Artifact
from parity.compare import Tolerance, difference
from parity.errors import ParityError, one_line
from parity.results import Culprit, Divergence, LocalizationReport

log = logging.getLogger("parity")


@dataclass(frozen=True)
class Marked:
    """One intermediate tensor: the node producing it, in topological order."""

    tensor: str
    node: str
    op_type: str
    index: int


def graph_tensors(model: Any) -> list[Marked]:
    """Every node output of the main graph, graph outputs included (topological: ONNX requires node order to be)."""
    marked = []
    for index, node in enumerate(model.graph.node):
        for out in node.output:
            if out:
                marked.append(Marked(out, node.name or f"{node.op_type}_{index}", node.op_type, index))
    return marked


def run_localization(plan: Any, cache: Any, golden_inputs: Mapping[str, np.ndarray], batch: int | None,
                     work_dir: Path) -> LocalizationReport:
    """localize=all on the artifact of the first batch size that ran, against ORT CPU with optimisations off."""
    from parity.backends.onnxruntime import OrtBackend, OrtBackendConfig

    backend = cache.conversion.backend
    artifact = cache.get(batch) if batch is not None and cache.conversion.exporter is not None else None
    if artifact is None or artifact.kind != "onnx" or "onnx" not in backend.accepts or artifact.failure():
        return LocalizationReport(error="localize=all needs an ONNX backend whose export and first run succeeded")
    reference = OrtBackend(OrtBackendConfig(name="ort_cpu_noopt", graph_optimization_level="disable_all"))
    try:
        found = localize(artifact, inputs_mod.take(dict(golden_inputs), dict(plan.input_axes), batch), reference,
                         backend, plan.backend_tolerance.default, int(plan.checks.localize_chunk), work_dir, batch)
    except ParityError as exc:
        return LocalizationReport(error=one_line(exc), batch_size=batch)
    if found.culprit is not None and found.first_divergent is not None:
        module = module_of(artifact, found.first_divergent.node_index, cache.framework, cache.model)
        found = dataclasses.replace(found, culprit=dataclasses.replace(found.culprit, module=module))
    return found


def module_of(artifact: Artifact, node_index: int, framework: Any, model: Any) -> str | None:
    """The source module the artifact's node `node_index` came from (its innermost scope), where the source model
    and the exporter's scopes tell; else None."""
    import onnx

    from parity.diagnostics.scopes import graph_scopes

    try:
        tree = framework.module_tree(model)
    except ParityError:
        return None  # an ONNX-only model, or a framework without modules
    skeleton = onnx.load(str(artifact.path), load_external_data=False)
    chain = graph_scopes(skeleton, tree).chains[node_index]
    return chain[-1][0] if chain else None


def prepare_graph(artifact: Artifact, work_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The artifact's graph without its weights (`work_dir/weights.bin` holds them, written once for every marked
    copy), and the inferred type of each intermediate tensor where shape inference can tell."""
    import onnx
    from onnx import shape_inference

    work_dir.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(artifact.path))  # with external data, once
    base = work_dir / "base.onnx"
    onnx.save_model(model, str(base), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=1024)
    del model
    skeleton = onnx.load(str(base), load_external_data=False)
    try:
        inferred = shape_inference.infer_shapes(skeleton)
        types = {vi.name: vi for vi in inferred.graph.value_info}
    except Exception as exc:  # types are a courtesy to stricter runtimes; ORT accepts untyped outputs
        log.warning("shape inference failed (%s): marking tensors without types", one_line(exc))
        types = {}
    return skeleton, types


def marked_artifact(skeleton: Any, types: Mapping[str, Any], tensors: list[str], path: Path,
                    artifact: Artifact) -> Artifact:
    """A copy of `skeleton` at `path` whose outputs are `tensors` (graph outputs among them stay as they are)."""
    import onnx
    from onnx import helper

    proto = onnx.ModelProto()
    proto.CopyFrom(skeleton)
    final = {o.name for o in skeleton.graph.output}
    proto.graph.output.extend(types[t] if t in types else helper.ValueInfoProto(name=t)
                              for t in dict.fromkeys(tensors) if t not in final)
    onnx.save_model(proto, str(path))
    return Artifact(kind="onnx", input_names=artifact.input_names, output_names=list(dict.fromkeys(tensors)),
                    path=path, input_axes=artifact.input_axes)


def localize(artifact: Artifact, feeds: Mapping[str, np.ndarray], reference: Any, candidate: Any,
             tolerance: Tolerance, chunk: int, work_dir: Path, batch: int | None = None) -> LocalizationReport:
    """Compare every intermediate tensor of `artifact` between the reference and candidate backends, under
    `tolerance` (its own check statistic), `chunk` tensors per run; the first divergent node, or None."""
    skeleton, types = prepare_graph(artifact, work_dir)
    tensors = graph_tensors(skeleton)
    compared, chunks_run = 0, 0
    errors: dict[str, float] = {}

    def record(first: Divergence | None) -> LocalizationReport:
        culprit = None if first is None else Culprit(module=None, node=first.node, op_type=first.op_type,
                                                       tensor=first.tensor, max_abs=first.max_abs, message=first.reason)
        message = ("no divergent tensor" if first is None else
                   f"first divergent node {first.node} ({first.op_type}): {first.reason}")
        return LocalizationReport(
            kind="runtime", culprit=culprit, first_divergent=first, batch_size=batch,
            reference="onnxruntime CPU, graph optimisations disabled", candidate=getattr(candidate, "name", "?"),
            tensors_total=len(tensors), tensors_compared=compared, chunks_run=chunks_run, chunk_size=chunk,
            atol=tolerance.atol, rtol=tolerance.rtol, check=tolerance.check.value, message=message,
            tensor_errors=errors)

    try:
        for start in range(0, len(tensors), chunk):
            part = tensors[start:start + chunk]
            path = work_dir / f"chunk_{start // chunk:04d}.onnx"
            marked = marked_artifact(skeleton, types, [m.tensor for m in part], path, artifact)
            with reference.prepare(marked) as ref_session, candidate.prepare(marked) as cand_session:
                ref_out = ref_session.infer(feeds)
                cand_out = cand_session.infer(feeds)
            chunks_run += 1
            log.info("localize: chunk %d, tensors %d-%d of %d", chunks_run, start + 1, start + len(part),
                     len(tensors))
            for m in part:
                compared += 1
                errors[m.tensor] = _max_abs(ref_out[m.tensor], cand_out[m.tensor])
                first = _diverges(m, ref_out[m.tensor], cand_out[m.tensor], tolerance)
                if first is not None:
                    return record(first)
            del ref_out, cand_out
            path.unlink(missing_ok=True)
        return record(None)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind not in "fc" or b.dtype.kind not in "fc" or not a.size:
        return None
    with np.errstate(invalid="ignore"):
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return float(np.max(np.where(np.isnan(d), np.inf, d)))


def _diverges(m: Marked, ref: np.ndarray, cand: np.ndarray, tolerance: Tolerance) -> Divergence | None:
    """None when the tensor agrees under `tolerance`; else the divergence naming its node."""
    ref, cand = np.asarray(ref), np.asarray(cand)
    where = {"node": m.node, "op_type": m.op_type, "tensor": m.tensor, "node_index": m.index}
    if ref.shape != cand.shape or ref.dtype != cand.dtype:
        return Divergence(**where, reason=f"{ref.dtype}{list(ref.shape)} vs {cand.dtype}{list(cand.shape)}",
                          max_abs=None, mean_abs=None)
    if ref.dtype.kind not in "fc":
        if np.array_equal(ref, cand):
            return None
        return Divergence(**where, reason="integer/bool values differ", max_abs=None, mean_abs=None)
    stats = difference(ref, cand, tolerance)
    problems = tolerance.violations(stats)
    if not problems:
        return None
    return Divergence(**where, reason=problems[0], max_abs=stats["max_abs"], mean_abs=stats["mean_abs"])
