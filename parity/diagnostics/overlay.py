"""The localisation's errors per ONNX tensor as Model Explorer node data (google-ai-edge/model-explorer's
`GraphNodeData` JSON: `results` keyed by a node's output tensor name, each `{"value": <max abs error>}`, and
`thresholds` colouring the nodes: within the tolerance's atol green, up to 100× atol orange, beyond red).

Look at it with Model Explorer's ONNX adapter (`pip install model-explorer-onnx`):
`onnxvis <artifact.onnx> --node_data_paths=<job dir>/localization_node_data.json`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

from parity.results import LocalizationReport

log = logging.getLogger("parity")
FILENAME = "localization_node_data.json"


def node_data(loc: LocalizationReport) -> dict[str, Any]:
    """The GraphNodeData document of `loc`: conversion entries by exit tensor, runtime errors per tensor."""
    values: dict[str, float] = {}
    if loc.kind == "conversion":
        for entry in loc.modules:
            if entry.max_abs is not None:
                values[entry.tensor] = max(values.get(entry.tensor, 0.0), entry.max_abs)
    else:
        values = {t: v for t, v in loc.tensor_errors.items() if v is not None}
    atol = loc.atol if loc.atol else 1e-4
    results = {t: {"value": v if math.isfinite(v) else 1e308} for t, v in values.items()}
    if loc.culprit is not None and loc.culprit.tensor in results:
        results[loc.culprit.tensor]["bgColor"] = "#b71c1c"  # the culprit stands out whatever its value
    return {
        "results": results,
        "thresholds": [
            {"value": atol, "bgColor": "#c8e6c9"},
            {"value": 100 * atol, "bgColor": "#ffe0b2"},
            {"value": 1e308, "bgColor": "#ef9a9a"},
        ],
    }


def write_overlay(loc: LocalizationReport, cache: Any, batch: int | None, work_dir: Path) -> LocalizationReport:
    """Write the node data beside the job's report; `loc` with its path (unchanged when nothing was compared)."""
    document = node_data(loc)
    if not document["results"]:
        return loc
    path = work_dir / FILENAME
    path.write_text(json.dumps(document, indent=1, allow_nan=False))
    log.info("localisation node data for Model Explorer: %s", path)
    return dataclasses.replace(loc, overlay=str(path))
