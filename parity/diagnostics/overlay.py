"""The localisation's errors per ONNX node as Model Explorer node data (google-ai-edge/model-explorer's
`GraphNodeData` JSON: `results` keyed by node, each `{"value": <max abs error>}`, and `thresholds` colouring the
nodes: within the tolerance's atol green, up to 100× atol orange, beyond red).

Keys are the ONNX node names, the ids Model Explorer's ONNX adapter gives its nodes. Its viewer also matches a
key against a node's `tensor_name` output metadata, which model-explorer-onnx 0.4.2 does not write (it writes
`__tensor_tag`), so a key naming a tensor would colour nothing there; a tensor whose producer has no name keeps
the tensor's name. A node with several compared outputs shows the largest error.

Look at it with Model Explorer's ONNX adapter (`pip install model-explorer-onnx`):
`onnxvis <artifact.onnx> --node_data_paths=<job dir>/localization_node_data.json`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

from parity.results import LocalizationReport

log = logging.getLogger("parity")
FILENAME = "localization_node_data.json"


def node_data(loc: LocalizationReport, producers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The GraphNodeData document of `loc`: conversion entries by their exit tensor's node, runtime errors by each
    tensor's node. `producers`: tensor name -> the name of the ONNX node writing it (producers_of)."""
    producers = producers or {}
    errors: list[tuple[str, float]] = []
    if loc.kind == "conversion":
        errors = [(entry.tensor, entry.max_abs) for entry in loc.modules if entry.max_abs is not None]
    else:
        errors = [(t, v) for t, v in loc.tensor_errors.items() if v is not None]
    values: dict[str, float] = {}
    for tensor, value in errors:
        key = producers.get(tensor) or tensor
        values[key] = max(values.get(key, value), value)
    atol = loc.atol if loc.atol else 1e-4
    results = {key: {"value": v if math.isfinite(v) else 1e308} for key, v in values.items()}
    culprit = None if loc.culprit is None else producers.get(loc.culprit.tensor) or loc.culprit.tensor
    if culprit in results:
        results[culprit]["bgColor"] = "#b71c1c"  # the culprit stands out whatever its value
    return {
        "results": results,
        "thresholds": [
            {"value": atol, "bgColor": "#c8e6c9"},
            {"value": 100 * atol, "bgColor": "#ffe0b2"},
            {"value": 1e308, "bgColor": "#ef9a9a"},
        ],
    }


def producers_of(path: Path) -> dict[str, str]:
    """Tensor name -> the name of the node writing it, in the ONNX file at `path` (its weights left on disk);
    {} where it cannot be read, and then the node data keeps the tensors' names."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # not an ONNX file (a SavedModel), or unreadable: tensor names it is
        log.warning("node data keyed by tensor: %s could not be read (%s)", path, exc)
        return {}
    return {out: node.name for node in graph.node if node.name for out in node.output if out}


def write_overlay(loc: LocalizationReport, cache: Any, batch: int | None, work_dir: Path) -> LocalizationReport:
    """Write the node data beside the job's report; `loc` with its path (unchanged when nothing was compared)."""
    artifact = cache.get(batch) if batch is not None else None
    path = getattr(artifact, "path", None)
    document = node_data(loc, producers_of(Path(path)) if path is not None else {})
    if not document["results"]:
        return loc
    path = work_dir / FILENAME
    path.write_text(json.dumps(document, indent=1, allow_nan=False))
    log.info("localisation node data for Model Explorer: %s", path)
    return dataclasses.replace(loc, overlay=str(path))
