"""The README's Model Explorer commands, run: `pip install model-explorer-onnx`, then `onnxvis <artifact>
--node_data_paths=<job dir>/localization_node_data.json` on what a localisation wrote (mlp-sized: a planted fault
in its middle Gemm, dynamo's node_linear_1, so the colours have something to show).

The real viewer serves the real ONNX adapter's graph; its web app keys node data by node id (or by a node's
`tensor_name` output metadata). These tests read the graph and the node data back through the server's own API,
as the web app does, and check that every value lands on a node and the planted fault's node is the red one.
`nox -s tests_model_explorer` (in CI) installs model-explorer-onnx; elsewhere they skip, saying so.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GOLDEN

pytest.importorskip("model_explorer_onnx", reason="model-explorer-onnx is not installed here "
                                                  "(nox -s tests_model_explorer installs it)")

FAULT = ["backend._target_=tests.plugins.PerturbingOrtBackend", "+backend.node_contains=node_linear_1",
         "+backend.delta=2.0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, route: str, **query: Any) -> Any:
    url = f"http://127.0.0.1:{port}{route}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read().decode()
    return body if route == "/check_health" else json.loads(body)


@pytest.fixture(scope="module")
def localized(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """`python -m parity model=mlp localize=all` with the planted fault: its report and node-data file."""
    run = tmp_path_factory.mktemp("mx") / "run"
    proc = subprocess.run([sys.executable, "-m", "parity", "model=mlp", "localize=all", *FAULT,
                           f"golden.root={GOLDEN}", f"hydra.run.dir={run}"],
                          capture_output=True, text=True, timeout=300, cwd=str(Path(__file__).parents[1]))
    report = json.loads((run / "report.json").read_text())
    assert proc.returncode == 1 and report["localization"]["overlay"], proc.stderr[-2000:]
    return report, run


@pytest.fixture(scope="module")
def viewer(localized: tuple[dict[str, Any], Path]) -> Any:
    """The README's onnxvis command on the job's artifact and node data, headless on a free port."""
    report, run = localized
    port = _free_port()
    artifact = run / "artifacts" / "dynamo" / "model.onnx"
    command = ["onnxvis", str(artifact), f"--node_data_paths={run / 'localization_node_data.json'}",
               "--no_open_in_browser", f"--port={port}", "--host=127.0.0.1"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                              start_new_session=True)
    try:
        for _ in range(120):
            try:
                if _get(port, "/check_health") == "model_explorer_ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"onnxvis did not answer on port {port}")
        yield port, artifact, report
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _graph(port: int, artifact: Path) -> dict[str, Any]:
    """The graph Model Explorer's ONNX adapter makes of the artifact (the web app's `convert` command)."""
    command = {"extensionId": "onnx_adapter", "cmdId": "convert", "modelPath": str(artifact), "settings": {},
               "deleteAfterConversion": False}
    answer = _get(port, "/api/v1/send_command", json=json.dumps(command))
    assert "error" not in answer, answer
    (graph,) = answer["graphs"]
    return graph


def test_the_viewer_loads_the_artifact_with_the_onnx_adapter(viewer: Any) -> None:
    port, artifact, _ = viewer
    assert "onnx_adapter" in {e["id"] for e in _get(port, "/api/v1/get_extensions")}
    graph = _graph(port, artifact)
    assert {"Gemm", "Relu"} <= {n["label"] for n in graph["nodes"]}


def test_every_node_data_value_lands_on_a_node_and_the_fault_is_red(viewer: Any) -> None:
    from dacite import Config, from_dict
    from model_explorer.node_data_builder import GraphNodeData

    port, artifact, report = viewer
    graph = _graph(port, artifact)
    # the node data as the web app reads it from the path on its command line
    content = _get(port, "/api/v1/read_text_file", path=report["localization"]["overlay"])["content"]
    data = json.loads(content)
    from_dict(GraphNodeData, data, config=Config(strict=True))  # Model Explorer's own dataclasses take it
    # the web app's rule: a key is a node's `tensor_name` output metadata, else a node id
    by_tensor = {meta["value"]: node["id"] for node in graph["nodes"] for out in node.get("outputsMetadata", [])
                 for meta in out.get("attrs", []) if meta["key"] == "tensor_name"}
    ids = {node["id"] for node in graph["nodes"]}
    missing = [key for key in data["results"] if by_tensor.get(key, key) not in ids]
    assert not missing, f"node data keys that colour no node: {missing}"
    perturbed = report["backend"]["runtime"]["perturbed_node"]
    red = data["thresholds"][1]["value"]  # above 100 x atol
    assert data["results"][perturbed]["value"] > red and data["results"][perturbed]["bgColor"] == "#b71c1c"
    green = data["thresholds"][0]["value"]  # within atol
    assert any(v["value"] <= green for k, v in data["results"].items() if k != perturbed), data["results"]
