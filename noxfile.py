"""nox sessions: CPU and GPU test profiles, the default parity job, and the core benchmark."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox
import nox.command

nox.options.sessions = ["tests_cpu"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True  # no Python 3.11: a failure, never a silent skip

ROOT = Path(__file__).parent
PYTHON = "3.11"
# Versions checked together (docs/compatibility.md). CPU torch is pinned: a plain `torch` pulls a multi-GB CUDA build.
COMMON = [
    "onnx==1.23.2",
    "onnxscript==0.7.2",
    "hydra-core==1.3.8",
    "omegaconf==2.3.1",  # hydra-core 1.3.8 needs omegaconf < 2.4
    "numpy==2.4.6",
    "numba==0.68.1",  # parity.kernels: the comparison's compiled pass
    "llvmlite==0.50.0",
    "jsonschema==4.26.0",
    "tabulate==0.10.0",
    "pytest==9.2.0",
    "matplotlib==3.11.2",  # latency plots (mode=bench)
    "safetensors==0.6.2",  # model.weights=*.safetensors (torch state_dicts without pickle)
    "pillow==13.0.0",  # inputs.source=images: decoding and Pillow's resize filters
    "polygraphy==0.53.6",  # Polygraphy's JSON (inputs, mode=import / export) and `polygraphy run` in the tests
    "scikit-image==0.26.0",  # tests only: real photos bundled in the package (skimage/data), never downloaded
    # seed models: dcnv2 is deepctr-torch's DCNMix (it imports requests without declaring it)
    "deepctr-torch==0.3.0",
    "requests==2.34.2",
    "scikit-learn==1.9.1",
    "scipy==1.17.1",
    "tqdm==4.70.1",
    # tests only: a real JUnit consumer reads parity's junit.xml, and xmlschema checks it against the CI schema
    "junitparser==5.0.3",
    "xmlschema==4.3.2",
    "websocket-client==1.9.2",  # the web extra: drives a real headless Chromium through the DevTools protocol
    # sweeps on Hydra's launchers: joblib's local processes and submitit (its local executor in the tests)
    "hydra-joblib-launcher==1.2.0",
    "hydra-submitit-launcher==1.2.0",
    "submitit==1.5.4",
    "nox==2026.10.20",  # tests only: tests/test_environment.py runs noxfile.py's extras step under real nox
]
CPU = ["torch==2.13.0", "onnxruntime==1.32.0", *COMMON]
# Optional extras (pyproject's [tf], [openvino], [opencv], [ray]). tests_cpu installs each one asked for and fails,
# naming it, where one does not install: CI covers them all, so a broken install must never turn their tests into
# SKIPs behind a green run. PARITY_EXTRAS narrows them (comma-separated, "" = none); tests of one left out skip.
EXTRAS = {
    "tf": ["tensorflow-cpu==2.21.0", "keras==3.15.1", "tf2onnx==1.17.0"],  # checked with onnx 1.23.2, protobuf 7
    "openvino": ["openvino==2026.4.1"],
    "opencv": ["opencv-python-headless==5.0.0.93"],  # inputs.preprocess.library=opencv
    # hydra/launcher=parity_ray: its tests start a Ray head on 127.0.0.1 (about 12 s to install from the index)
    "ray": ["hydra-ray-launcher==1.2.2", "ray[default]==2.60.0"],
}
# Never onnxruntime and onnxruntime-gpu in one environment: the second overwrites the first.
GPU = ["torch==2.14.1", "onnxruntime-gpu==1.31.1", *COMMON]
if os.environ.get("PARITY_WITH_TENSORRT"):  # TensorRT wheels install only on GPU machines (not in this workplace)
    GPU.append("tensorrt")


def _install(session: nox.Session, pins: list[str]) -> None:
    session.install(*pins)
    session.install("--no-deps", "-e", ".")


def _install_extras(session: nox.Session) -> list[str]:
    """Install each requested extra; one that fails to install fails the session, naming it. Returns those installed."""
    wanted = [e for e in os.environ.get("PARITY_EXTRAS", ",".join(EXTRAS)).split(",") if e]
    unknown = [e for e in wanted if e not in EXTRAS]
    if unknown:
        session.error(f"PARITY_EXTRAS names unknown extras {unknown} (known: {', '.join(EXTRAS)})")
    for extra in wanted:
        try:
            session.install(*EXTRAS[extra])
        except nox.command.CommandFailed:
            session.error(f"extra '{extra}' failed to install ({' '.join(EXTRAS[extra])}): its tests would all SKIP; "
                          f"fix the install, or leave it out on purpose with PARITY_EXTRAS")
    left_out = [e for e in EXTRAS if e not in wanted]
    session.log(f"extras installed: {', '.join(wanted) or 'none'}; "
                f"left out (PARITY_EXTRAS): {', '.join(left_out) or 'none'}")
    return wanted


def _require_gpu(session: nox.Session) -> None:
    """Skip the session, saying why, unless an NVIDIA GPU is visible."""
    if shutil.which("nvidia-smi") is None and not Path("/dev/nvidia0").exists():
        session.skip("no NVIDIA GPU on this machine (no nvidia-smi, no /dev/nvidia0): GPU sessions skipped")


def tests_impl(session: nox.Session, pins: list[str], *pytest_args: str, extras: bool = False,
               require: tuple[str, ...] = ()) -> None:
    """Install one profile (and the optional extras) and run the suite; the committed goldens are read-only.
    PARITY_REQUIRE names what this session installed: tests/test_environment.py fails, naming it, where one is not
    importable (an install that "succeeded" but left a broken package would otherwise only skip its tests)."""
    _install(session, pins)
    required = [*require, *(_install_extras(session) if extras else [])]
    env = {"PARITY_READONLY_GOLDENS": str(ROOT / "golden"), "PARITY_REQUIRE": ",".join(required)}
    session.run("python", "-m", "pytest", *pytest_args, *session.posargs, env=env)


@nox.session(python=PYTHON)
def tests_cpu(session: nox.Session) -> None:
    """The whole suite on the pinned CPU profile with the tf and openvino extras (what CI runs)."""
    tests_impl(session, CPU, extras=True)


@nox.session(python=PYTHON)
def tests_gpu(session: nox.Session) -> None:
    """The suite on the GPU profile (torch 2.14.1 CUDA, onnxruntime-gpu); skips without a GPU."""
    _require_gpu(session)
    tests_impl(session, GPU, require=("onnxruntime-gpu",))


# The GPU profile's device-free tests, in CI: onnxruntime-gpu on a machine without a GPU lists the CUDA and TensorRT
# providers but cannot load them, the case where a run silently falls back to the CPU. torch is the CPU build: the
# CUDA build is several GB, and without a device both take the same paths (torch.cuda.is_available() is False).
GPU_PROFILE_TESTS = ["tests/test_environment.py", "tests/test_gpu_backends.py", "tests/test_gpu.py",
                     "tests/test_exporters_backends.py", "tests/test_runner.py"]


@nox.session(python=PYTHON)
def tests_gpu_profile(session: nox.Session) -> None:
    """The GPU profile's tests that need no device, on any machine (CI runs it): onnxruntime-gpu without a usable GPU
    must make parity say ERROR for a provider that did not load, and SKIP ort_trt without the TensorRT libraries."""
    tests_impl(session, ["torch==2.13.0", "onnxruntime-gpu==1.31.1", *COMMON], *GPU_PROFILE_TESTS,
               require=("onnxruntime-gpu",))


# Model Explorer, the viewer the README points localisation at: its server, web app and ONNX adapter (Flask,
# IPython and a compiled adapter among their dependencies, so a session of its own rather than an extra of tests_cpu)
MODEL_EXPLORER = ["model-explorer-onnx==0.4.2", "ai-edge-model-explorer==0.1.34", "dacite==1.9.2"]


@nox.session(python=PYTHON)
def tests_model_explorer(session: nox.Session) -> None:
    """The README's Model Explorer commands for real (CI runs it): onnxvis serves a localisation's artifact and node
    data, and every value lands on a node of its ONNX adapter's graph."""
    tests_impl(session, [*CPU, *MODEL_EXPLORER], "tests/test_environment.py", "tests/test_model_explorer.py",
               require=("model-explorer",))


@nox.session(python=PYTHON)
def parity_gpu(session: nox.Session) -> None:
    """Seed 003 on a GPU: centerpoint over torch_cuda, ort_cuda, tensorrt x numerics default/strict vs the goldens."""
    _require_gpu(session)
    _install(session, GPU)
    session.run("python", "-m", "parity", "-m", "model=centerpoint", "backend=torch_cuda,ort_cuda,tensorrt",
                "numerics=default,strict", *session.posargs, env={"PARITY_READONLY_GOLDENS": str(ROOT / "golden")})


@nox.session(python=PYTHON)
def parity(session: nox.Session) -> None:
    """The default job: resnet18, dynamo exporter, ONNX Runtime CPU, against the committed goldens."""
    _install(session, CPU)
    session.run("python", "-m", "parity", *session.posargs,
                env={"PARITY_READONLY_GOLDENS": str(ROOT / "golden")})


@nox.session(python=PYTHON)
def benchmark(session: nox.Session) -> None:
    """Core overhead benchmark; writes benchmarks/results/core.json and prints the table for BENCHMARKS.md."""
    _install(session, CPU)
    session.run("python", "benchmarks/bench_core.py", *session.posargs,
                env={"PARITY_READONLY_GOLDENS": str(ROOT / "golden"), "PYTHONHASHSEED": "0", **_threads()})


def _threads() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


@nox.session(python=PYTHON)
def mutation(session: nox.Session) -> None:
    """Mutation testing (mutmut) of the core rules: comparison, golden store, verdicts and exit codes, sweep
    aggregation ([tool.mutmut] in pyproject.toml). Not part of CI (about 15 minutes); the last run's score and
    survivors are in docs/mutation.md. parity itself is not installed: the tests import the mutated copy."""
    session.install(*CPU, "mutmut==3.8.1")
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)  # a fresh run: results of an older tree are not reused
    env = {"PARITY_READONLY_GOLDENS": str(ROOT / "golden"), "PYTHONHASHSEED": "0"}
    session.run("mutmut", "run", *session.posargs, env=env)
    session.run("python", "benchmarks/mutation.py", env=env)  # the score and survivors: docs/mutation.md
