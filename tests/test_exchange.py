"""Goldens to and from other programs: mode=export and mode=import in Polygraphy's JSON, ONNX test data sets,
.npy with an index, raw binaries (trtexec) and CSV; every format round-trips; the real `polygraphy run` checks an
exported golden; files other tools wrote (polygraphy itself, onnx's numpy_helper, a numpy "client") import and
verify like any golden."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from onnx import numpy_helper

from parity import exchange
from tests.conftest import tree_bytes
from tests.plugins import perturb_onnx
from tests.test_own_model import dense_relu, onnx_model

MLP = ["model=mlp", "inputs.num_samples=4"]
POLYGRAPHY = str(Path(sys.executable).parent / "polygraphy")


def stored(root: Path, model: str, input_set: str) -> tuple[dict, dict]:
    loaded = []
    for name in ("inputs.npz", "outputs.npz"):
        with np.load(root / model / input_set / name) as data:
            loaded.append({k: np.array(data[k]) for k in data.files})
    return loaded[0], loaded[1]


def every_dtype() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {f"t/{name}:0": rng.normal(size=(3, 2, 2)).astype(name)
              for name in ("float16", "float32", "float64")}
    for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        info = np.iinfo(name)
        arrays[name] = rng.integers(info.min, info.max, size=(3, 5), dtype=name, endpoint=True)
    arrays["bool"] = rng.random((3, 4)) > 0.5
    arrays["bfloat16"] = rng.normal(size=(3, 7)).astype(ml_dtypes.bfloat16)
    arrays["tiny values"] = np.array([[1e-38, -3.4e38], [5e-45, np.pi], [-0.0, 1 / 3]], dtype=np.float32)
    arrays["one value per sample"] = rng.normal(size=(3,)).astype(np.float32)
    return arrays


@pytest.mark.parametrize("fmt", ["npy", "raw", "csv", "onnx_test_data"])
def test_every_dtype_round_trips_bit_for_bit(tmp_path: Path, fmt: str) -> None:
    arrays = every_dtype()
    axes = {"inputs": {n: 0 for n in arrays}, "outputs": {"out": 0}}
    outputs = {"out": arrays["t/float32:0"] * 2}
    exchange.write_dir(fmt, tmp_path, arrays, outputs, axes, None, {"model": "m"})
    if fmt == "onnx_test_data":
        back = exchange.read_test_data(tmp_path, list(arrays), ["out"])
        ins, outs = back.inputs[0], back.outputs[0]
    else:
        back = exchange.read_dir(fmt, tmp_path)
        ins, outs = back.inputs[0], back.outputs[0]
    assert set(ins) == set(arrays)
    for name, array in arrays.items():
        got = ins[name]
        assert got.dtype == array.dtype and got.shape == array.shape, name
        assert got.tobytes() == array.tobytes(), name  # bit for bit, -0.0 and denormals included
    np.testing.assert_array_equal(outs["out"], outputs["out"])


def test_polygraphy_json_round_trips_through_polygraphy(tmp_path: Path) -> None:
    arrays = {k: v for k, v in every_dtype().items() if k != "bfloat16"}  # numpy has no bfloat16: refused there
    outputs = {"out": arrays["t/float32:0"] * 2}
    axes = {"inputs": {n: 0 for n in arrays}, "outputs": {"out": 0}}
    exchange.write_dir("polygraphy", tmp_path, arrays, outputs, axes, 1, {})
    ins = exchange.read_polygraphy_inputs(tmp_path / "inputs.json").inputs
    outs, runner = exchange.read_polygraphy_outputs(tmp_path / "outputs.json", None)
    assert runner == exchange.POLYGRAPHY_RUNNER and len(ins) == len(outs) == 3  # three iterations of one sample
    joined = exchange.join_batches(ins, {n: 0 for n in arrays}, "t")
    for name, array in arrays.items():
        assert joined[name].tobytes() == array.tobytes() and joined[name].dtype == array.dtype


def test_csv_is_plain_rows_another_program_reads(tmp_path: Path) -> None:
    """Seed 002: the C++ client read CSV right where its .npy reader was wrong. One row per sample, no header."""
    values = np.random.default_rng(1).normal(size=(10, 32, 32, 3)).astype(np.float32)
    exchange.write_dir("csv", tmp_path, {"image": values}, {"probs": values[:, 0, 0, :]},
                       {"inputs": {"image": 0}, "outputs": {"probs": 0}}, None, {})
    with open(tmp_path / "inputs" / "image.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 10 and all(len(r) == 32 * 32 * 3 for r in rows)
    np.testing.assert_array_equal(np.array(rows, dtype=np.float64).astype(np.float32).reshape(values.shape), values)


@pytest.mark.parametrize("fmt, batch", [("polygraphy", 2), ("onnx_test_data", 2), ("npy", None), ("raw", None),
                                        ("csv", None), ("onnx_test_data", None)])
def test_export_then_import_gives_the_same_golden_which_verifies(run_parity, tmp_path: Path, fmt: str,
                                                                 batch: int | None) -> None:
    root, out = tmp_path / "golden", tmp_path / "exported"
    assert run_parity([*MLP, "mode=golden"], root)[1] == 0
    args = [f"export.batch_size={batch}"] if batch else []
    exported, code = run_parity([*MLP, "mode=export", f"export.format={fmt}", f"export.dir={out}", *args], root)
    assert code == 0 and exported["verdict"] == "PASS", exported.get("error")
    assert exported["exported"]["format"] == fmt and all(Path(f).is_file() for f in exported["exported"]["files"])
    if fmt == "onnx_test_data":
        assert len(sorted(out.glob("test_data_set_*"))) == (2 if batch else 1)
    if fmt == "polygraphy":
        assert len(exchange.read_polygraphy_inputs(out / "inputs.json").inputs) == 2  # 4 samples, 2 per iteration
    imported, code = run_parity([*MLP, "mode=import", f"import.format={fmt}", f"import.path={out}",
                                 "inputs.name=back"], root)
    assert code == 0 and imported["golden"]["written"], imported.get("error")
    original, again = stored(root, "mlp", "default"), stored(root, "mlp", "back")
    for mine, theirs in zip(original, again):
        assert set(mine) == set(theirs)
        for name in mine:
            assert mine[name].tobytes() == theirs[name].tobytes() and mine[name].dtype == theirs[name].dtype
    record = json.loads((root / "mlp" / "back" / "manifest.json").read_text())["imported"]
    assert record["format"] == fmt and record["files"] and all(len(f["sha256"]) == 64 for f in record["files"])
    checked, code = run_parity([*MLP, "inputs.name=back"], root)
    assert code == 0 and {c["verdict"] for c in checked["checks"]} == {"PASS"}, checked.get("error")
    assert checked["golden"]["imported"]["format"] == fmt


def test_polygraphy_run_checks_an_exported_golden(run_parity, tmp_path: Path) -> None:
    """`polygraphy run model.onnx --onnxrt --load-inputs … --load-outputs …` on the very data parity exported."""
    root, out = tmp_path / "golden", tmp_path / "exported"
    assert run_parity([*MLP, "mode=golden"], root)[1] == 0
    verified, code = run_parity([*MLP, "exporter=torchscript"], root)
    assert code == 0
    model = tmp_path / "model.onnx"  # the artifact parity verified (its run directory goes with the next run)
    shutil.copyfile(verified["exports"][0]["path"], model)
    assert run_parity([*MLP, "mode=export", "export.format=polygraphy", f"export.dir={out}"], root)[1] == 0
    command = [POLYGRAPHY, "run", None, "--onnxrt", "--load-inputs", str(out / "inputs.json"),
               "--load-outputs", str(out / "outputs.json"), "--atol", "1e-4", "--rtol", "1e-3"]
    good = subprocess.run([c if c else str(model) for c in command], capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "PASSED" in good.stdout + good.stderr
    broken = tmp_path / "broken.onnx"
    shutil.copyfile(model, broken)
    perturb_onnx(broken, delta=0.5)  # the same graph, one weight off: polygraphy must notice
    bad = subprocess.run([c if c else str(broken) for c in command], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "FAILED" in bad.stdout + bad.stderr


def test_outputs_polygraphy_saved_import_and_verify(run_parity, tmp_path: Path) -> None:
    model = dense_relu(tmp_path / "dense.onnx")
    ins, outs = tmp_path / "in.json", tmp_path / "out.json"
    made = subprocess.run([POLYGRAPHY, "run", str(model), "--onnxrt", "--input-shapes", "x:[5,6]",
                           "--save-inputs", str(ins), "--save-outputs", str(outs)],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    root = tmp_path / "golden"
    report, code = run_parity(onnx_model(model, "mode=import", "import.format=polygraphy", f"import.path={outs}",
                                         f"import.inputs={ins}"), root)
    assert code == 0, report.get("error")
    manifest = json.loads((root / "dense" / "default" / "manifest.json").read_text())
    assert manifest["imported"]["runner"].startswith("onnxrt-runner") and manifest["num_samples"] == 5
    checked, code = run_parity(onnx_model(model), root)
    assert code == 0 and {c["verdict"] for c in checked["checks"]} == {"PASS"}, checked.get("error")
    wrong, code = run_parity(onnx_model(model, "mode=import", "import.format=polygraphy", f"import.path={outs}",
                                        f"import.inputs={ins}", "import.runner=trt-runner", "inputs.name=x"), root)
    assert code == 2 and "holds no runner 'trt-runner' (it holds onnxrt-runner" in wrong["error"]


def test_onnx_test_data_written_by_onnx_imports_and_its_outputs_are_checked(run_parity, tmp_path: Path) -> None:
    model = dense_relu(tmp_path / "dense" / "model.onnx", seed=2)
    x = np.random.default_rng(9).normal(size=(3, 6)).astype(np.float32)
    import onnx
    graph = onnx.load(str(model)).graph
    w, b = (numpy_helper.to_array(t) for t in graph.initializer[:2])
    expected = {"y": np.maximum(x @ w + b, 0).astype(np.float32), "s": x.sum(axis=1).astype(np.float32)}
    data_set = tmp_path / "dense" / "test_data_set_0"
    data_set.mkdir()
    (data_set / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x").SerializeToString())
    for i, name in enumerate(["y", "s"]):  # unnamed: matched by position, as ONNX's own runner does
        (data_set / f"output_{i}.pb").write_bytes(numpy_helper.from_array(expected[name]).SerializeToString())
    root = tmp_path / "golden"
    report, code = run_parity(onnx_model(model, "mode=import", "import.format=onnx_test_data",
                                         f"import.path={tmp_path / 'dense'}", "inputs.name=onnx"), root)
    assert code == 0, report.get("error")
    checked, code = run_parity(onnx_model(model, "inputs.name=onnx"), root)
    assert code == 0 and {c["verdict"] for c in checked["checks"]} == {"PASS"}, checked.get("error")
    # expected outputs that the model does not produce: the reference check fails on them
    (data_set / "output_0.pb").write_bytes(numpy_helper.from_array(expected["y"] + 0.5).SerializeToString())
    assert run_parity(onnx_model(model, "mode=import", "import.format=onnx_test_data",
                                 f"import.path={tmp_path / 'dense'}", "inputs.name=off"), root)[1] == 0
    failed, code = run_parity(onnx_model(model, "inputs.name=off"), root)
    assert code == 1 and failed["checks"][0]["check"] == "reference" and failed["checks"][0]["verdict"] == "FAIL"


def test_outputs_another_program_wrote_as_npy_import_with_parity_exported_inputs(run_parity, tmp_path: Path) -> None:
    """The exchange of seed 000 / 002: parity exports the inputs, a client outside Python computes the outputs and
    writes .npy, parity imports them and they verify."""
    model = dense_relu(tmp_path / "dense.onnx", seed=4)
    root, out = tmp_path / "golden", tmp_path / "for_client"
    assert run_parity(onnx_model(model, "mode=golden"), root)[1] == 0
    assert run_parity(onnx_model(model, "mode=export", "export.format=npy", f"export.dir={out}"), root)[1] == 0
    import onnx
    w, b = (numpy_helper.to_array(t) for t in onnx.load(str(model)).graph.initializer[:2])
    x = np.load(out / "inputs" / "x.npy")  # the client: reads the inputs, writes its outputs
    np.savez(tmp_path / "client_outputs.npz", y=np.maximum(x @ w + b, 0), s=x.sum(axis=1))
    report, code = run_parity(onnx_model(model, "mode=import", "import.format=npy", "import.tool=my C++ client",
                                         f"import.path={tmp_path / 'client_outputs.npz'}", f"import.inputs={out}",
                                         "inputs.name=client"), root)
    assert code == 0, report.get("error")
    assert report["golden"]["imported"]["tool"] == "my C++ client"
    checked, code = run_parity(onnx_model(model, "inputs.name=client"), root)
    assert code == 0 and {c["verdict"] for c in checked["checks"]} == {"PASS"}, checked.get("error")


def test_an_export_never_writes_into_a_foreign_directory_or_the_golden_root(run_parity, tmp_path: Path) -> None:
    root = tmp_path / "golden"
    assert run_parity([*MLP, "mode=golden"], root)[1] == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for overwrite in ("false", "true"):
        report, code = run_parity([*MLP, "mode=export", "export.format=npy", f"export.dir={mine}",
                                   f"export.overwrite={overwrite}"], root)
        assert code == 2 and "mine" in report["error"] and "refus" in report["error"]
    assert tree_bytes(mine) == {"notes.txt": b"keep me"}
    before = tree_bytes(root)
    report, code = run_parity([*MLP, "mode=export", "export.format=npy", f"export.dir={root / 'out'}"], root)
    assert code == 2 and "golden root" in report["error"] and tree_bytes(root) == before
    for index in ('{"format": "my-dataset-index"}', json.dumps({"format": "parity.tensors/v1", "files": []})):
        (mine / "index.json").write_text(index)  # someone else's index, or parity's that does not list notes.txt
        report, code = run_parity([*MLP, "mode=export", "export.format=npy", f"export.dir={mine}",
                                   "export.overwrite=true"], root)
        assert code == 2 and "holds files no export wrote" in report["error"]
        assert (mine / "notes.txt").read_text() == "keep me"
    (tmp_path / "index.json").write_text(json.dumps({"format": "parity.tensors/v1", "files": []}))
    report, code = run_parity([*MLP, "mode=export", "export.format=npy", f"export.dir={tmp_path}",
                               "export.overwrite=true"], root)  # the start directory, above the golden root
    assert code == 2 and "never replaces a directory above goldens" in report["error"] and tree_bytes(root) == before
    out = tmp_path / "out"
    assert run_parity([*MLP, "mode=export", "export.format=csv", f"export.dir={out}"], root)[1] == 0
    report, code = run_parity([*MLP, "mode=export", "export.format=raw", f"export.dir={out}"], root)
    assert code == 2 and "export.overwrite=true replaces it" in report["error"]
    assert run_parity([*MLP, "mode=export", "export.format=raw", f"export.dir={out}", "export.overwrite=true"],
                      root)[1] == 0
    assert sorted(p.suffix for p in out.rglob("*.*")) == [".bin", ".bin", ".json"]


@pytest.mark.parametrize("args, expected", [
    (["mode=import"], "mode=import needs import.format"),
    (["mode=import", "import.format=npy"], "mode=import needs import.path"),
    (["mode=import", "import.format=csv", "import.path=x", "import.runner=r"], "import.runner picks a runner"),
    (["mode=export", "export.format=xml", "export.dir=d"], "one of polygraphy, onnx_test_data, npy, raw, csv"),
    (["mode=export", "export.format=npy"], "mode=export needs export.dir"),
    (["mode=export", "export.format=npy", "export.dir=d", "export.batch_size=2"], "export.batch_size splits"),
])
def test_bad_import_and_export_settings_are_configuration_errors(run_parity, tmp_path: Path, args: list[str],
                                                                 expected: str) -> None:
    report, code = run_parity([*MLP, *args], tmp_path / "golden")
    assert code == 2 and report["error"].startswith("configuration error") and expected in report["error"], \
        report["error"]


def test_an_import_that_does_not_fit_the_model_writes_nothing(run_parity, tmp_path: Path) -> None:
    root, out = tmp_path / "golden", tmp_path / "exported"
    assert run_parity([*MLP, "mode=golden"], root)[1] == 0
    assert run_parity([*MLP, "mode=export", "export.format=npy", f"export.dir={out}"], root)[1] == 0
    index = json.loads((out / "index.json").read_text())
    index["outputs"][0]["name"] = "scores"  # another program's name for the output
    (out / "index.json").write_text(json.dumps(index))
    report, code = run_parity([*MLP, "mode=import", "import.format=npy", f"import.path={out}", "inputs.name=b"], root)
    assert code == 2 and "no output(s) ['logits']" in report["error"] and not (root / "mlp" / "b").exists()
    report, code = run_parity([*MLP, "mode=import", "import.format=npy", f"import.path={out}"], root)
    assert code == 2 and "already exists" in report["error"]  # the default input set's golden is kept


@pytest.mark.parametrize("change, expected", [
    (lambda a: a.astype(np.float64), "output 'logits' is float64 in the files; the model returns float32"),
    (lambda a: a[:, :3], "output 'logits' has shape [4, 3] in the files; the model returns ['batch', 8]"),
])
def test_imported_outputs_must_have_the_models_dtypes_and_shapes(run_parity, tmp_path: Path, change,
                                                                  expected: str) -> None:
    root, out = tmp_path / "golden", tmp_path / "exported"
    assert run_parity([*MLP, "mode=golden"], root)[1] == 0
    assert run_parity([*MLP, "mode=export", "export.format=npy", f"export.dir={out}"], root)[1] == 0
    logits = np.load(out / "outputs" / "logits.npy")
    np.savez(tmp_path / "client.npz", logits=change(logits))
    report, code = run_parity([*MLP, "mode=import", "import.format=npy", f"import.path={tmp_path / 'client.npz'}",
                               f"import.inputs={out}", "inputs.name=client"], root)
    assert code == 2 and expected in report["error"], report["error"]
    assert not (root / "mlp" / "client").exists()


def test_an_imported_golden_suggests_importing_again_never_a_reference_golden(run_parity, tmp_path: Path) -> None:
    root, out = tmp_path / "golden", tmp_path / "exported"
    assert run_parity([*MLP, "mode=golden"], root)[1] == 0
    assert run_parity([*MLP, "mode=export", "export.format=npy", f"export.dir={out}"], root)[1] == 0
    args = [*MLP, "mode=import", "import.format=npy", f"import.path={out}", "inputs.name=back"]
    assert run_parity(args, root)[1] == 0
    report, code = run_parity(args, root)
    assert code == 2 and "already exists" in report["error"]
    assert "mode=import" in report["error"] and "mode=golden" not in report["error"]
    stale, code = run_parity([*MLP, "inputs.name=back", "model.builder.hidden=16"], root)  # another model now
    assert code == 2 and "stale" in stale["error"] and "mode=import" in stale["error"]
    assert "import.format=npy" in stale["error"] and "mode=golden" not in stale["error"]


def test_client_outputs_import_with_the_inputs_of_a_csv_export(run_parity, tmp_path: Path) -> None:
    """The README's exchange: export CSV for a client, take its .npz outputs back with those very inputs."""
    model = dense_relu(tmp_path / "dense.onnx", seed=6)
    root, out = tmp_path / "golden", tmp_path / "for_my_client"
    assert run_parity(onnx_model(model, "mode=golden"), root)[1] == 0
    assert run_parity(onnx_model(model, "mode=export", "export.format=csv", f"export.dir={out}"), root)[1] == 0
    import onnx
    w, b = (numpy_helper.to_array(t) for t in onnx.load(str(model)).graph.initializer[:2])
    x = np.loadtxt(out / "inputs" / "x.csv", delimiter=",", dtype=np.float32).reshape(-1, 6)
    np.savez(tmp_path / "client_outputs.npz", y=np.maximum(x @ w + b, 0), s=x.sum(axis=1))
    report, code = run_parity(onnx_model(model, "mode=import", "import.format=npy",
                                         f"import.path={tmp_path / 'client_outputs.npz'}", f"import.inputs={out}",
                                         "inputs.name=client"), root)
    assert code == 0, report.get("error")
    checked, code = run_parity(onnx_model(model, "inputs.name=client"), root)
    assert code == 0 and {c["verdict"] for c in checked["checks"]} == {"PASS"}, checked.get("error")
