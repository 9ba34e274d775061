"""The Hydra callback that keeps run and sweep directories out of golden roots.

Hydra creates the run directory (and writes .hydra/ and parity.log into it) before the job starts, so the check
runs in `on_run_start` / `on_multirun_start`, on the composed config with the directory resolved; the job checks
its own output directory again (a sweep's golden.root may differ per job).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf



def output_dir_problem(output_dir: Path, golden_root: Any, start_dir: Path) -> str | None:
    """Why `output_dir` may not hold a job's files (it lies in the golden root or a read-only root), or None."""
    from parity.golden import READONLY_ENV
    from parity.paths import protected_roots, under_any

    roots = protected_roots(os.environ.get(READONLY_ENV))
    if isinstance(golden_root, str) and golden_root.strip():
        roots.append((Path(golden_root) if Path(golden_root).is_absolute() else start_dir / golden_root).resolve())
    hit = under_any(output_dir if output_dir.is_absolute() else start_dir / output_dir, roots)
    if hit is None:
        return None
    return (f"the output directory {output_dir} lies inside the golden root {hit}; reports and artifacts are "
            f"never written among goldens: choose another hydra.run.dir / hydra.sweep.dir")


class RunDirGuard(Callback):
    """Refuses, before Hydra creates it, a run or sweep directory inside a golden root: one line, exit code 2."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        try:
            directory = OmegaConf.select(config, key)
            root = OmegaConf.select(config, "golden.root", default=None)
        except Exception:  # an unresolvable value: the job reports it in one line
            return
        if directory is None:
            return
        problem = output_dir_problem(Path(str(directory)), root, Path.cwd())
        if problem is not None:  # Hydra turns a callback's exceptions into warnings and goes on: exit here
            sys.stderr.write(f"parity: configuration error: {problem}\n")
            raise SystemExit(2)
