"""Bring your own model: trained weights from files, artifacts the user already has, ONNX-only models.

Every file here is a real one written by the test: torch checkpoints saved with torch.save / safetensors, ONNX
graphs built with onnx.helper (never by parity's exporters), Keras weight files saved by Keras.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from parity.frameworks.torch import weights_sha256
from parity.models.mlp import mlp
from tests.extras import needs_tf

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
