"""Artifact retention (`report.keep_artifacts`): what stays of a job's run directory once its verdict is known.

Artifacts are the large files a job writes for evidence: exported and transformed models (`artifacts/`), the
models localisation marks and runs (`localize/*.onnx`, with their external data), and the backend outputs of each
batch size (`candidates_b<N>.npz`). Reports, summaries, logs, plots, Model Explorer overlays and Hydra's `.hydra/`
always stay.

`all` keeps everything; `failed` removes the artifacts of a job that PASSed; `none` removes them from every job.
A single run applies the policy before its report is written and records what it removed; a sweep applies it to
every job after the sweep's tables are built (the pairwise matrix reads the candidates) and records it in the
sweep report.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger("parity")

POLICIES = ("all", "failed", "none")


def artifact_paths(output_dir: Path) -> list[Path]:
    """The artifacts in a job's directory, largest kinds first (directories whole)."""
    found = [output_dir / "artifacts"] if (output_dir / "artifacts").is_dir() else []
    found += sorted(output_dir.glob("candidates_b*.npz"))
    localize = output_dir / "localize"
    if localize.is_dir():
        found += sorted(p for p in localize.iterdir() if p.is_file() and not p.name.endswith(".json"))
    return found


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def removes(policy: str, verdict: str) -> bool:
    """Whether `policy` removes the artifacts of a job with this verdict."""
    return policy == "none" or (policy == "failed" and verdict == "PASS")


def apply(policy: str, verdict: str, output_dir: Path) -> dict[str, Any] | None:
    """Remove the job's artifacts where the policy says so; what was removed (paths relative to the job's
    directory, bytes freed), or None when the policy keeps them all."""
    if not removes(policy, verdict):
        return None
    removed, freed = [], 0
    for path in artifact_paths(Path(output_dir)):
        try:
            size = _size(path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        except OSError as exc:  # a file another process holds: kept, and said so
            log.warning("keep_artifacts=%s: could not remove %s: %s", policy, path, exc)
            continue
        removed.append(str(path.relative_to(output_dir)))
        freed += size
    return {"policy": policy, "removed": removed, "freed_bytes": freed}
