"""Verdicts and small frozen result records, each with to_dict() for the JSON report."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Verdict(str, Enum):
    """Outcome of one output, one check, one job."""

    PASS = "PASS"
    SKIP = "SKIP"
    FAIL = "FAIL"
    ERROR = "ERROR"


_SEVERITY = {Verdict.PASS: 0, Verdict.SKIP: 0, Verdict.FAIL: 1, Verdict.ERROR: 2}


def overall(verdicts: Iterable[Verdict | str]) -> Verdict:
    """ERROR beats FAIL beats PASS; all SKIP (or nothing) is SKIP."""
    items = [Verdict(v) for v in verdicts]
    if any(v is Verdict.ERROR for v in items):
        return Verdict.ERROR
    if any(v is Verdict.FAIL for v in items):
        return Verdict.FAIL
    if items and any(v is Verdict.PASS for v in items):
        return Verdict.PASS
    return Verdict.SKIP


def exit_code(verdict: Verdict | str) -> int:
    """0 for PASS/SKIP, 1 for FAIL, 2 for ERROR."""
    return _SEVERITY[Verdict(verdict)]


def jsonable(value: Any) -> Any:
    """Enums to values, tuples to lists, non-finite floats to None (JSON has no NaN)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class OutputResult:
    """One output of one check: shape/dtype, error metrics, tolerance and verdict."""

    name: str
    verdict: Verdict
    message: str
    reference_dtype: str
    candidate_dtype: str
    reference_shape: tuple[int, ...]
    candidate_shape: tuple[int, ...]
    atol: float
    rtol: float
    check: str
    metrics: dict[str, Any] = field(default_factory=dict)
    classification: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass(frozen=True)
class CheckResult:
    """One comparison against the golden at one batch size.

    `check` is "reference" (live torch vs golden: did the framework drift?) or
    "backend" (exported artifact on the backend vs golden: is the conversion right?).
    """

    check: str
    batch_size: int
    verdict: Verdict
    message: str
    outputs: tuple[OutputResult, ...] = ()
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = jsonable({k: v for k, v in asdict(self).items() if k != "outputs"})
        data["outputs"] = [o.to_dict() for o in self.outputs]
        return data


@dataclass(frozen=True)
class ExportRecord:
    """What an exporter produced: artifact files, their hash, timing, versions and warnings."""

    exporter: str
    batch_size: int | None  # None: one dynamic-batch export serves every batch size
    ok: bool
    path: str | None = None
    files: tuple[str, ...] = ()
    sha256: str | None = None
    size_bytes: int | None = None
    seconds: float | None = None
    opset: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    error: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # the post-export transform applied to this artifact (parity/transforms.py): name, ok, error, options, path,
    # files, sha256, size_bytes, seconds, versions, warnings; None when the artifact runs as exported
    transform: dict[str, Any] | None = None

    def failure(self) -> str | None:
        """Why this artifact cannot run (export or transform failed), or None."""
        if not self.ok:
            return f"export failed: {self.error}"
        if self.transform is not None and not self.transform["ok"]:
            return f"transform {self.transform['name']} failed: {self.transform['error']}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))
