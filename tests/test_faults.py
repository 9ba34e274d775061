"""The fault corpus: bad inputs, each run as a real `python -m parity` subprocess against a small golden root.

For every case: the exit code, the message on one stderr line (the only line, for a configuration error), no
traceback, and every file of the golden tree byte-for-byte what it was (SHA-256 before and after). The cases
are the ones a fault-injection run found to lose goldens, pass anything, hang or crash with a traceback, plus
their neighbours. Two run at a time (this machine has two cores); most never import torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

CONFIG = "parity: configuration error: "


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    needle: str  # what the one error line says
    code: int = 2
    config_error: bool = True  # stderr is exactly that one line
    damage: Callable[[Path], None] | None = None  # how the golden root is prepared (root -> None)
    env: dict[str, str] = field(default_factory=dict)  # "{root}" is replaced by the case's golden root


def _manifest(root: Path) -> dict:
    return json.loads((root / "mlp" / "default" / "manifest.json").read_text())


def _save_manifest(root: Path, manifest: dict) -> None:
    (root / "mlp" / "default" / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _rehash(root: Path, name: str) -> None:
    """The manifest's SHA-256 of `name` made to match the file: the damage is past the hash check."""
    manifest = _manifest(root)
    manifest["files"][name]["sha256"] = hashlib.sha256((root / "mlp" / "default" / name).read_bytes()).hexdigest()
    _save_manifest(root, manifest)


def _edit_manifest(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        manifest = _manifest(root)
        edit(manifest)
        _save_manifest(root, manifest)
    return damage


def _rewrite_outputs(make: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    """outputs.npz with `logits` replaced by make(logits), its manifest entry and hash updated to match."""
    def damage(root: Path) -> None:
        path = root / "mlp" / "default" / "outputs.npz"
        with np.load(path) as data:
            logits = make(np.array(data["logits"]))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, logits=logits)
        path.write_bytes(buffer.getvalue())
        manifest = _manifest(root)
        manifest["outputs"]["logits"] = {"dtype": str(logits.dtype), "shape": list(logits.shape)}
        _save_manifest(root, manifest)
        _rehash(root, "outputs.npz")
    return damage


def _flip_compressed_bytes(root: Path) -> None:
    """Corrupt the deflate stream inside the zip (not its headers), then fix the manifest's hash."""
    path = root / "mlp" / "default" / "inputs.npz"
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 4, start + 24):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    _rehash(root, "inputs.npz")


def _broken_npy_header(root: Path) -> None:
    path = root / "mlp" / "default" / "inputs.npz"
    with np.load(path) as data:
        x = np.array(data["x"])
    member = io.BytesIO()
    np.save(member, x)
    raw = member.getvalue().replace(b"'descr'", b"'descr(", 1)  # the header dict no longer parses
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("x.npy", raw)
    path.write_bytes(buffer.getvalue())
    _rehash(root, "inputs.npz")


def _random_bytes(root: Path) -> None:
    (root / "mlp" / "default" / "outputs.npz").write_bytes(np.random.default_rng(0).bytes(400))
    _rehash(root, "outputs.npz")


def _escaping_symlink(root: Path) -> None:
    outside = root.parent / "elsewhere.npz"
    shutil.copy(root / "mlp" / "default" / "outputs.npz", outside)
    (root / "mlp" / "default" / "outputs.npz").unlink()
    (root / "mlp" / "default" / "outputs.npz").symlink_to(outside)


def _model_dir_links_into_protected(root: Path) -> None:
    """golden/<model> of this root is a symlink into another, read-only root (PARITY_READONLY_GOLDENS)."""
    protected = root.parent / "protected"
    shutil.copytree(root, protected)
    shutil.rmtree(root / "mlp")
    (root / "mlp").symlink_to(protected / "mlp")


def _root_is_a_file(root: Path) -> None:
    shutil.rmtree(root)
    root.write_text("not a directory\n")


LONG = "m" * 300

CASES = [
    # -- names that would collapse or escape the golden path (data loss before) --------------------------
    Case("empty-input-set", ("mode=golden", "inputs.name="), "inputs.name is empty"),
    Case("dot-input-set", ("mode=golden", "inputs.name=."), "inputs.name '.' must be one plain name"),
    Case("dotdot-input-set", ("mode=golden", "inputs.name=.."), "inputs.name '..' must be one plain name"),
    Case("slash-input-set", ("mode=golden", "inputs.name=a/b"), "inputs.name 'a/b' must be one plain name"),
    Case("empty-model-name", ("mode=golden", "model.name=", "inputs.name="), "model.name is empty"),
    Case("model-name-into-another-root", ("mode=golden", "model.name=../golden/mlp", "golden.overwrite=true"),
         "model.name '../golden/mlp' must be one plain name"),
    Case("model-name-outside-root", ("mode=golden", "model.name=../../x"), "model.name '../../x' must be one"),
    Case("long-model-name", ("mode=golden", f"model.name={LONG}"), "model.name is 300 characters long"),
    Case("hidden-model-name", ("mode=golden", "model.name=.mlp"), "model.name '.mlp' must be one plain name"),
    # -- tolerances that pass anything ---------------------------------------------------------------------
    Case("nan-atol", ("tolerance.atol=nan", "tolerance.rtol=0"), "tolerance.atol must be a finite number, got nan"),
    Case("inf-atol", ("tolerance.atol=inf",), "tolerance.atol must be a finite number, got inf"),
    Case("nan-rtol", ("tolerance.rtol=nan",), "tolerance.rtol must be a finite number"),
    Case("negative-rtol", ("tolerance.rtol=-1",), "tolerance.rtol must be >= 0"),
    Case("nan-per-output", ("+tolerance.per_output.logits.atol=nan",),
         "tolerance.per_output.logits.atol must be a finite number"),
    Case("inf-per-output-rtol", ("+tolerance.per_output.logits.rtol=inf",),
         "tolerance.per_output.logits.rtol must be a finite number"),
    Case("nan-reference-tolerance", ("reference_tolerance=fp32", "reference_tolerance.atol=nan"),
         "reference_tolerance.atol must be a finite number"),
    Case("top1-above-one", ("tolerance.min_top1_agreement=1.5",), "tolerance.min_top1_agreement must be a fraction"),
    Case("nan-prob-diff", ("tolerance.max_prob_diff_pp=nan",), "tolerance.max_prob_diff_pp must be a finite"),
    Case("unknown-per-output", ("+tolerance.per_output.nope.atol=1",), "tolerance.per_output names unknown outputs"),
    Case("unknown-check", ("tolerance.check=bogus",), "tolerance.check"),
    # -- benchmarks that hang or lie ---------------------------------------------------------------------
    Case("inf-warmup", ("mode=bench", "bench.warmup_seconds=inf"), "bench.warmup_seconds must be a finite number"),
    Case("nan-min-seconds", ("mode=bench", "bench.min_seconds=nan"), "bench.min_seconds must be a finite number"),
    Case("inf-max-seconds", ("mode=bench", "bench.max_seconds=inf"), "bench.max_seconds must be a finite number"),
    Case("max-runs-below-runs", ("mode=bench", "bench.max_runs=5"), "bench.max_runs (5) is below bench.runs (100)"),
    Case("zero-runs", ("mode=bench", "bench.runs=0"), "bench.runs must be >= 1"),
    Case("nan-unstable-cv", ("bench.unstable_cv=nan",), "bench.unstable_cv must be a finite number"),
    Case("min-above-max-seconds", ("bench.min_seconds=10", "bench.max_seconds=1"),
         "bench.min_seconds (10.0) exceeds bench.max_seconds (1.0)"),
    Case("empty-bench-sizes", ("mode=bench", "bench.batch_sizes=[]"), "bench.batch_sizes is empty"),
    Case("zero-bench-size", ("mode=bench", "bench.batch_sizes=[0]"), "bench.batch_sizes must be >= 1"),
    # -- input sets and batch sizes -----------------------------------------------------------------------
    Case("empty-batch-sizes", ("inputs.batch_sizes=[]",), "inputs.batch_sizes is empty"),
    Case("zero-batch-size", ("inputs.batch_sizes=[0]",), "inputs.batch_sizes must be >= 1"),
    Case("batch-above-samples", ("inputs.batch_sizes=[5]",), "batch size 5 exceeds the 4 samples"),
    Case("zero-samples", ("mode=golden", "inputs.num_samples=0"), "inputs.num_samples must be >= 1"),
    Case("text-samples", ("inputs.num_samples=abc",), "inputs.num_samples"),
    Case("two-batch-axes", ("model.inputs.0.shape=[batch,batch]",), "may contain 'batch' once at most"),
    # a fixed-shape input is allowed; an output still declared batched then does not hold the one sample
    Case("unbatched-input-batched-output", ("mode=golden", "golden.overwrite=true", "model.inputs.0.shape=[16]"),
         "output 'logits' has shape [8]: axis 0 is not the batch of 1", config_error=False),
    Case("bad-input-dtype", ("model.inputs.0.dtype=complex",), "unknown dtype 'complex'"),
    Case("no-outputs", ("model.outputs=[]",), "model.outputs must be non-empty"),
    # -- reports ------------------------------------------------------------------------------------------
    Case("empty-report-filename", ("report.filename=",), "report.filename is empty"),
    Case("report-in-missing-subdir", ("report.filename=sub/r.json",), "report.filename 'sub/r.json' must be one"),
    Case("report-onto-a-manifest", ("report.filename={root}/mlp/default/manifest.json",),
         "report.filename '", ),
    Case("report-dotdot", ("report.filename=..",), "report.filename '..' must be one plain name"),
    Case("bogus-table-format", ("report.table_format=bogus",), "report.table_format 'bogus' is not a tabulate"),
    Case("bogus-report-format", ("report.formats=[bogus]",), "report.formats names unknown formats ['bogus']"),
    Case("extra-report-key", ("+report.foo=1",), "report.foo: Key 'foo' not in 'ReportConfig'"),
    Case("run-dir-inside-golden", ("hydra.run.dir={root}/mlp/default",), "lies inside the golden root"),
    # -- the rest of the config ---------------------------------------------------------------------------
    Case("empty-golden-root", ("golden.root=",), "golden.root is empty"),
    Case("extra-model-key", ("+model.foo=1",), "model.foo: Key 'foo' not in 'ModelConfig'"),
    Case("negative-threads", ("backend.intra_op_num_threads=-5",), "intra_op_num_threads must be >= 0"),
    Case("negative-inter-threads", ("backend.inter_op_num_threads=-1",), "inter_op_num_threads must be >= 0"),
    Case("misspelt-provider", ("backend.providers=[{name: CPUExecutionProviderr}]",),
         "'CPUExecutionProviderr' is not an ONNX Runtime execution provider; did you mean 'CPUExecutionProvider'?"),
    Case("no-providers", ("backend.providers=[]",), "providers is empty"),
    Case("bogus-opt-level", ("backend.graph_optimization_level=bogus",), "graph_optimization_level 'bogus'"),
    Case("opset-999", ("exporter.opset=999",), "opset 999 does not exist"),
    Case("opset-0", ("exporter=torchscript", "exporter.opset=0"), "opset 0 does not exist"),
    Case("zero-repeats", ("checks.repeats=0",), "checks.repeats must be >= 1"),
    Case("zero-localize-chunk", ("checks.localize_chunk=0",), "checks.localize_chunk must be >= 1"),
    Case("probes-without-probes", ("checks.probes=true",), "declares no probes"),
    Case("bogus-mode", ("mode=bogus",), "expected one of [verify, golden, bench, verify+bench, import, export, compare_preprocess]"),
    Case("bogus-localize", ("localize=bogus",), "localize"),
    Case("model-typo", ("model=mlpp",), "no model option 'mlpp' (available: "),
    Case("exporter-typo", ("exporter=dynamoo",), "did you mean 'dynamo'?"),
    # -- damaged goldens: a one-line ERROR of the job, never a traceback ----------------------------------
    Case("zlib-broken-npz", (), "is not a readable npz", config_error=False, damage=_flip_compressed_bytes),
    Case("broken-npy-header", (), "is not a readable npz", config_error=False, damage=_broken_npy_header),
    Case("random-bytes-npz", (), "is not an npz archive (not a zip file)", config_error=False,
         damage=_random_bytes),
    Case("symlink-leaving-root", (), "is a symlink to", config_error=False, damage=_escaping_symlink),
    Case("manifest-without-num-samples", (), "'num_samples' is a required property", config_error=False,
         damage=_edit_manifest(lambda m: m.pop("num_samples"))),
    Case("manifest-without-input-dtype", (), "'dtype' is a required property", config_error=False,
         damage=_edit_manifest(lambda m: m["inputs"]["x"].pop("dtype"))),
    Case("manifest-text-num-samples", (), "'abc' is not of type 'integer'", config_error=False,
         damage=_edit_manifest(lambda m: m.update(num_samples="abc"))),
    Case("manifest-files-list", (), "[] is not of type 'object'", config_error=False,
         damage=_edit_manifest(lambda m: m.update(files=[]))),
    Case("manifest-not-json", (), "is unreadable", config_error=False,
         damage=lambda root: (root / "mlp" / "default" / "manifest.json").write_text("{not json")),
    Case("manifest-without-weights", (), "records no weights_sha256", config_error=False,
         damage=_edit_manifest(lambda m: m.pop("weights_sha256"))),
    Case("fewer-output-samples", (), "does not hold the golden's 4 samples", config_error=False,
         damage=_rewrite_outputs(lambda y: y[:3])),
    Case("more-output-samples", (), "does not hold the golden's 4 samples", config_error=False,
         damage=_rewrite_outputs(lambda y: np.concatenate([y, y[:1]]))),
    Case("zero-d-output", (), "does not hold the golden's 4 samples", config_error=False,
         damage=_rewrite_outputs(lambda y: np.float32(y.sum()))),
    Case("nan-in-golden", (), "holds 1 NaN/Inf value(s); a golden must be finite", config_error=False,
         damage=_rewrite_outputs(lambda y: np.where(np.arange(y.size).reshape(y.shape) == 3, np.nan, y)
                                 .astype(np.float32))),
    Case("golden-of-another-dtype", (), "golden output 'logits' is float64, the model returns float32",
         config_error=False, damage=_rewrite_outputs(lambda y: y.astype(np.float64))),
    Case("batch-axis-out-of-range", ("model.outputs.0.batch_axis=5",), "axis 5 does not hold the golden's",
         config_error=False),
    Case("golden-batch-axis-out-of-range", ("mode=golden", "golden.overwrite=true", "model.outputs.0.batch_axis=5"),
         "axis 5 is not the batch of 4", config_error=False),
    # -- writes that must be refused -----------------------------------------------------------------------
    Case("golden-exists", ("mode=golden",), "already exists", config_error=False),
    Case("readonly-root", ("mode=golden", "golden.overwrite=true"), "are disabled here (PARITY_READONLY_GOLDENS)",
         config_error=False, env={"PARITY_READONLY_GOLDENS": "{root}"}),
    Case("model-dir-symlink-into-readonly-root", ("mode=golden", "golden.overwrite=true"),
         "are disabled here (PARITY_READONLY_GOLDENS)", config_error=False, damage=_model_dir_links_into_protected,
         env={"PARITY_READONLY_GOLDENS": "{root}/../protected"}),
    Case("model-dir-symlink-out-of-root", ("mode=golden", "golden.overwrite=true"), "outside the golden root",
         config_error=False, damage=_model_dir_links_into_protected),
    Case("root-is-a-file", ("mode=golden",), "it is a file, not a directory", config_error=False,
         damage=_root_is_a_file),
    Case("root-under-proc", ("mode=golden", "golden.root=/proc/parity-goldens"),
         "cannot create the golden directory /proc/parity-goldens/mlp", config_error=False),
    Case("root-not-writable", ("mode=golden", "golden.root=/sys/kernel/parity-goldens"),
         "cannot create the golden directory /sys/kernel/parity-goldens/mlp: ",  # EPERM, EACCES or EROFS
         config_error=False),
    Case("out-of-memory", ("mode=golden", "inputs.name=huge", "inputs.num_samples=1000000000000000"),
         "out of memory", config_error=False),
]


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


def _tree(root: Path) -> dict[str, str]:
    """SHA-256 of every file below root (symlinks by their target), and every directory, by relative path."""
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    tree = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            tree[key] = f"-> {os.readlink(path)}"
        elif path.is_file():
            tree[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            tree[key] = "dir"
    return tree


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real mlp golden, made by parity itself."""
    root = tmp_path_factory.mktemp("pristine") / "golden"
    done = subprocess.run([sys.executable, "-m", "parity", "mode=golden", "model=mlp", f"golden.root={root}",
                           f"hydra.run.dir={root.parent / 'run'}"], cwd=str(REPO), capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 0, done.stderr
    return root


def _run_case(case: Case, base: Path, pristine: Path) -> tuple[subprocess.CompletedProcess, dict, dict, Path]:
    root = base / case.id / "golden"
    shutil.copytree(pristine, root)
    if case.damage is not None:
        case.damage(root)
    protected = root.parent / "protected"
    before = (_tree(root), _tree(protected) if protected.exists() else None)
    args = [a.replace("{root}", str(root)) for a in case.args]
    extra = [] if any(a.startswith("hydra.run.dir=") for a in args) else [f"hydra.run.dir={root.parent / 'run'}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), **{k: v.replace("{root}", str(root)) for k, v in case.env.items()}}
    env.pop("HYDRA_FULL_ERROR", None)
    if not any(a.startswith("golden.root=") for a in args):
        extra.append(f"golden.root={root}")
    done = subprocess.run([sys.executable, "-m", "parity", "model=mlp", *args, *extra],
                          cwd=str(base), capture_output=True, text=True, env=env, timeout=300)
    after = (_tree(root), _tree(protected) if protected.exists() else None)
    return done, before, after, root


@pytest.fixture(scope="module")
def results(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Every case, two subprocesses at a time."""
    base = tmp_path_factory.mktemp("faults")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {case.id: pool.submit(_run_case, case, base, pristine) for case in CASES}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, results: dict[str, tuple]) -> None:
    done, before, after, _ = results[case.id]
    report = f"exit {done.returncode}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == case.code, report
    assert "Traceback" not in done.stderr and "unexpected" not in done.stderr, report
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    hits = [line for line in lines if case.needle in line]
    assert len(hits) == 1, report
    if case.config_error:
        assert lines == hits and hits[0].startswith(CONFIG), report
    assert after == before, "the golden tree changed"
