"""The process's exit code: each job's, and a sweep's aggregate, recorded here as they finish.

`python -m parity` exits with `exit_code()`. The multirun callback records the sweep's code here, in an
ordinary module, so it reaches the process however parity was started (importing `parity.__main__` from the
callback would load a second copy of it under `python -m parity`, and the code would be lost there).
"""

from __future__ import annotations

_JOBS: list[int] = []
_SWEEPS: list[int] = []


def record_job(code: int) -> None:
    _JOBS.append(code)


def record_sweep(code: int) -> None:
    _SWEEPS.append(code)


def exit_code() -> int:
    """The worst code recorded: every job's and a sweep's aggregate (which also counts jobs that left no
    report); 0 when nothing ran."""
    return max(_SWEEPS + _JOBS, default=0)


def reset() -> None:
    _JOBS.clear()
    _SWEEPS.clear()
