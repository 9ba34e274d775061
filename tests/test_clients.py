"""Clients outside Python: backend=command with programs the tests write (right, wrong, crashing, hanging), and
ONNX Runtime Web under a real Node and in a real headless Chromium against the committed goldens."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

PY = sys.executable

# A client that computes the outputs from parity's files (ONNX Runtime in its own process, reading the index).
CLIENT = r'''
import json, sys
import numpy as np, onnxruntime as ort

model, inputs_dir, outputs_dir = sys.argv[1:4]
mode = sys.argv[4] if len(sys.argv) > 4 else "right"
index = json.load(open(f"{inputs_dir}/index.json"))

def read(entry):
    path, dtype, shape = f"{inputs_dir}/{entry['file']}", entry["dtype"], entry["shape"]
    if index["tensor_format"] == "npy":
        return np.load(path)
    if index["tensor_format"] == "raw":
        flat = np.fromfile(path, dtype=np.dtype(dtype).newbyteorder("<"))
        # "misread": the layout a C++ client may assume by mistake (column-major)
        return flat.reshape(shape, order="F" if mode == "misread" else "C")
    return np.loadtxt(path, delimiter=",", dtype=dtype, ndmin=2).reshape(shape)

feeds = {e["name"]: read(e) for e in index["inputs"]}
session = ort.InferenceSession(model)
values = session.run(None, feeds)
fmt = index["outputs_format"]
if mode == "crash":
    sys.stderr.write("client: reading weights\nclient: segmentation fault in conv_forward()\n")
    sys.exit(3)
if mode == "abort":
    import os; os.abort()
if mode == "hang":
    import subprocess, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    import os; open(os.environ["PIDS"], "a").write(f"{os.getpid()}\n{child.pid}\n")
    time.sleep(3600)
for entry, value in zip(index["expected_outputs"], values):
    if mode == "wrong":
        value = value * 1.01 + 0.05
    if mode == "missing":
        continue
    path = f"{outputs_dir}/{entry['file']}"
    if mode == "garbage":
        open(path, "wb").write(b"not an npy file")
    elif fmt == "npy":
        np.save(path, value)
    elif fmt == "raw":
        value.astype(value.dtype.newbyteorder("<")).tofile(path)
    else:
        np.savetxt(path, value.reshape(value.shape[0], -1), delimiter=",", fmt="%.9g")
if mode in ("stale", "indexed"):  # an index of the client's own: the outputs' dtypes and shapes, what ran
    client = {"name": mode, "model_sha256": "0" * 64} if mode == "stale" else {"name": "indexed client"}
    json.dump({"format": "parity.tensors/v1", "tensor_format": fmt, "inputs": [],
               "outputs": [{"name": e["name"], "file": e["file"], "dtype": "float32", "shape": list(v.shape)}
                           for e, v in zip(index["expected_outputs"], values)],
               "client": client}, open(f"{outputs_dir}/index.json", "w"))
'''


@pytest.fixture
def client(tmp_path: Path) -> Path:
    path = tmp_path / "client.py"
    path.write_text(textwrap.dedent(CLIENT))
    return path


def command(client: Path, mode: str = "right", *extra: str) -> list[str]:
    argv = [PY, str(client), "'{model}'", "'{inputs_dir}'", "'{outputs_dir}'", mode]
    return ["backend=command", f"backend.command=[{','.join(argv)}]", *extra]


def backend_check(report: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["check"] == "backend")


def test_a_command_that_computes_the_outputs_passes_and_its_version_is_recorded(run_parity, client) -> None:
    report, code = run_parity(["model=mlp", *command(client), f"backend.version_command=[{PY},--version]"])
    assert code == 0, report["error"]
    assert backend_check(report)["verdict"] == "PASS"
    runtime = report["backend"]["runtime"]
    assert runtime["framework"] == "command" and runtime["inputs_format"] == "npy"
    assert runtime["version"].startswith("Python 3.")
    assert runtime["command"][-4:] == ["{model}", "{inputs_dir}", "{outputs_dir}", "right"]


@pytest.mark.parametrize("fmt", ["raw", "csv"])
def test_raw_and_csv_files_in_and_out(run_parity, client, fmt: str) -> None:
    """Outputs without an index of their own: dtype and shape come from the ONNX graph (its batch from the
    inputs')."""
    report, code = run_parity(["model=mlp", *command(client, "right", f"backend.inputs_format={fmt}",
                                                     f"backend.outputs_format={fmt}")])
    assert code == 0, report["error"]
    assert backend_check(report)["verdict"] == "PASS"


def test_a_command_writing_wrong_outputs_fails(run_parity, client) -> None:
    report, code = run_parity(["model=mlp", *command(client, "wrong")])
    check = backend_check(report)
    assert code == 1 and check["verdict"] == "FAIL"
    assert check["outputs"][0]["metrics"]["max_abs"] > 0.05


def test_a_client_that_misreads_its_input_file_fails(run_parity, client) -> None:
    """Seed 002: the C++ client agreed with Python only once it read the same input file the right way; one that
    takes parity's C-order raw file as column-major computes on other inputs, and that is a FAIL."""
    report, code = run_parity(["model=mlp", *command(client, "misread", "backend.inputs_format=raw")])
    assert code == 1 and backend_check(report)["verdict"] == "FAIL"


@pytest.mark.parametrize("mode, said", [
    ("crash", ["exited with status 3", "segmentation fault in conv_forward()"]),
    ("abort", ["killed by SIGABRT"]),
    ("missing", ["exited 0 but wrote no output logits (logits.npy)", "it holds: nothing"]),
    ("garbage", ["outputs are malformed", "logits.npy is not a .npy file"]),
    ("stale", ["the client loaded model.onnx with SHA-256 0000000000000000", "stale or cached"]),
])
def test_a_command_that_fails_is_an_error_saying_why(run_parity, client, mode: str, said: list[str]) -> None:
    report, code = run_parity(["model=mlp", *command(client, mode)])
    check = backend_check(report)
    assert code == 2 and check["verdict"] == "ERROR", check
    for text in said:
        assert text in check["message"], check["message"]
    assert "\n" not in check["message"]


def test_a_hanging_command_is_killed_with_its_children_on_timeout(run_parity, client, tmp_path: Path) -> None:
    pids = tmp_path / "pids.txt"
    start = time.monotonic()
    report, code = run_parity(["model=mlp", *command(client, "hang", "backend.timeout_s=3",
                                                     f"+backend.env.PIDS='{pids}'")])
    check = backend_check(report)
    assert code == 2 and check["verdict"] == "ERROR"
    assert "did not finish in 3 s and was killed" in check["message"]
    assert time.monotonic() - start < 120
    found = [int(p) for p in pids.read_text().split()]
    assert len(found) == 2
    for pid in found:
        assert not _alive(pid), f"process {pid} of the client outlived the timeout"


def _alive(pid: int) -> bool:
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        stat = Path(f"/proc/{pid}/stat")
        if stat.is_file() and stat.read_text().split()[2] == "Z":  # a zombie: dead, waiting for its parent
            return False
        time.sleep(0.1)
    return True


def test_a_missing_program_is_a_skip_with_the_reason(run_parity) -> None:
    report, code = run_parity(["model=mlp", "backend=command",
                               "backend.command=[no-such-client-program,'{model}']"])
    check = backend_check(report)
    assert check["verdict"] == "SKIP" and "program 'no-such-client-program' not found on PATH" in check["message"]


def test_a_program_found_only_on_parity_s_path_is_a_skip_without_its_environment(run_parity, client, tmp_path,
                                                                                  monkeypatch) -> None:
    """inherit_env=false: the program is looked up as the child will look it up (no PATH: the system's default)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "myclient"
    program.write_text(f"#!/bin/sh\nexec {PY} {client} \"$@\"\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    argv = ["myclient", "'{model}'", "'{inputs_dir}'", "'{outputs_dir}'"]
    report, code = run_parity(["model=mlp", "backend=command", f"backend.command=[{','.join(argv)}]"])
    assert code == 0 and backend_check(report)["verdict"] == "PASS", report["error"]
    report, _ = run_parity(["model=mlp", "backend=command", f"backend.command=[{','.join(argv)}]",
                            "backend.inherit_env=false"])
    check = backend_check(report)
    assert check["verdict"] == "SKIP" and "program 'myclient' not found on PATH" in check["message"]


def test_raw_outputs_of_a_graph_declaring_no_output_shape_need_an_index(run_parity, client, tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "relu.onnx")
    golden = tmp_path / "golden"
    base = ["model=onnx", f"model.path={tmp_path / 'relu.onnx'}"]
    report, code = run_parity([*base, "mode=golden"], golden_root=golden)
    assert code == 0, report["error"]
    report, code = run_parity([*base, *command(client, "right", "backend.outputs_format=raw")], golden_root=golden)
    check = backend_check(report)
    assert code == 2 and "the ONNX graph declares no shape for output y; write an index.json" in check["message"]
    report, code = run_parity([*base, *command(client, "indexed", "backend.outputs_format=raw")], golden_root=golden)
    assert code == 0 and backend_check(report)["verdict"] == "PASS", backend_check(report)
    assert report["backend"]["runtime"]["client"] == {"name": "indexed client"}


@pytest.mark.parametrize("override, said", [
    ("backend.command=[]", "command is empty"),
    ("backend.command=[prog,'{batch_size:03d}']", "{batch_size} takes no format spec or conversion"),
    ("backend.command=[prog,'{modle}']", "names {modle}; the placeholders are {model}, {inputs_dir}"),
    ("backend.inputs_format=parquet", "inputs_format 'parquet' is not one of npy, raw, csv"),
    ("backend.timeout_s=0", "timeout_s must be > 0"),
])
def test_command_config_errors_are_one_line(cli, override: str, said: str) -> None:
    proc = cli("model=mlp", "backend=command", "backend.command=[prog]", override)
    assert proc.returncode == 2, proc.stderr
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("parity:")]
    assert len(line) == 1 and said in line[0], proc.stderr


# -- ONNX Runtime Web ---------------------------------------------------------------------------------------------


def web_reason(browser: bool = False) -> str | None:
    from parity.web import installed

    if shutil.which("node") is None:
        return "no node here (Debian: apt-get install nodejs); the ort_web backends need it"
    if installed() is None and shutil.which("npm") is None:
        return "no npm here to install onnxruntime-web (Debian: apt-get install npm)"
    if browser:
        from parity.web.chromium import missing_reason

        return missing_reason(needed_for="the ort_web_browser tests")
    return None


def needs_web(browser: bool = False) -> None:
    reason = web_reason(browser)
    if reason:
        pytest.skip(reason)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def loaded_the_artifact(report: dict[str, Any], run_dir: Path) -> None:
    """The client's SHA-256 of the bytes it loaded is the exported file's."""
    runtime = report["backend"]["runtime"]
    model = run_dir / "artifacts" / report["exporter"] / "model.onnx"
    assert runtime["model_sha256_loaded"] == file_sha256(model)
    for location, digest in runtime["client"]["external_data_sha256"].items():
        assert digest == file_sha256(model.parent / location)


@pytest.mark.parametrize("model", ["mlp", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_ort_web_under_node_matches_the_golden(run_parity, tmp_path: Path, model: str) -> None:
    needs_web()
    report, code = run_parity([f"model={model}", "backend=ort_web", "backend.num_threads=2"])
    assert code == 0, report["error"] or backend_check(report)
    runtime = report["backend"]["runtime"]
    assert runtime["onnxruntime-web"] == runtime["client"]["onnxruntime_web"] == "1.30.0"
    assert runtime["runtime"] == f"node {runtime['client']['node']}"
    assert runtime["wasm"]["num_threads"] == 2 and runtime["wasm_requested"]["num_threads"] == 2
    loaded_the_artifact(report, tmp_path / "run")


@pytest.mark.parametrize("model", ["mlp", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_ort_web_in_a_real_headless_chromium_matches_the_golden(run_parity, tmp_path: Path, model: str) -> None:
    needs_web(browser=True)
    report, code = run_parity([f"model={model}", "backend=ort_web_browser", "backend.num_threads=2"])
    assert code == 0, report["error"] or backend_check(report)
    runtime = report["backend"]["runtime"]
    assert runtime["runtime"].startswith(("Chrome/", "HeadlessChrome/")) and runtime["browser"]["userAgent"]
    assert runtime["onnxruntime-web"] == "1.30.0"
    assert runtime["cross_origin_isolated"] is True
    assert runtime["wasm"]["num_threads"] == 2  # threads need the COOP/COEP headers the local server sends
    loaded_the_artifact(report, tmp_path / "run")


def test_the_simd_setting_reaches_onnxruntime_web(run_parity) -> None:
    needs_web()
    report, code = run_parity(["model=mlp", "backend=ort_web", "backend.simd=off"])
    assert code == 0, report["error"] or backend_check(report)
    assert report["backend"]["runtime"]["wasm"]["simd"] is False
    report, code = run_parity(["model=mlp", "backend=ort_web", "backend.simd=relaxed"])
    check = backend_check(report)
    if check["verdict"] == "ERROR":  # Node 20's V8 11.3 predates relaxed SIMD: onnxruntime-web refuses to start
        assert "Relaxed WebAssembly SIMD is not supported" in check["message"], check["message"]
        assert check["message"].count("parity ort_web runner:") == 1 and " at " not in check["message"].split(
            "stderr:")[1], "the ERROR quotes the runner's message, not its stack"
    else:
        assert check["verdict"] == "PASS" and report["backend"]["runtime"]["wasm"]["simd"] == "relaxed"


def test_a_cache_directory_with_braces_in_its_name(run_parity, tmp_path: Path) -> None:
    """Paths parity puts into the command line are taken as they are, braces and all."""
    needs_web()
    report, code = run_parity(["model=mlp", "backend=ort_web", f"backend.cache_dir='{tmp_path / 'c{x}'}'"])
    assert code == 0, report["error"] or backend_check(report)
    assert "/c{x}/" in report["backend"]["runtime"]["package"]["install"]


def test_a_proxied_session_in_the_browser_reports_the_bytes_it_loaded(run_parity, tmp_path: Path) -> None:
    """env.wasm.proxy runs ONNX Runtime Web in a web worker, which takes the model's buffer: the page hashes the
    bytes before handing them over."""
    needs_web(browser=True)
    report, code = run_parity(["model=mlp", "backend=ort_web_browser", "backend.proxy=true"])
    assert code == 0, report["error"] or backend_check(report)
    assert report["backend"]["runtime"]["wasm"]["proxy"] is True
    loaded_the_artifact(report, tmp_path / "run")


def test_without_cross_origin_isolation_the_browser_gives_wasm_one_thread(run_parity) -> None:
    needs_web(browser=True)
    report, code = run_parity(["model=mlp", "backend=ort_web_browser", "backend.num_threads=2",
                               "backend.cross_origin_isolated=false"])
    assert code == 0, report["error"] or backend_check(report)
    runtime = report["backend"]["runtime"]
    assert runtime["cross_origin_isolated"] is False and runtime["wasm_requested"]["num_threads"] == 2
    assert runtime["wasm"]["num_threads"] == 1, runtime["wasm"]


def test_missing_node_or_browser_is_a_skip_with_the_reason(run_parity) -> None:
    report, _ = run_parity(["model=mlp", "backend=ort_web", "backend.node=/nonexistent/node"])
    check = backend_check(report)
    assert check["verdict"] == "SKIP" and "needs Node.js ('/nonexistent/node' is not on PATH" in check["message"]
    report, _ = run_parity(["model=mlp", "backend=ort_web_browser", "backend.browser=no-such-browser"])
    check = backend_check(report)
    assert check["verdict"] == "SKIP" and "no 'no-such-browser' here (Debian: apt-get install chromium)" \
        in check["message"]


def test_a_sweep_over_python_node_and_browser_gives_the_pairwise_table(cli, tmp_path: Path) -> None:
    needs_web(browser=True)
    proc = cli("-m", "model=mlp", "backend=ort_cpu,ort_web,ort_web_browser")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== pairwise max / mean |a − b|: mlp b=4 logits" in proc.stdout
    header = next(ln for ln in proc.stdout.splitlines() if ln.startswith("|") and "dynamo×ort_web_browser" in ln
                  and "golden" in ln)
    assert "dynamo×ort_cpu" in header and "dynamo×ort_web " in header
    sweep = json.loads((tmp_path / "sweep" / "sweep_report.json").read_text())
    pair = sweep["pairwise"][0]
    assert {"golden", "dynamo×ort_cpu", "dynamo×ort_web", "dynamo×ort_web_browser"} <= set(pair["labels"])


def test_onnxruntime_web_installs_once_from_the_lockfile(tmp_path: Path) -> None:
    """`python -m parity.web install` (what the first run does): npm ci into a cache keyed by the lockfile."""
    import subprocess

    needs_web()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cache = tmp_path / "cache"
    first = subprocess.run([PY, "-m", "parity.web", "install", "--cache-dir", str(cache)], capture_output=True,
                           text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stderr
    assert "installing onnxruntime-web 1.30.0 with npm ci" in first.stderr
    ort = Path(first.stdout.split(": ", 1)[1].strip())
    assert json.loads((ort / "package.json").read_text())["version"] == "1.30.0"
    again = subprocess.run([PY, "-m", "parity.web", "install", "--cache-dir", str(cache)], capture_output=True,
                           text=True, env=env, timeout=60)
    assert again.returncode == 0 and "installing" not in again.stderr and str(ort) in again.stdout
    bad = subprocess.run([PY, "-m", "parity.web", "install", "--package-dir", str(tmp_path)], capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == 2 and f"{tmp_path} holds no package.json" in bad.stderr


def test_the_local_server_serves_only_what_it_names(tmp_path: Path) -> None:
    from parity.web.server import Server

    model_dir, io_root, ort = tmp_path / "model", tmp_path / "io", tmp_path / "ort"
    for d in (model_dir, io_root / "call_0001" / "inputs", io_root / "call_0001" / "outputs", ort / "dist"):
        d.mkdir(parents=True)
    (model_dir / "model.onnx").write_bytes(b"model")
    (model_dir / "secret.txt").write_text("not served")
    (io_root / "call_0001" / "inputs" / "x.bin").write_bytes(b"x")
    (ort / "dist" / "ort.wasm.min.mjs").write_text("// ort")
    (io_root / "call_0001" / "inputs" / "-x.bin").write_bytes(b"-x")  # a tensor named "-x" keeps its dash
    with Server(io_root, ort, model_dir / "model.onnx", [], isolated=True) as server:
        def get(path: str) -> tuple[int, bytes, Any]:
            try:
                with urllib.request.urlopen(server.url + path, timeout=10) as answer:
                    return answer.status, answer.read(), answer.headers
            except urllib.error.HTTPError as exc:
                return exc.code, b"", exc.headers

        assert server.url.startswith("http://127.0.0.1:")
        code, body, headers = get("model/model.onnx")
        assert (code, body) == (200, b"model") and headers["Cache-Control"] == "no-store"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert get("io/call_0001/inputs/x.bin")[:2] == (200, b"x")
        assert get("io/call_0001/inputs/-x.bin")[:2] == (200, b"-x")
        assert get("ort/ort.wasm.min.mjs")[0] == 200 and b"<html>" in get("")[1]
        for path in ("model/secret.txt", "model/..%2Fmodel%2Fsecret.txt", "io/..%2F..%2Fmodel/inputs/model.onnx",
                     "web/runner.mjs", "ort/..%2F..%2Fmodel%2Fmodel.onnx", "io/call_0001/outputs/x.bin"):
            assert get(path)[0] == 404, path
        post = urllib.request.Request(server.url + "io/call_0001/outputs/y.bin", data=b"y", method="POST")
        with urllib.request.urlopen(post, timeout=10) as answer:
            assert answer.status == 200
        assert (io_root / "call_0001" / "outputs" / "y.bin").read_bytes() == b"y"
        for path in ("io/call_0001/inputs/z.bin", "io/..%2F..%2Fmodel/outputs/z.bin", "model/z"):
            request = urllib.request.Request(server.url + path, data=b"z", method="POST")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 403
        assert not (model_dir / "z").exists() and not (io_root / "call_0001" / "inputs" / "z.bin").exists()
