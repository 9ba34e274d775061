"""Faults found by fault injection and by trying the README as a new user, each fixed and pinned here.

(The bulk of the bad inputs are in test_faults.py; the golden store's crash safety in test_golden_crash.py.)
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from parity import plugins
from parity.artifact import Artifact, structure_sha256
from parity.backends.tensorrt import onnx_content_sha256
from parity.paths import ExternalDataError, external_data_files
from tests.conftest import GOLDEN, REPO, SEARCHPATH, compose_cfg
from tests.extras import BLOCKER, needs_openvino


def _backend(option: str):
    """The backend a `backend=<option>` job would build."""
    node = compose_cfg([f"backend={option}"]).backend
    return plugins.build("backend", plugins.typed_config("backend", node))


# -- an artifact that ignores its input (item 7) -------------------------------------------------------------


@pytest.mark.parametrize("exporter", ["torchscript", "jit_trace"])
def test_an_export_frozen_into_constants_is_an_error_naming_both_input_lists(cli, tmp_path: Path,
                                                                            exporter: str) -> None:
    root = tmp_path / "g"
    assert cli(SEARCHPATH, "mode=golden", "model=numpy_round_trip", f"golden.root={root}").returncode == 0
    done = cli(SEARCHPATH, "model=numpy_round_trip", f"golden.root={root}", f"exporter={exporter}")
    assert done.returncode == 2, done.stdout
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["checks"][0]["verdict"] == "PASS"  # the model itself is fine
    assert report["checks"][1]["verdict"] == "ERROR"
    assert report["exports"][0]["error"] == (
        "the exported graph's inputs [] differ from the declared inputs ['x']: missing ['x'] (the exporter could "
        "not follow the model's forward: it ignores its inputs)")


def test_the_export_example_is_never_the_checked_samples(cli, tmp_path: Path) -> None:
    """Traced on the very samples it is checked on, a trace that froze its example would pass."""
    done = cli(SEARCHPATH, "model=mlp", f"golden.root={GOLDEN}", "exporter=example_recording")
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(tmp_path / "run" / "artifacts" / "example_recording-example.npz") as data:
        example = np.array(data["x"])
    with np.load(GOLDEN / "mlp" / "default" / "inputs.npz") as data:
        checked = np.array(data["x"])
    assert example.shape == checked.shape  # as many samples as the batch it serves ...
    assert not np.isclose(example[:, None, :], checked[None, :, :]).all(axis=-1).any()  # ... and none of them


# -- external data outside the model's directory (item 8) -----------------------------------------------------


def _model_with_external(tmp_path: Path, location: str) -> Path:
    """A one-initializer ONNX model whose weight is stored at `location` (relative to the model, or absolute)."""
    weight = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    directory = tmp_path / "artifact"
    directory.mkdir()
    target = Path(location) if Path(location).is_absolute() else directory / location
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(np.ones((2, 2), dtype=np.float32).tobytes())
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    path = directory / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("where", ["../secret.bin", "sub/../../secret.bin", "ABSOLUTE"])
def test_external_data_outside_the_model_directory_is_refused_by_every_consumer(tmp_path: Path, where: str) -> None:
    location = str(tmp_path / "abs_secret.bin") if where == "ABSOLUTE" else where
    path = _model_with_external(tmp_path, location)
    with pytest.raises(ExternalDataError, match="outside the model's directory|absolute path"):
        external_data_files(path)
    with pytest.raises(ExternalDataError):
        onnx_content_sha256(path)  # TensorRT's engine-cache key read such files before
    backend = _backend("ort_cpu")
    with pytest.raises(ExternalDataError):
        with backend.prepare(Artifact(kind="onnx", input_names=["x"], output_names=["y"], path=path)):
            pass


def test_external_data_beside_the_model_is_found_and_hashed(tmp_path: Path) -> None:
    path = _model_with_external(tmp_path, "weights.bin")
    assert external_data_files(path) == [(path.parent / "weights.bin").resolve()]
    first = onnx_content_sha256(path)
    (path.parent / "weights.bin").write_bytes(np.zeros((2, 2), dtype=np.float32).tobytes())
    assert onnx_content_sha256(path) != first


def test_a_symlink_leaving_the_model_directory_is_refused(tmp_path: Path) -> None:
    path = _model_with_external(tmp_path, "weights.bin")
    outside = tmp_path / "outside.bin"
    (path.parent / "weights.bin").rename(outside)
    (path.parent / "weights.bin").symlink_to(outside)
    with pytest.raises(ExternalDataError, match="outside the model's directory"):
        external_data_files(path)


# -- names that differ between runs (item 20) -----------------------------------------------------------------


def _named(constant_name: str, node_name: str, value: float = 1.0) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.full((2,), value, dtype=np.float32), constant_name)
    graph = helper.make_graph([helper.make_node("Add", ["x", constant_name], ["y"], name=node_name)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_structure_hash_ignores_generated_names_but_not_content(tmp_path: Path) -> None:
    paths = {}
    for key, model in {"a": _named("const_axes__47", "Add__66"), "b": _named("const_axes__43", "Add__68"),
                       "c": _named("const_axes__47", "Add__66", value=2.0)}.items():
        paths[key] = tmp_path / f"{key}.onnx"
        onnx.save(model, str(paths[key]))
    assert paths["a"].read_bytes() != paths["b"].read_bytes()
    assert structure_sha256(paths["a"]) == structure_sha256(paths["b"])
    assert structure_sha256(paths["a"]) != structure_sha256(paths["c"])


def test_export_records_say_whether_the_exporter_is_deterministic(run_parity) -> None:
    from parity.exporters.keras_onnx import KerasOnnxExporter, Tf2OnnxExporter

    report, code = run_parity(["model=mlp", "exporter=torchscript"])
    export = report["exports"][0]
    assert code == 0 and export["deterministic"] is True
    assert export["structure_sha256"] == structure_sha256(Path(export["path"]))
    assert Tf2OnnxExporter.deterministic is False and KerasOnnxExporter.deterministic is False


# -- suggested commands that work when pasted (item 14) -------------------------------------------------------


def test_the_suggested_create_command_works_when_pasted_for_a_users_own_model(cli, tmp_path: Path) -> None:
    root = tmp_path / "g"
    done = cli(SEARCHPATH, "model=tiny_conv", f"golden.root={root}")
    assert done.returncode == 2
    line = next(ln for ln in done.stderr.splitlines() if "create it with: " in ln)
    command = shlex.split(line.split("create it with: ", 1)[1])
    assert command[:3] == ["python", "-m", "parity"] and SEARCHPATH in command
    assert cli(*command[3:]).returncode == 0  # exactly what the user would paste
    again = cli(SEARCHPATH, "model=tiny_conv", f"golden.root={root}", "mode=golden")
    line = next(ln for ln in again.stderr.splitlines() if "To replace it run: " in ln)
    replace = shlex.split(line.split("To replace it run: ", 1)[1])
    assert "golden.overwrite=true" in replace and SEARCHPATH in replace
    assert cli(*replace[3:]).returncode == 0


def test_suggested_commands_carry_a_config_dir_flag(cli, tmp_path: Path) -> None:
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    done = cli("--config-dir", str(conf), "model=mlp", f"golden.root={tmp_path / 'g'}")
    line = next(ln for ln in done.stderr.splitlines() if "create it with: " in ln)
    assert f"--config-dir={conf}" in shlex.split(line.split("create it with: ", 1)[1])


# -- one rule for every optional dependency (item 15) ---------------------------------------------------------


def test_a_model_whose_package_is_missing_is_a_skip_naming_the_install(cli, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked={"deepctr_torch"}))
    env = {"PYTHONPATH": f"{site}:{REPO}"}
    message = "model 'dcnv2' needs deepctr-torch, which is not installed here: pip install -e '.[models]'"
    done = cli("model=dcnv2", env=env)
    assert done.returncode == 0 and "SKIP" in done.stdout.splitlines()[-1], done.stderr[-2000:]
    assert message in done.stdout and "Traceback" not in done.stderr
    made = cli("mode=golden", "model=dcnv2", f"golden.root={tmp_path / 'g'}", env=env)
    assert made.returncode == 2 and message in made.stderr and "Traceback" not in made.stderr
    assert not (tmp_path / "g" / "dcnv2").exists()


# -- OpenVINO's load errors keep their cause (item 13) --------------------------------------------------------


@needs_openvino
def test_openvino_load_errors_keep_their_cause(tmp_path: Path) -> None:
    from parity.errors import BackendError

    bad = tmp_path / "model.onnx"  # valid ONNX, but an operator no runtime knows
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.example")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("com.example", 1)]), str(bad))
    backend = _backend("openvino_cpu")
    with pytest.raises(BackendError) as raised:
        with backend.prepare(Artifact(kind="onnx", input_names=["x"], output_names=["y"], path=bad)):
            pass
    message = str(raised.value)
    assert "NoSuchOp" in message and ".cpp" not in message, message


# -- run folders name what ran (item 17) ----------------------------------------------------------------------


@pytest.mark.parametrize("args, suffix", [(("backend=torch_cpu",), "-mlp-torch_cpu"),
                                          (("transform=fp16", "tolerance=fp16"), "-mlp-dynamo-fp16-ort_cpu"),
                                          (("exporter=torchscript",), "-mlp-torchscript-ort_cpu")])
def test_run_folders_name_what_ran(cli, tmp_path: Path, args: tuple[str, ...], suffix: str) -> None:
    done = cli("model=mlp", f"golden.root={GOLDEN}", *args, cwd=tmp_path, default_dirs=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (folder,) = (tmp_path / "outputs").glob("*/*")
    assert folder.name.endswith(suffix) and (folder / "report.json").is_file()


def test_sweep_folders_name_what_ran(cli, tmp_path: Path) -> None:
    done = cli("-m", "model=mlp", f"golden.root={GOLDEN}", "backend=torch_cpu,ort_cpu", cwd=tmp_path,
               default_dirs=True)
    assert done.returncode == 0, done.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "multirun").glob("*/*/*") if p.is_dir())
    assert names == ["0-mlp-torch_cpu", "1-mlp-dynamo-ort_cpu"]


def test_other_libraries_log_lines_are_not_tagged_as_paritys(tmp_path: Path) -> None:
    """A third-party warning with a traceback (onnxscript's version converter) reads as that library's line."""
    import logging

    from parity.logs import ConsoleFormatter

    formatter = ConsoleFormatter()
    try:
        raise RuntimeError("assertInVersionRange")
    except RuntimeError:
        import sys

        record = logging.LogRecord("onnxscript.version_converter", logging.WARNING, "x", 1, "Failed to convert\n"
                                   "details", None, sys.exc_info())
    assert formatter.format(record) == "[onnxscript.version_converter] Failed to convert (traceback in parity.log)"
    own = logging.LogRecord("parity", logging.INFO, "x", 1, "exporting with %s", ("dynamo",), None)
    assert formatter.format(own) == "[parity] exporting with dynamo"


def test_a_sweep_directory_inside_the_golden_root_is_refused(cli, golden_copy: Path) -> None:
    """Writes never land among goldens: a sweep whose run directory the user put inside the golden root."""
    from tests.conftest import tree_bytes

    before = tree_bytes(golden_copy)
    done = cli("-m", "model=mlp", f"golden.root={golden_copy}", "backend=ort_cpu",
               f"hydra.sweep.dir={golden_copy / 'mlp'}")
    assert done.returncode == 2 and "lies inside the golden root" in done.stderr
    assert tree_bytes(golden_copy) == before


def test_openvino_reasons_drop_source_locations() -> None:
    from parity.backends.openvino import openvino_reason

    raw = ('Exception from src/inference/src/cpp/core.cpp:84:\nException from src/inference/src/model_reader.cpp:148:\n'
           'Unable to read the model: "/tmp/bad.onnx" Please check that model format: ".onnx" is supported\n\n')
    assert openvino_reason(RuntimeError(raw)) == ('Unable to read the model: "/tmp/bad.onnx" Please check that model '
                                                  'format: ".onnx" is supported')


def test_a_default_run_directory_inside_the_golden_root_is_refused_before_hydra_creates_it(cli, tmp_path: Path
                                                                                          ) -> None:
    """golden.root=. puts the goldens where parity starts; the default outputs/ would then lie among them."""
    done = cli("model=mlp", "golden.root=.", cwd=tmp_path, default_dirs=True)
    assert done.returncode == 2 and done.stderr.startswith("parity: configuration error: the output directory")
    assert len(done.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []
