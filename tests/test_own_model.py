"""Bring your own model: trained weights from files, artifacts the user already has, ONNX-only models.

Every file here is a real one written by the test: torch checkpoints saved with torch.save / safetensors, ONNX
graphs built with onnx.helper (never by parity's exporters), Keras weight files saved by Keras.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from parity.frameworks.torch import weights_sha256
from parity.models.mlp import mlp
from tests.extras import needs_openvino, needs_tf, openvino_reason

MLP = ["model=mlp", "inputs.num_samples=4"]


@dataclasses.dataclass
class Opaque:  # a pickled object: only torch.load(weights_only=False) can rebuild it, by running code
    note: str = "trained on my data"


def trained_mlp(seed: int) -> torch.nn.Module:
    """A model as a user would have it after training: other weights than parity's seeded build."""
    torch.manual_seed(seed)
    return mlp(in_features=16, hidden=32, num_classes=8).eval()


def save_checkpoint(path: Path, module: torch.nn.Module) -> Path:
    torch.save(module.state_dict(), path)
    return path


def golden_then_verify(run_parity, root: Path, *extra: str) -> tuple[dict, int, dict, int]:
    made, made_code = run_parity([*MLP, "mode=golden", *extra], root)
    checked, checked_code = run_parity([*MLP, *extra], root)
    return made, made_code, checked, checked_code


def test_a_checkpoint_is_loaded_by_path_verified_and_recorded(run_parity, tmp_path: Path) -> None:
    trained = trained_mlp(11)
    checkpoint = save_checkpoint(tmp_path / "best_checkpoint.pth", trained)
    made, made_code, checked, code = golden_then_verify(run_parity, tmp_path / "golden",
                                                        f"model.weights={checkpoint}")
    assert made_code == 0 and code == 0, checked.get("error")
    # the trained weights, not parity's seeded ones, are what was verified
    assert checked["model"]["weights_sha256"] == weights_sha256(trained) != weights_sha256(trained_mlp(0))
    assert checked["model"]["weights_file"]["path"] == str(checkpoint)
    manifest = (tmp_path / "golden" / "mlp" / "default" / "manifest.json").read_text()
    assert checked["model"]["weights_file"]["sha256"] in manifest
    assert {c["verdict"] for c in checked["checks"]} == {"PASS"}


def test_a_relative_weights_path_resolves_against_the_start_directory(run_parity, tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "w.pt", trained_mlp(3))
    report, code = run_parity([*MLP, "mode=golden", "model.weights=w.pt"], tmp_path / "golden")
    assert code == 0, report.get("error")
    assert report["model"]["weights_file"]["path"] == str(tmp_path / "w.pt")


def test_a_changed_checkpoint_makes_the_golden_stale_with_the_regenerate_command(run_parity, tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tmp_path / "model.pt", trained_mlp(1))
    root = tmp_path / "golden"
    assert run_parity([*MLP, "mode=golden", f"model.weights={checkpoint}"], root)[1] == 0
    save_checkpoint(checkpoint, trained_mlp(2))  # retrained: same path, other weights
    report, code = run_parity([*MLP, f"model.weights={checkpoint}"], root)
    assert code == 2 and report["verdict"] == "ERROR"
    assert "weights file changed" in report["error"] and "golden.overwrite=true" in report["error"]
    assert "mode=golden" in report["error"] and f"model.weights={checkpoint}" in report["error"]


def test_a_golden_made_without_the_file_is_stale_once_the_model_loads_one(run_parity, tmp_path: Path) -> None:
    root = tmp_path / "golden"
    assert run_parity([*MLP, "mode=golden"], root)[1] == 0
    checkpoint = save_checkpoint(tmp_path / "w.pt", trained_mlp(0))  # the very seeded weights, now from a file
    report, code = run_parity([*MLP, f"model.weights={checkpoint}"], root)
    assert code == 2 and "golden made from no file" in report["error"]


def test_a_pickled_object_checkpoint_is_refused_unless_the_user_opts_in(cli, tmp_path: Path) -> None:
    trained = trained_mlp(5)
    checkpoint = tmp_path / "full.pth"
    torch.save(trained, checkpoint)  # the whole module pickled: loading it runs code
    golden = tmp_path / "golden"
    refused = cli(*MLP, "mode=golden", f"golden.root={golden}", f"model.weights={checkpoint}")
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, refused.stderr
    assert "weights_only=True" in errors[0] and "(it pickles torch.nn.modules." in errors[0], errors[0]
    assert "model.weights_run_pickled_code=true" in errors[0]
    assert not golden.exists()  # nothing written
    allowed = cli(*MLP, "mode=golden", f"golden.root={golden}", f"model.weights={checkpoint}",
                  "model.weights_run_pickled_code=true")
    assert allowed.returncode == 0, allowed.stderr


def test_a_checkpoint_holding_objects_beside_the_state_dict_is_refused_too(run_parity, tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt.pth"
    torch.save({"state_dict": trained_mlp(5).state_dict(), "meta": Opaque()}, checkpoint)
    report, code = run_parity([*MLP, "mode=golden", f"model.weights={checkpoint}", "model.weights_key=state_dict"],
                              tmp_path / "golden")
    assert code == 2 and "weights_run_pickled_code" in report["error"]


def test_a_nested_key_and_a_prefix_are_taken_from_a_training_checkpoint(run_parity, tmp_path: Path) -> None:
    trained = trained_mlp(7)
    checkpoint = tmp_path / "best_checkpoint.pth"
    torch.save({"epoch": 30, "state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, checkpoint)
    report, code = run_parity([*MLP, "mode=golden", f"model.weights={checkpoint}"], tmp_path / "golden")
    assert code == 2 and "model.weights_key" in report["error"] and "state_dict" in report["error"]
    report, code = run_parity([*MLP, "mode=golden", f"model.weights={checkpoint}", "model.weights_key=state_dict"],
                              tmp_path / "golden")
    assert code == 2 and "unexpected keys module." in report["error"]
    assert "model.weights_strip_prefix=module." in report["error"]
    report, code = run_parity([*MLP, "mode=golden", f"model.weights={checkpoint}", "model.weights_key=state_dict",
                               "model.weights_strip_prefix=module."], tmp_path / "golden")
    assert code == 0, report.get("error")
    assert report["model"]["weights_sha256"] == weights_sha256(trained)
    missing, code = run_parity([*MLP, "mode=golden", f"model.weights={checkpoint}", "model.weights_key=state_dict.x"],
                               tmp_path / "golden2")
    assert code == 2 and "has no 'x'" in missing["error"]


def test_missing_keys_are_an_error_listing_them_unless_strictness_is_off(run_parity, tmp_path: Path) -> None:
    trained = trained_mlp(9)
    state = trained.state_dict()
    dropped = sorted(state)[-1]
    partial = {k: v for k, v in state.items() if k != dropped}
    checkpoint = tmp_path / "partial.pt"
    torch.save(partial, checkpoint)
    report, code = run_parity([*MLP, "mode=golden", f"model.weights={checkpoint}"], tmp_path / "golden")
    assert code == 2 and f"missing keys {dropped}" in report["error"] and "weights_strict=false" in report["error"]
    report, code = run_parity([*MLP, "mode=golden", f"model.weights={checkpoint}", "model.weights_strict=false"],
                              tmp_path / "golden")
    assert code == 0, report.get("error")
    shapes = tmp_path / "shapes.pt"
    torch.save({**state, dropped: torch.zeros(3)}, shapes)
    report, code = run_parity([*MLP, "mode=golden", f"model.weights={shapes}", "model.weights_strict=false"],
                              tmp_path / "golden3")
    assert code == 2 and "do not fit the model's shapes" in report["error"] and dropped in report["error"]


def test_safetensors_weights_load_without_pickle(run_parity, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    trained = trained_mlp(13)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    made, made_code, checked, code = golden_then_verify(run_parity, tmp_path / "golden", f"model.weights={path}")
    assert made_code == 0 and code == 0, checked.get("error")
    assert checked["model"]["weights_sha256"] == weights_sha256(trained)
    path.write_bytes(b"not a safetensors file")
    report, code = run_parity([*MLP, f"model.weights={path}"], tmp_path / "golden")
    assert code == 2 and "not a readable safetensors file" in report["error"]


@pytest.mark.parametrize("value, message", [("no_such.pt", "no such file"), ("weights.txt", "not a torch weights")])
def test_a_bad_weights_path_is_one_config_line(cli, tmp_path: Path, value: str, message: str) -> None:
    (tmp_path / "weights.txt").write_text("x")
    result = cli(*MLP, f"model.weights={tmp_path / value}", f"golden.root={tmp_path / 'golden'}")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr  # refused by the plan, before any work


@needs_tf
@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_keras_weights_load_from_their_files(run_parity, tmp_path: Path, suffix: str) -> None:
    from parity.frameworks import framework_for
    from tests.conftest import compose_cfg

    keras = framework_for("keras")
    trained = keras.build(compose_cfg(["model=cifar10_vgg", "model.seed=1"]).model)
    path = tmp_path / f"vgg{suffix}"
    trained.save_weights(str(path)) if suffix == ".weights.h5" else trained.save(str(path))
    report, code = run_parity(["model=cifar10_vgg", "mode=golden", f"model.weights={path}"], tmp_path / "golden")
    assert code == 0, report.get("error")
    assert report["model"]["weights_sha256"] == keras.weights_sha256(trained)
    assert report["model"]["weights_sha256"] != keras.weights_sha256(keras.build(compose_cfg(["model=cifar10_vgg"]).model))
    other = tmp_path / f"other{suffix}"
    small = keras.build(compose_cfg(["model=cifar10_vgg", "model.builder.dense=64"]).model)
    small.save_weights(str(other)) if suffix == ".weights.h5" else small.save(str(other))
    report, code = run_parity(["model=cifar10_vgg", "mode=golden", f"model.weights={other}"], tmp_path / "golden2")
    assert code == 2 and "does not load into model 'cifar10_vgg'" in report["error"]


# -- exporter=prebuilt: an artifact the user already has ----------------------------------------------------------


def users_onnx(path: Path, module: torch.nn.Module, input_name: str = "x", output_name: str = "logits") -> Path:
    """An ONNX file exported by the user's own script (torch's legacy exporter, not parity's exporters)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(module, (torch.zeros(2, 16),), str(path), input_names=[input_name], output_names=[output_name],
                      dynamic_axes={input_name: {0: "n"}, output_name: {0: "n"}}, opset_version=17, dynamo=False)
    return path


def test_a_prebuilt_artifact_runs_against_its_source_models_golden(run_parity, tmp_path: Path) -> None:
    from parity.artifact import onnx_files_sha256

    root = tmp_path / "golden"
    assert run_parity([*MLP, "mode=golden"], root)[1] == 0
    shipped = users_onnx(tmp_path / "ship" / "mlp.onnx", trained_mlp(0))
    before = shipped.read_bytes()
    report, code = run_parity([*MLP, "exporter=prebuilt", f"exporter.path={shipped}"], root)
    assert code == 0, report.get("error")
    assert [c["verdict"] for c in report["checks"]] == ["PASS", "PASS"]  # reference and backend
    export = report["exports"][0]
    assert export["exporter"] == "prebuilt" and export["path"] == str(shipped)
    assert export["sha256"] == onnx_files_sha256(shipped)[0] and export["opset"] == 17
    assert shipped.read_bytes() == before and sorted(p.name for p in shipped.parent.iterdir()) == ["mlp.onnx"]
    # a file of other weights than the source model's: the backend check FAILs, the reference still PASSes
    other = users_onnx(tmp_path / "other.onnx", trained_mlp(4))
    report, code = run_parity([*MLP, "exporter=prebuilt", f"exporter.path={other}"], root)
    assert code == 1 and [c["verdict"] for c in report["checks"]] == ["PASS", "FAIL"]


def test_a_prebuilt_sha256_pin_refuses_another_file(run_parity, tmp_path: Path) -> None:
    from parity.artifact import onnx_files_sha256

    root = tmp_path / "golden"
    assert run_parity([*MLP, "mode=golden"], root)[1] == 0
    shipped = users_onnx(tmp_path / "mlp.onnx", trained_mlp(0))
    pin = onnx_files_sha256(shipped)[0]
    report, code = run_parity([*MLP, "exporter=prebuilt", f"exporter.path={shipped}", f"exporter.sha256={pin}"], root)
    assert code == 0, report.get("error")
    users_onnx(shipped, trained_mlp(4))  # replaced behind the pin's back
    report, code = run_parity([*MLP, "exporter=prebuilt", f"exporter.path={shipped}", f"exporter.sha256={pin}"], root)
    assert code == 2 and [c["verdict"] for c in report["checks"]] == ["PASS", "ERROR"]
    assert "exporter.sha256 pins" in report["checks"][1]["message"]


def test_a_prebuilt_file_with_other_input_names_says_how_to_fix_it(run_parity, tmp_path: Path) -> None:
    root = tmp_path / "golden"
    assert run_parity([*MLP, "mode=golden"], root)[1] == 0
    shipped = users_onnx(tmp_path / "mlp.onnx", trained_mlp(0), input_name="input")
    report, code = run_parity([*MLP, "exporter=prebuilt", f"exporter.path={shipped}"], root)
    assert code == 2 and "['input'] differ from the declared inputs ['x']" in report["checks"][1]["message"]


@pytest.mark.parametrize("args, message", [
    ([], "needs exporter.path=<file.onnx>"),
    (["exporter.path=nowhere.onnx"], "no such file"),
    (["exporter.path=README.md", "exporter.sha256=abc"], "is not a SHA-256"),
])
def test_prebuilt_config_errors_are_one_line(cli, tmp_path: Path, args: list[str], message: str) -> None:
    result = cli(*MLP, "exporter=prebuilt", *args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


def test_a_prebuilt_file_that_is_not_onnx_is_an_error(run_parity, tmp_path: Path) -> None:
    root = tmp_path / "golden"
    assert run_parity([*MLP, "mode=golden"], root)[1] == 0
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"\x00 not a protobuf \xff" * 10)
    report, code = run_parity([*MLP, "exporter=prebuilt", f"exporter.path={bogus}"], root)
    assert code == 2 and "is not an ONNX model" in report["checks"][1]["message"]


# -- ONNX-only models: framework onnx, inputs read from the graph ------------------------------------------------

ONNX_OPSET = [helper.make_opsetid("", 17)]


def save_graph(path: Path, nodes: list, inputs: list, outputs: list, initializers: list = ()) -> Path:
    """An ONNX file the test writes itself with onnx.helper (parity's exporters play no part)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(nodes, "users_model", inputs, outputs, list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=ONNX_OPSET), str(path))
    return path


def dense_relu(path: Path, seed: int = 0, batch: str | int = "N") -> Path:
    """y = relu(x @ w + b) and s = sum(x) per sample: a batched input, a fixed weight, two outputs."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(size=(6, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=(3,)).astype(np.float32), "b")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    return save_graph(path, [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
                             helper.make_node("Relu", ["z"], ["y"]),
                             helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0)],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 6])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3]),
                       helper.make_tensor_value_info("s", TensorProto.FLOAT, [batch])], [w, b, axes])


def onnx_model(path: Path, *extra: str) -> list[str]:
    return ["model=onnx", f"model.path={path}", *extra]


def test_an_onnx_file_alone_is_verified_with_its_inputs_read_from_the_graph(run_parity, tmp_path: Path) -> None:
    from parity.artifact import onnx_files_sha256
    from parity.plan import build_plan
    from tests.conftest import compose_cfg

    path = dense_relu(tmp_path / "users" / "dense.onnx")
    plan = build_plan(compose_cfg(onnx_model(path)))
    assert plan.model.name == "dense" and plan.framework == "onnx" and plan.exporter.path == str(path)
    [x] = plan.model.inputs
    assert (x.name, list(x.shape), x.dtype, x.distribution.value) == ("x", ["batch", 6], "float32", "normal")
    assert [(o.name, o.batch_axis) for o in plan.model.outputs] == [("y", 0), ("s", 0)]
    root = tmp_path / "golden"
    made, code = run_parity(onnx_model(path, "mode=golden"), root)
    assert code == 0, made.get("error")
    manifest = json.loads((root / "dense" / "default" / "manifest.json").read_text())
    assert manifest["weights_sha256"] == onnx_files_sha256(path)[0]
    assert manifest["reference"]["reference_backend"]["graph_optimization_level"] == "disable_all"
    assert manifest["reference"]["runtime"]["providers_active"] == ["CPUExecutionProvider"]
    checked, code = run_parity(onnx_model(path), root)
    assert code == 0, checked.get("error")
    assert [(c["check"], c["verdict"]) for c in checked["checks"]] == [("reference", "PASS"), ("backend", "PASS")]
    assert checked["exports"][0]["exporter"] == "prebuilt" and checked["exports"][0]["path"] == str(path)


@needs_openvino
def test_an_onnx_file_alone_runs_on_openvino(run_parity, tmp_path: Path) -> None:
    path = dense_relu(tmp_path / "dense.onnx")
    root = tmp_path / "golden"
    assert run_parity(onnx_model(path, "mode=golden"), root)[1] == 0
    report, code = run_parity(onnx_model(path, "backend=openvino_cpu", "numerics=strict"), root)
    assert code == 0, report.get("error")
    assert report["backend"]["runtime"]["framework"] == "openvino"
    assert report["checks"][1]["verdict"] == "PASS"


def test_a_changed_onnx_file_makes_its_golden_stale(run_parity, tmp_path: Path) -> None:
    path = dense_relu(tmp_path / "dense.onnx")
    root = tmp_path / "golden"
    assert run_parity(onnx_model(path, "mode=golden"), root)[1] == 0
    dense_relu(path, seed=1)
    report, code = run_parity(onnx_model(path), root)
    assert code == 2 and "golden is stale: weights changed" in report["error"]
    assert f"model.path={path}" in report["error"] and "golden.overwrite=true" in report["error"]


def test_a_converted_copy_is_checked_against_the_originals_golden(run_parity, tmp_path: Path) -> None:
    original = dense_relu(tmp_path / "dense.onnx")
    root = tmp_path / "golden"
    assert run_parity(onnx_model(original, "mode=golden"), root)[1] == 0
    same = dense_relu(tmp_path / "copy" / "dense.onnx")
    other = dense_relu(tmp_path / "other" / "dense.onnx", seed=2)
    report, code = run_parity(onnx_model(original, f"exporter.path={same}"), root)
    assert code == 0 and report["exports"][0]["path"] == str(same)
    report, code = run_parity(onnx_model(original, f"exporter.path={other}"), root)
    assert code == 1 and [c["verdict"] for c in report["checks"]] == ["PASS", "FAIL"]


def test_an_onnx_only_model_sweeps_over_backends(cli, tmp_path: Path) -> None:
    path = dense_relu(tmp_path / "dense.onnx")
    root = tmp_path / "golden"
    assert cli(*onnx_model(path, "mode=golden", f"golden.root={root}")).returncode == 0
    backends = "ort_cpu,torch_cpu" + (",openvino_cpu" if openvino_reason() is None else "")
    result = cli("-m", *onnx_model(path, f"golden.root={root}", f"backend={backends}", "numerics=strict"))
    assert result.returncode == 0, result.stderr[-2000:]
    sweep = json.loads((tmp_path / "sweep" / "sweep_report.json").read_text())
    verdicts = {}
    for job in sweep["jobs"]:
        report = json.loads(Path(job["report"]).read_text())
        verdicts[report["backend"]["name"]] = report["verdict"]
    assert verdicts.pop("ort_cpu") == "PASS" and verdicts.pop("torch_cpu") == "SKIP"
    assert set(verdicts.values()) <= {"PASS"}  # openvino_cpu, where installed
    assert sweep["pairwise"] and {"golden", "prebuilt×ort_cpu"} <= set(sweep["pairwise"][0]["labels"])


def test_localize_transforms_and_bench_work_on_an_onnx_only_model(run_parity, tmp_path: Path) -> None:
    path = dense_relu(tmp_path / "dense.onnx")
    root = tmp_path / "golden"
    assert run_parity(onnx_model(path, "mode=golden"), root)[1] == 0
    report, code = run_parity(onnx_model(path, "localize=all", "transform=fp16", "mode=verify+bench",
                                         "bench.runs=3", "bench.min_seconds=0", "bench.warmup_runs=0",
                                         "bench.plot=false"), root)
    assert code == 0, report.get("error")
    assert report["localization"]["tensors_compared"] >= 4 and report["localization"]["first_divergent"] is None
    assert report["exports"][0]["transform"]["name"] == "fp16"
    assert report["bench"]["results"][0]["artifact_sha256"] == report["exports"][0]["transform"]["sha256"]


def test_external_data_escaping_the_models_directory_is_refused(run_parity, tmp_path: Path) -> None:
    from tests.test_hardening import _model_with_external

    path = _model_with_external(tmp_path, "../secret.bin")
    report, code = run_parity(onnx_model(path, "mode=golden"), tmp_path / "golden")
    assert code == 2 and "outside the model's directory" in report["error"]
    assert not (tmp_path / "golden").exists()
    (tmp_path / "ok").mkdir()
    beside = _model_with_external(tmp_path / "ok", "weights.bin")
    report, code = run_parity(onnx_model(beside, "mode=golden"), tmp_path / "golden")
    assert code == 0, report.get("error")
    (beside.parent / "weights.bin").write_bytes(np.full((2, 2), 2.0, dtype=np.float32).tobytes())
    report, code = run_parity(onnx_model(beside), tmp_path / "golden")
    assert code == 2 and "weights changed" in report["error"]  # the external data is part of the identity


def test_inputs_with_fixed_shapes_and_scalars_need_no_batch_axis(run_parity, tmp_path: Path) -> None:
    path = save_graph(tmp_path / "scaled.onnx",
                      [helper.make_node("Mul", ["x", "scale"], ["xs"]), helper.make_node("Add", ["xs", "bias"], ["y"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch_size", 3]),
                       helper.make_tensor_value_info("scale", TensorProto.FLOAT, []),
                       helper.make_tensor_value_info("bias", TensorProto.FLOAT, [3])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch_size", 3])])
    root = tmp_path / "golden"
    made, code = run_parity(onnx_model(path, "mode=golden", "inputs.batch_sizes=[1,3]"), root)
    assert code == 0, made.get("error")
    report, code = run_parity(onnx_model(path, "inputs.batch_sizes=[1,3]"), root)
    assert code == 0, report.get("error")
    assert [c["batch_size"] for c in report["checks"]] == [1, 1, 3, 3]
    with np.load(root / "scaled" / "default" / "inputs.npz") as golden:
        assert golden["scale"].shape == () and golden["bias"].shape == (3,) and golden["x"].shape == (4, 3)
    fixed = save_graph(tmp_path / "fixed.onnx", [helper.make_node("Neg", ["x"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    made, code = run_parity(onnx_model(fixed, "mode=golden"), root)
    assert code == 0 and made["golden"]["num_samples"] == 1, made.get("error")
    report, code = run_parity(onnx_model(fixed), root)
    assert code == 0 and [c["batch_size"] for c in report["checks"]] == [1, 1]
    report, code = run_parity(onnx_model(fixed, "inputs.batch_sizes=[2]"), root)
    assert code == 2 and "has a batch axis" in report["error"]


TYPES = [TensorProto.BOOL, TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
         TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64, TensorProto.FLOAT16,
         TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.BFLOAT16]


@pytest.mark.parametrize("elem", TYPES, ids=[TensorProto.DataType.Name(t).lower() for t in TYPES])
def test_every_element_type_numpy_holds_is_generated_stored_and_compared(run_parity, tmp_path: Path,
                                                                        elem: int) -> None:
    """y = Identity(x) and n = Shape(x) for each element type: the golden stores the type, the backends run it or
    name it as the type they cannot take."""
    path = save_graph(tmp_path / "typed.onnx",
                      [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Shape", ["x"], ["n"])],
                      [helper.make_tensor_value_info("x", elem, ["N", 5])],
                      [helper.make_tensor_value_info("y", elem, ["N", 5]),
                       helper.make_tensor_value_info("n", TensorProto.INT64, [2])])
    name = "bfloat16" if elem == TensorProto.BFLOAT16 else np.dtype(helper.tensor_dtype_to_np_dtype(elem)).name
    root = tmp_path / "golden"
    made, code = run_parity(onnx_model(path, "mode=golden"), root)
    if name == "bfloat16":  # ONNX Runtime takes bfloat16 inputs but its Python API returns no bfloat16 outputs
        assert code == 2 and "cannot return bfloat16 outputs (y)" in made["error"]
        return
    assert code == 0, made.get("error")
    manifest = json.loads((root / "typed" / "default" / "manifest.json").read_text())
    assert manifest["inputs"]["x"]["dtype"] == name and manifest["outputs"]["y"]["dtype"] == name
    with np.load(root / "typed" / "default" / "inputs.npz") as golden:
        values = golden["x"]
    assert values.dtype.name == name and len(np.unique(values)) > 1  # drawn values, not one constant
    report, code = run_parity(onnx_model(path), root)
    assert code == 0 and report["checks"][1]["verdict"] == "PASS", report.get("error")
    assert report["checks"][1]["outputs"][0]["candidate_dtype"] == name


def test_bfloat16_inputs_reach_onnx_runtime_and_other_backends_name_the_type(run_parity, tmp_path: Path) -> None:
    path = save_graph(tmp_path / "bf16.onnx", [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
                      [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["N", 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    root = tmp_path / "golden"
    made, code = run_parity(onnx_model(path, "mode=golden"), root)
    assert code == 0, made.get("error")
    with np.load(root / "bf16" / "default" / "inputs.npz") as golden:
        bits = golden["x"]
    assert bits.dtype == np.uint16  # the bit pattern; the manifest says bfloat16
    golden_outputs = np.load(root / "bf16" / "default" / "outputs.npz")["y"]
    assert np.array_equal(golden_outputs, bits.view(ml_dtypes.bfloat16).astype(np.float32))
    report, code = run_parity(onnx_model(path), root)
    assert code == 0, report.get("error")
    if openvino_reason() is None:
        report, code = run_parity(onnx_model(path, "backend=openvino_cpu"), root)
        assert code == 2 and "cannot take bfloat16 inputs (x)" in report["checks"][1]["message"]


@pytest.mark.parametrize("overrides, message", [
    (["+model.input_overrides.nope.high=3"], "not inputs of two_dims.onnx"),
    ([], "has 2 symbolic dimensions ['N', 'T']"),
    (["+model.builder._target_=x.y"], "model.builder and model.weights do not apply"),
])
def test_onnx_graph_problems_are_one_config_line(cli, tmp_path: Path, overrides: list[str], message: str) -> None:
    path = save_graph(tmp_path / "two_dims.onnx", [helper.make_node("Identity", ["x"], ["y"])],
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T"])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T"])])
    result = cli(*onnx_model(path, *overrides))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr


def test_overrides_declare_what_the_graph_leaves_open(run_parity, tmp_path: Path) -> None:
    path = save_graph(tmp_path / "tokens.onnx",
                      [helper.make_node("Gather", ["table", "ids"], ["emb"])],
                      [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "T"])],
                      [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["N", "T", 2])],
                      [numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(20, 2), "table")])
    extra = ["+model.input_overrides.ids.shape=[batch,7]", "+model.input_overrides.ids.high=20"]
    made, code = run_parity(onnx_model(path, "mode=golden", *extra), tmp_path / "golden")
    assert code == 0, made.get("error")
    with np.load(tmp_path / "golden" / "tokens" / "default" / "inputs.npz") as golden:
        ids = golden["ids"]
    assert ids.shape == (4, 7) and ids.min() >= 0 and ids.max() < 20 and ids.max() >= 10  # beyond the default high
    assert run_parity(onnx_model(path, *extra), tmp_path / "golden")[1] == 0


def test_the_reference_backend_can_be_declared(run_parity, tmp_path: Path) -> None:
    path = dense_relu(tmp_path / "dense.onnx")
    root = tmp_path / "golden"
    ref = ["+model.reference_backend={_target_: parity.backends.onnxruntime.OrtBackend, name: my_ref, "
           "graph_optimization_level: basic}"]
    made, code = run_parity(onnx_model(path, "mode=golden", *ref), root)
    assert code == 0, made.get("error")
    manifest = json.loads((root / "dense" / "default" / "manifest.json").read_text())
    assert manifest["reference"]["reference_backend"]["name"] == "my_ref"
    assert manifest["reference"]["runtime"]["graph_optimization_level"] == "basic"


# -- a TensorFlow SavedModel as the model itself (seed 002) ------------------------------------------------------


@needs_tf
def test_a_saved_model_directory_is_the_model_itself(run_parity, tmp_path: Path) -> None:
    from parity.frameworks import framework_for
    from tests.conftest import SEARCHPATH, compose_cfg

    keras = framework_for("keras")
    trained = keras.build(compose_cfg(["model=cifar10_vgg", "model.seed=2"]).model)
    saved = tmp_path / "seed002_saved_model"
    trained.export(str(saved), format="tf_saved_model", verbose=False)
    args = [SEARCHPATH, "model=vgg_saved_model", f"model.path={saved}"]
    root = tmp_path / "golden"
    made, code = run_parity([*args, "mode=golden"], root)
    assert code == 0, made.get("error")
    assert made["model"]["weights_file"]["path"] == str(saved)
    with np.load(root / "vgg_saved_model" / "samples16" / "outputs.npz") as golden:
        probs = golden["probs"]
    feeds = np.load(root / "vgg_saved_model" / "samples16" / "inputs.npz")["image"]
    assert np.allclose(probs, np.asarray(trained(feeds, training=False)), atol=1e-6)  # the SavedModel's answers
    checked, code = run_parity(args, root)  # tf2onnx converts the SavedModel itself, ORT runs it
    assert code == 0, checked.get("error")
    assert [c["verdict"] for c in checked["checks"]] == ["PASS", "PASS"]
    assert checked["exports"][0]["exporter"] == "tf2onnx"
    eager, code = run_parity([*args, "backend=tf_cpu"], root)
    assert code == 0 and eager["checks"][1]["verdict"] == "PASS", eager.get("error")
    other, code = run_parity([*args, "exporter=keras_export"], root)
    assert code == 2 and "a SavedModel converts with exporter=tf2onnx" in other["checks"][1]["message"]
    (saved / "fingerprint.pb").write_bytes(b"changed")  # the directory changed: the golden is stale
    stale, code = run_parity(args, root)
    assert code == 2 and "weights file changed" in stale["error"]


@needs_tf
def test_a_saved_model_with_other_input_names_is_one_config_line(cli, tmp_path: Path) -> None:
    from parity.frameworks import framework_for
    from tests.conftest import SEARCHPATH, compose_cfg

    model = framework_for("keras").build(compose_cfg(["model=cifar10_vgg"]).model)
    saved = tmp_path / "sm"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    result = cli(SEARCHPATH, "model=vgg_saved_model", f"model.path={saved}", "model.inputs.0.name=pixels",
                 "mode=golden", f"golden.root={tmp_path / 'golden'}")
    errors = [line for line in result.stderr.splitlines() if line.startswith("[parity]") and "error" in line]
    assert result.returncode == 2 and len(errors) == 1 and "are not the inputs of signature" in errors[0], \
        result.stderr
    result = cli(SEARCHPATH, "model=vgg_saved_model", f"model.path={tmp_path}", f"golden.root={tmp_path / 'golden'}")
    assert result.returncode == 2 and "is not a SavedModel directory" in result.stderr


@needs_tf
def test_a_saved_model_with_several_outputs_keeps_them_in_order(run_parity, tmp_path: Path) -> None:
    """Keras names a SavedModel's outputs output_0, output_1, ...: mapped by that number onto the declared ones
    (outputs of different widths, so any other order is a shape mismatch)."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input(shape=(4,), name="x")
    model = keras.Model(image, [keras.layers.Dense(width, name=f"head{width}")(image) for width in (1, 2, 3, 5)])
    saved = tmp_path / "heads"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    yaml = tmp_path / "conf" / "model" / "heads.yaml"
    yaml.parent.mkdir(parents=True)
    yaml.write_text("defaults: [base_model, override /exporter@_global_.exporter: tf2onnx, _self_]\n"
                    f"name: heads\nframework: keras\npath: {saved}\n"
                    "inputs: [{name: x, shape: [batch, 4]}]\n"
                    "outputs: [{name: one}, {name: two}, {name: three}, {name: five}]\n")
    args = [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "model=heads"]
    root = tmp_path / "golden"
    made, code = run_parity([*args, "mode=golden"], root)
    assert code == 0, made.get("error")
    with np.load(root / "heads" / "default" / "outputs.npz") as golden:
        assert {k: golden[k].shape[1] for k in golden.files} == {"one": 1, "two": 2, "three": 3, "five": 5}
    for backend in ("ort_cpu", "tf_cpu"):
        report, code = run_parity([*args, f"backend={backend}"], root)
        assert code == 0 and [c["verdict"] for c in report["checks"]] == ["PASS", "PASS"], report.get("error")


@needs_tf
def test_a_saved_model_not_written_by_keras_hashes_every_variable(run_parity, tmp_path: Path) -> None:
    import tensorflow as tf

    def save(path: Path, second: float) -> None:
        class TwoLayers(tf.Module):
            def __init__(self) -> None:
                super().__init__()
                self.w1 = tf.Variable(np.ones((4, 2), np.float32), name="w")  # two variables, one name
                self.w2 = tf.Variable(np.full((2, 2), second, np.float32), name="w")

            @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
            def serve(self, x):
                return {"y": tf.matmul(tf.matmul(x, self.w1), self.w2)}

        module = TwoLayers()
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})

    first, second = tmp_path / "a", tmp_path / "b"
    save(first, 2.0)
    save(second, 3.0)
    yaml = tmp_path / "conf" / "model" / "two_layers.yaml"
    yaml.parent.mkdir(parents=True)
    yaml.write_text("defaults: [base_model, override /exporter@_global_.exporter: tf2onnx, _self_]\n"
                    "name: two_layers\nframework: keras\npath: ???\n"
                    "inputs: [{name: x, shape: [batch, 4]}]\noutputs: [{name: y}]\n")
    args = [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "model=two_layers"]
    a, code = run_parity([*args, f"model.path={first}", "mode=golden"], tmp_path / "g1")
    assert code == 0, a.get("error")
    b, code = run_parity([*args, f"model.path={second}", "mode=golden"], tmp_path / "g2")
    assert code == 0, b.get("error")
    assert a["model"]["weights_sha256"] != b["model"]["weights_sha256"]  # both "w:0" variables count
    report, code = run_parity([*args, f"model.path={first}"], tmp_path / "g1")
    assert code == 0 and [c["verdict"] for c in report["checks"]] == ["PASS", "PASS"], report.get("error")


def test_a_dotted_file_name_keeps_its_dots_in_the_model_name(tmp_path: Path) -> None:
    from parity.plan import build_plan
    from tests.conftest import compose_cfg

    names = {build_plan(compose_cfg(onnx_model(dense_relu(tmp_path / f"resnet50-v1.{v}.onnx")))).model.name
             for v in (7, 12)}
    assert names == {"resnet50-v1.7", "resnet50-v1.12"}


def test_weights_do_not_apply_to_an_onnx_file(cli, tmp_path: Path) -> None:
    path = dense_relu(tmp_path / "dense.onnx")
    result = cli(*onnx_model(path, f"model.weights={tmp_path / 'x.pt'}"))
    assert result.returncode == 2 and "model.weights does not apply" in result.stderr, result.stderr


def test_benchmarks_take_the_same_element_types_as_verify(run_parity, tmp_path: Path) -> None:
    path = save_graph(tmp_path / "bf16.onnx", [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
                      [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["N", 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    bench = ["mode=bench", "bench.runs=3", "bench.min_seconds=0", "bench.warmup_runs=0", "bench.plot=false",
             "bench.batch_sizes=[2]"]
    report, code = run_parity(onnx_model(path, *bench), tmp_path / "golden")
    assert code == 0 and report["bench"]["results"][0]["error"] is None, report["bench"]
    assert report["bench"]["results"][0]["median_ms"] > 0
    if openvino_reason() is None:
        report, code = run_parity(onnx_model(path, *bench, "backend=openvino_cpu"), tmp_path / "golden")
        assert "cannot take bfloat16 inputs (x)" in report["bench"]["results"][0]["error"]


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint16", "uint64", "int64", "float16", "bfloat16"])
def test_a_changed_element_of_any_type_fails_the_comparison(dtype: str) -> None:
    from parity.compare import Tolerance, compare_output
    from parity.config import OutputKind
    from parity.inputs import numpy_dtype
    from parity.results import Verdict

    golden = np.zeros((3, 4), dtype=numpy_dtype(dtype))
    candidate = golden.copy()
    candidate[1, 2] = 1
    tolerance = Tolerance(atol=1e-4, rtol=1e-3)
    assert compare_output("y", golden, golden.copy(), tolerance, OutputKind.tensor).verdict is Verdict.PASS
    result = compare_output("y", golden, candidate, tolerance, OutputKind.tensor)
    assert result.verdict is Verdict.FAIL and result.metrics["worst_index"] == [1, 2]


def test_bfloat16_outputs_are_stored_restored_and_compared_on_torch(run_parity, tmp_path: Path) -> None:
    args = [*MLP, "model.builder={_target_: tests.plugins.bfloat16_head}", "model.outputs=[{name: y}]",
            "backend=torch_cpu"]
    root = tmp_path / "golden"
    made, code = run_parity([*args, "mode=golden"], root)
    assert code == 0, made.get("error")
    manifest = json.loads((root / "mlp" / "default" / "manifest.json").read_text())
    assert manifest["outputs"]["y"]["dtype"] == "bfloat16"
    report, code = run_parity(args, root)
    assert code == 0 and [c["verdict"] for c in report["checks"]] == ["PASS", "PASS"], report.get("error")
    assert report["checks"][1]["outputs"][0]["candidate_dtype"] == "bfloat16"
    from parity.golden import GoldenStore

    golden = GoldenStore(root).load("mlp", "default")
    assert golden.outputs["y"].dtype.name == "bfloat16" and golden.outputs["y"].shape == (4, 4)
    report, code = run_parity([*args[:-1], "backend=ort_cpu", "exporter=torchscript"], root)
    assert code == 2 and "cannot return bfloat16 outputs (y)" in report["checks"][1]["message"]
