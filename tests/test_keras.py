"""Seed 002's Keras path on real TensorFlow, tf2onnx and ONNX Runtime: cifar10_vgg, tf_cpu, both exporters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import GOLDEN, REPO, compose_cfg
from tests.extras import BLOCKER, README_CPU, needs_openvino, needs_tf

GOLDEN_DIR = GOLDEN / "cifar10_vgg" / "samples16"
# parity.dependencies' one message for a missing optional package (here keras, the first one a Keras model imports)
TF_MISSING = "a Keras model needs keras, which is not installed here: pip install -e '.[tf]'"


def test_cifar10_vgg_config_picks_its_exporter_input_set_and_probabilities() -> None:
    cfg = compose_cfg(["model=cifar10_vgg"])
    assert cfg.model.framework.value == "keras" and cfg.exporter.name == "tf2onnx" and cfg.inputs.name == "samples16"
    assert cfg.model.outputs[0].kind.value == "probabilities"  # no second softmax in the classification metrics
    assert compose_cfg(["model=cifar10_vgg", "exporter=keras_export"]).exporter.name == "keras_export"
    assert compose_cfg(["exporter=torchscript", "model=cifar10_vgg"]).exporter.name == "torchscript"  # the user wins


def test_cifar10_vgg_golden_answers_several_classes() -> None:
    """An untrained net with default BatchNorm statistics answers one class for every input; this one must not."""
    with np.load(GOLDEN_DIR / "outputs.npz", allow_pickle=False) as data:
        probs = data["probs"]
    assert probs.shape == (16, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert len(set(np.argmax(probs, axis=1).tolist())) >= 4


@needs_tf
def test_cifar10_vgg_is_seeded_and_matches_its_golden() -> None:
    from parity.frameworks import framework_for

    cfg = compose_cfg(["model=cifar10_vgg"])
    keras = framework_for(cfg.model.framework)
    first, second = keras.build(cfg.model), keras.build(cfg.model)
    manifest = json.loads((GOLDEN_DIR / "manifest.json").read_text())
    assert keras.weights_sha256(first) == keras.weights_sha256(second) == manifest["weights_sha256"]
    assert manifest["reference"]["framework"] == "keras" and manifest["environment"]["tensorflow"]
    other = compose_cfg(["model=cifar10_vgg", "model.seed=1"])
    assert keras.weights_sha256(keras.build(other.model)) != manifest["weights_sha256"]
    bn = first.get_layer("block2_bn1").get_weights()
    assert not np.allclose(bn[2], 0.0) and not np.allclose(bn[3], 1.0)  # non-trivial moving statistics


@needs_tf
@pytest.mark.parametrize("onednn", ["0", "1"])
def test_cifar10_vgg_weights_do_not_depend_on_the_cpu_kernels(onednn: str) -> None:
    """oneDNN on and off round float32 convolutions differently, as other CPUs do: the weights must not follow."""
    import subprocess
    import sys

    code = ("from parity.frameworks import framework_for\n"
            "from tests.conftest import compose_cfg\n"
            "cfg = compose_cfg(['model=cifar10_vgg'])\n"
            "keras = framework_for(cfg.model.framework)\n"
            "print('SHA=' + keras.weights_sha256(keras.build(cfg.model)))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TF_ENABLE_ONEDNN_OPTS": onednn,
                               "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((GOLDEN_DIR / "manifest.json").read_text())
    assert f"SHA={manifest['weights_sha256']}" in proc.stdout.splitlines()


@needs_tf
@pytest.mark.parametrize("exporter", ["tf2onnx", "keras_export"])
def test_keras_exporters_pass_on_ort_cpu(run_parity, exporter: str) -> None:
    report, code = run_parity(["model=cifar10_vgg", f"exporter={exporter}"])
    assert code == 0, report
    export = report["exports"][0]
    assert export["ok"] and export["exporter"] == exporter and len(export["sha256"]) == 64
    assert {"tensorflow", "keras", "tf2onnx"} <= set(export["versions"])
    probs = report["checks"][1]["outputs"][0]
    assert probs["classification"]["top1_agreement"] == 1.0 and probs["metrics"]["max_abs"] < 1e-4
    assert report["model"]["framework"] == "keras" and report["checks"][0]["outputs"][0]["metrics"]["max_abs"] == 0


@needs_tf
def test_tf2onnx_static_batch_exports_once_per_size(run_parity) -> None:
    report, code = run_parity(["model=cifar10_vgg", "exporter.dynamic_batch=false", "inputs.batch_sizes=[1,3]"])
    assert code == 0, report
    assert [e["batch_size"] for e in report["exports"]] == [1, 3] and all(e["ok"] for e in report["exports"])


@needs_tf
@pytest.mark.parametrize("signature", ["keras", "serving"])
def test_tf_cpu_runs_the_keras_model_and_its_saved_model(run_parity, signature: str) -> None:
    report, code = run_parity(["model=cifar10_vgg", "backend=tf_cpu", f"backend.signature={signature}"])
    assert code == 0, report
    assert report["exports"] == [] and report["exporter"] is None
    assert report["backend"]["runtime"]["signature"] == signature and report["backend"]["runtime"]["tensorflow"]
    assert report["checks"][1]["outputs"][0]["metrics"]["max_abs"] < 1e-6


@needs_tf
def test_framework_mismatches(run_parity) -> None:
    report, code = run_parity(["model=cifar10_vgg", "exporter=dynamo"])
    assert code == 2 and "exporter 'dynamo' takes torch models" in report["error"] and "tf2onnx" in report["error"]
    report, code = run_parity(["model=cifar10_vgg", "backend=torch_cpu"])
    assert code == 0 and report["verdict"] == "SKIP"
    assert "runs torch models; model 'cifar10_vgg' is a keras model" in report["checks"][1]["message"]
    report, code = run_parity(["model=mlp", "backend=tf_cpu"])
    assert code == 0 and report["verdict"] == "SKIP" and "runs keras models" in report["checks"][1]["message"]
    report, code = run_parity(["model=cifar10_vgg", "checks.probes=true"])
    assert code == 2 and "checks.probes needs a torch model" in report["error"]


@needs_tf
@needs_openvino
def test_openvino_with_strict_numerics_agrees_with_the_keras_golden(run_parity) -> None:
    """README, seed 002: with numerics=strict (f32 inference precision) OpenVINO agrees to 2.3e-6 (the default
    command's pairwise table and its bf16 FAIL: tests/test_readme.py)."""
    report, code = run_parity(["model=cifar10_vgg", "backend=openvino_cpu", "numerics=strict"])
    assert code == 0 and report["backend"]["runtime"]["inference_precision"] == "f32"
    max_abs = report["checks"][1]["outputs"][0]["metrics"]["max_abs"]
    assert (f"{max_abs:.2g}" == "2.3e-06") if README_CPU else (0 < max_abs < 1e-5)  # README_CPU: tests/extras.py


def test_without_the_tf_and_openvino_extras_everything_is_a_skip_with_the_reason(cli, tmp_path: Path) -> None:
    """In an environment where tensorflow, keras, tf2onnx and openvino cannot be imported."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked={"tensorflow", "keras", "tf2onnx", "openvino"}))
    env = {"PYTHONPATH": f"{site}:{REPO}"}
    proc = cli("model=cifar10_vgg", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SKIP" in proc.stdout.splitlines()[-1] and TF_MISSING in proc.stdout
    assert "Traceback" not in proc.stderr
    proc = cli("model=mlp", "backend=openvino_cpu", env=env)
    assert proc.returncode == 0 and "backend 'openvino_cpu' needs openvino, which is not installed here: pip install -e '.[openvino]'" in proc.stdout, proc.stdout + proc.stderr
    proc = cli("model=cifar10_vgg", "backend=tf_cpu", env=env)
    assert proc.returncode == 0 and TF_MISSING in proc.stdout
    proc = cli("mode=golden", "model=cifar10_vgg", f"golden.root={tmp_path / 'g'}", env=env)
    assert proc.returncode == 2 and TF_MISSING in proc.stdout
    assert not (tmp_path / "g" / "cifar10_vgg").exists()


@needs_tf
def test_keras_models_need_no_torch(cli, tmp_path: Path) -> None:
    """Seed 002's own setup: TensorFlow, ONNX Runtime and OpenVINO, no torch at all (an import of it fails)."""
    shadow = tmp_path / "shadow" / "torch"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    proc = cli("model=cifar10_vgg", "numerics=strict", env={"PYTHONPATH": f"{shadow.parent}:{REPO}"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1].startswith("PASS  model=cifar10_vgg exporter=tf2onnx")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["numerics"]["in_force"] == {}  # no torch flags to set or record


@needs_tf
@needs_openvino
def test_keras_export_with_a_transform_on_openvino(run_parity) -> None:
    report, code = run_parity(["model=cifar10_vgg", "exporter=keras_export", "transform=fp16",
                               "backend=openvino_cpu", "numerics=strict"])
    assert code == 0, report
    assert report["exports"][0]["exporter"] == "keras_export" and report["exports"][0]["transform"]["ok"]
    assert report["backend"]["runtime"]["inference_precision"] == "f32"
    assert report["checks"][1]["outputs"][0]["check"] == "l2_rel"  # the fp16 preset judges the transformed artifact
    assert report["checks"][0]["outputs"][0]["check"] == "elementwise"  # the live Keras model keeps fp32 tolerances
