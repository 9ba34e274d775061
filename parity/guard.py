"""The Hydra callback that keeps run and sweep directories out of golden roots.

Hydra creates the run directory (and writes .hydra/ and parity.log into it) before the job starts, so the check
runs in `on_run_start` / `on_multirun_start`, on the composed config with the directory resolved; the job checks
its own output directory again (a sweep's golden.root may differ per job).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf



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
        from parity.golden import output_dir_problem

        problem = output_dir_problem(Path(str(directory)), root, Path.cwd())
        if problem is not None:  # Hydra turns a callback's exceptions into warnings and goes on: exit here
            sys.stderr.write(f"parity: configuration error: {problem}\n")
            raise SystemExit(2)
