"""localize=all: mark every intermediate ONNX tensor as an output, name the first node that diverges.

The reference is ONNX Runtime CPU with every graph optimisation disabled, running the same artifact
as the candidate backend. Tensors are marked `chunk` at a time, in topological order; each chunk's
tensors are compared and dropped before the next, so memory stays bounded on big graphs, and the
search stops at the first chunk holding a divergent tensor.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.artifact import Artifact
from parity.compare import error_metrics
from parity.errors import one_line

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


def localize(
    artifact: Artifact,
    feeds: Mapping[str, np.ndarray],
    make_reference: Callable[[], Any],
    candidate: Any,
    atol: float,
    rtol: float,
    chunk: int,
    work_dir: Path,
) -> dict[str, Any]:
    """Compare every intermediate tensor of `artifact` between the reference and candidate backends.

    Returns the localisation record: tensors compared, chunks run, and the first divergent node
    (name, op type, tensor, error) or None.
    """
    import onnx
    from onnx import helper, shape_inference

    work_dir.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(artifact.path))  # with external data, once
    base = work_dir / "base.onnx"
    onnx.save_model(model, str(base), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=1024)
    skeleton = onnx.load(str(base), load_external_data=False)  # chunks reference weights.bin: written once
    del model
    try:
        inferred = shape_inference.infer_shapes(skeleton)
        types = {vi.name: vi for vi in inferred.graph.value_info}
    except Exception as exc:  # types are a courtesy to stricter runtimes; ORT accepts untyped outputs
        log.warning("shape inference failed (%s): marking tensors without types", one_line(exc))
        types = {}
    tensors = graph_tensors(skeleton)
    final = {o.name for o in skeleton.graph.output}  # already outputs: compared, never marked twice
    record: dict[str, Any] = {
        "reference": "onnxruntime CPU, graph optimisations disabled",
        "candidate": getattr(candidate, "name", "?"),
        "tensors_total": len(tensors),
        "tensors_compared": 0,
        "chunks_run": 0,
        "chunk_size": chunk,
        "first_divergent": None,
        "atol": atol,
        "rtol": rtol,
    }
    reference = make_reference()
    try:
        for start in range(0, len(tensors), chunk):
            part = tensors[start:start + chunk]
            proto = onnx.ModelProto()
            proto.CopyFrom(skeleton)
            proto.graph.output.extend(
                types[m.tensor] if m.tensor in types else helper.ValueInfoProto(name=m.tensor)
                for m in part if m.tensor not in final
            )
            path = work_dir / f"chunk_{start // chunk:04d}.onnx"
            onnx.save_model(proto, str(path))
            names = [m.tensor for m in part]
            marked = Artifact(kind="onnx", input_names=artifact.input_names, output_names=names, path=path,
                              input_axes=artifact.input_axes)
            for backend in (reference, candidate):
                backend.close()
                backend.load(marked)
            ref_out = reference.infer(feeds)
            cand_out = candidate.infer(feeds)
            record["chunks_run"] += 1
            log.info("localize: chunk %d, tensors %d-%d of %d", record["chunks_run"], start + 1,
                     start + len(part), len(tensors))
            for m in part:
                record["tensors_compared"] += 1
                first = _diverges(m, ref_out[m.tensor], cand_out[m.tensor], atol, rtol)
                if first is not None:
                    record["first_divergent"] = first
                    return record
            del ref_out, cand_out
            path.unlink(missing_ok=True)
        return record
    finally:
        reference.close()
        candidate.close()
        shutil.rmtree(work_dir, ignore_errors=True)


def _diverges(m: Marked, ref: np.ndarray, cand: np.ndarray, atol: float, rtol: float) -> dict[str, Any] | None:
    """None when the tensor agrees; else the divergence record naming its node."""
    ref, cand = np.asarray(ref), np.asarray(cand)
    base = {"node": m.node, "op_type": m.op_type, "tensor": m.tensor, "node_index": m.index}
    if ref.shape != cand.shape or ref.dtype != cand.dtype:
        return {**base, "reason": f"{ref.dtype}{list(ref.shape)} vs {cand.dtype}{list(cand.shape)}",
                "max_abs": None, "mean_abs": None}
    if ref.dtype.kind not in "fc":
        if np.array_equal(ref, cand):
            return None
        return {**base, "reason": "integer/bool values differ", "max_abs": None, "mean_abs": None}
    metrics = error_metrics(ref, cand, atol, rtol)
    if metrics["pct_outside"] == 0.0:
        return None
    return {**base, "reason": f"{metrics['pct_outside']:.3g}% of elements outside tolerance",
            "max_abs": metrics["max_abs"], "mean_abs": metrics["mean_abs"]}
