"""Shared fixtures: compose the real config, run jobs in-process or through the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from parity.config import register_configs

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
GOLDEN = REPO / "golden"
USER_CONF = Path(__file__).resolve().parent / "user_conf"
SEARCHPATH = f"hydra.searchpath=[file://{USER_CONF}]"

register_configs()
# what parity caches outside a run (onnxruntime-web's npm install for the ort_web backends): one place per machine
# for the test suite, never the user's ~/.cache; subprocesses inherit it
os.environ.setdefault("PARITY_CACHE", str(Path(tempfile.gettempdir()) / f"parity-test-cache-{os.getuid()}"))
# the export cache: shared by the jobs of one test session (as by the jobs of a sweep), never across sessions, so
# a change to an exporter is always exported afresh by the next run of the suite
os.environ.setdefault("PARITY_EXPORT_CACHE", tempfile.mkdtemp(prefix="parity-test-exports-"))


def cuda_reason() -> str | None:
    """None where torch sees a CUDA device, else why GPU tests skip."""
    import torch

    if not torch.cuda.is_available():
        return f"no CUDA device visible to torch {torch.__version__}"
    return None


def compose_cfg(overrides: list[str] | None = None) -> DictConfig:
    """The real composed config, as `python -m parity <overrides>` would see it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides or []))


@pytest.fixture
def run_parity(tmp_path: Path):
    """Run one job in-process on the composed config; returns (report in its JSON form, exit code)."""
    from parity.pipeline import run_job
    from parity.plan import JobContext

    def _run(overrides: list[str], golden_root: Path | None = None) -> tuple[dict[str, Any], int]:
        root = golden_root if golden_root is not None else GOLDEN
        cfg = compose_cfg([f"golden.root={root}", *overrides])
        out = tmp_path / "run"
        if out.exists():
            shutil.rmtree(out)
        report = run_job(cfg, JobContext(output_dir=out, start_dir=tmp_path, overrides=tuple(overrides)))
        return report.to_dict(), report.exit_code

    return _run


@pytest.fixture
def cli(tmp_path: Path):
    """Run the real `python -m parity` in a subprocess, outputs under tmp_path."""

    def _cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             default_dirs: bool = False) -> subprocess.CompletedProcess:
        """default_dirs: keep Hydra's configured run/sweep dirs (relative to cwd) instead of tmp_path ones."""
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        full_env.pop("HYDRA_FULL_ERROR", None)
        has_dir = default_dirs or any(a.startswith(("hydra.run.dir", "hydra.sweep.dir")) for a in args)
        extra = [] if has_dir else [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
        return subprocess.run(
            [sys.executable, "-m", "parity", *args, *extra],
            cwd=str(cwd or REPO), env=full_env, capture_output=True, text=True, timeout=600,
        )

    return _cli


@pytest.fixture
def golden_copy(tmp_path: Path) -> Path:
    """A private copy of the committed goldens that a test may damage."""
    dest = tmp_path / "golden"
    shutil.copytree(GOLDEN, dest)
    return dest


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file below root with its content, to prove nothing was touched."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
