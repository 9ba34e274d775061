"""Verdicts and the small frozen result records of a job, each with to_dict() for the JSON report."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
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


def exit_code(verdict: Verdict | str, skip_is: str = "ok") -> int:
    """0 for PASS/SKIP, 1 for FAIL, 2 for ERROR; a SKIP is 1 under `skip_is="fail"` (report.skip_is)."""
    if skip_is == "fail" and Verdict(verdict) is Verdict.SKIP:
        return 1
    return _SEVERITY[Verdict(verdict)]


def jsonable(value: Any) -> Any:
    """Enums to values, tuples to lists, non-finite floats to None (JSON has no NaN), records to dicts."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


class Record:
    """Mixin: to_dict() of a dataclass, nested records by their own to_dict()."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class OutputResult(Record):
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
    # the classification thresholds that judged it (the tolerance's), None where unset
    min_top1_agreement: float | None = None
    max_prob_diff_pp: float | None = None
    # where the error lies (parity.compare.error_profile): |d| histogram on log-spaced bins, the worst elements
    profile: dict[str, Any] | None = None


@dataclass(frozen=True)
class CheckResult(Record):
    """One comparison against the golden at one batch size.

    `check` is "reference" (the live source model vs golden: did the framework drift?) or
    "backend" (the converted model on the backend vs golden: is the conversion right?).
    """

    check: str
    batch_size: int
    verdict: Verdict
    message: str
    outputs: tuple[OutputResult, ...] = ()
    seconds: float | None = None


@dataclass(frozen=True)
class ExportRecord(Record):
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
    # False for an exporter whose bytes differ between runs of the same config (tf2onnx's generated names):
    # compare structure_sha256, not sha256, across runs then
    deterministic: bool = True
    structure_sha256: str | None = None  # parity.artifact.structure_sha256: the graph's content, names ignored
    # the post-export transform applied to this artifact (parity/transforms/): name, ok, error, options, path,
    # files, sha256, size_bytes, seconds, versions, warnings; None when the artifact runs as exported
    transform: dict[str, Any] | None = None
    # the export cache (parity.export_cache): status hit | miss, key, dir, stored, error, waited_s, saved_s; None
    # when the job used none (export_cache.enabled=false, or a file run as it is). A transform's dict has its own
    cache: dict[str, Any] | None = None

    def failure(self) -> str | None:
        """Why this artifact cannot run (export or transform failed), or None."""
        if not self.ok:
            return f"export failed: {self.error}"
        if self.transform is not None and not self.transform["ok"]:
            return f"transform {self.transform['name']} failed: {self.transform['error']}"
        return None

    @property
    def final_sha256(self) -> str | None:
        """The SHA-256 of what a backend runs: the transformed artifact's, else the export's."""
        if self.transform is not None:
            return self.transform["sha256"]
        return self.sha256


@dataclass(frozen=True)
class DeterminismResult(Record):
    """The backend run `repeats` times on the same inputs: bitwise identical, or how far apart."""

    batch_size: int
    repeats: int
    bitwise_identical: bool
    max_abs_diff: float
    per_output: dict[str, float]


@dataclass(frozen=True)
class ProbeEntry(Record):
    """One probe module: its tensor on the backend vs the torch hook's, in forward order."""

    name: str
    shape: tuple[int, ...]
    max_abs: float | None
    mean_abs: float | None
    l2_rel: float | None
    amplification: float | None  # max abs / the previous probe's max abs
    within_tolerance: bool
    message: str


@dataclass(frozen=True)
class ProbeReport(Record):
    """Layer probes of one batch size; `error` when they could not run (an ERROR of the job)."""

    batch_size: int | None
    probes: tuple[ProbeEntry, ...] = ()
    first_exceeding: str | None = None
    side_effect_max_abs: float | None = None  # the main outputs with probes attached vs without
    side_effect_ok: bool | None = None
    error: str | None = None
    after_last_probe: str | None = None  # every probe within tolerance but the outputs FAIL: the last probe's name

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.after_last_probe is None:
            data.pop("after_last_probe")
        return data


@dataclass(frozen=True)
class Divergence(Record):
    """The first ONNX node whose output diverges between the reference and the candidate runtime."""

    node: str
    op_type: str
    tensor: str
    node_index: int
    reason: str
    max_abs: float | None
    mean_abs: float | None


@dataclass(frozen=True)
class ModuleEntry(Record):
    """localize=source: one call of a source module (or Keras layer) against the ONNX tensor matched to it.

    `max_abs` ... compare the source's tensor with the artifact's (on the reference runtime, fed the same model
    inputs): the error it carries. `local_*` compare the source's tensor with the module's own ONNX nodes fed the
    source's own inputs to that module: the error it makes. `origin` is "local" (the nodes compute something
    else), "inherited" (they only carry an upstream error) or None (within tolerance: not looked at).
    """

    module: str
    call: int
    leaf: bool
    node: str
    op_type: str
    tensor: str
    shape: tuple[int, ...]
    max_abs: float | None
    mean_abs: float | None
    l2_rel: float | None
    input_max_abs: float | None  # the error on the module's inputs (source vs artifact)
    amplification: float | None  # max_abs / input_max_abs
    within_tolerance: bool
    message: str
    local_max_abs: float | None = None
    local_within_tolerance: bool | None = None
    local_message: str | None = None
    origin: str | None = None
    nodes: tuple[str, ...] = ()  # the ONNX nodes of this call (the subgraph run for its local error)
    fused: tuple[str, ...] = ()  # modules with no nodes of their own that the exporter folded into these nodes


@dataclass(frozen=True)
class Culprit(Record):
    """Where the fault is: the source module and the ONNX node (localize=source: the first module with local
    error; localize=all: the first node whose output diverges, and the module it came from where known)."""

    module: str | None
    node: str
    op_type: str | None
    tensor: str | None
    call: int | None = None
    fused: tuple[str, ...] = ()  # modules folded into the same nodes (a BatchNorm fused into its Conv)
    nodes: tuple[str, ...] = ()  # every ONNX node of the culprit's subgraph (its local error ran them)
    max_abs: float | None = None
    local_max_abs: float | None = None
    input_max_abs: float | None = None
    amplification: float | None = None
    message: str = ""


@dataclass(frozen=True)
class LocalizationReport(Record):
    """Where a FAIL comes from. `kind` "runtime" (localize=all): the backend against ONNX Runtime CPU on the same
    artifact, every intermediate tensor, the first divergent node. "conversion" (localize=source): the source
    model's module outputs against the artifact's tensors, each suspect module's own nodes run on the source's
    own inputs, the first with local error (`culprit`)."""

    kind: str = "runtime"
    culprit: Culprit | None = None
    first_divergent: Divergence | None = None
    error: str | None = None
    batch_size: int | None = None
    reference: str | None = None
    candidate: str | None = None
    tensors_total: int | None = None
    tensors_compared: int | None = None
    chunks_run: int | None = None
    chunk_size: int | None = None
    atol: float | None = None
    rtol: float | None = None
    check: str | None = None
    first_exceeding: str | None = None  # conversion: the first module call whose error exceeds its tolerance
    modules: tuple[ModuleEntry, ...] = ()  # conversion: every matched module call, in the order they finished
    modules_total: int | None = None  # conversion: module calls of the forward pass
    unmatched: dict[str, str] = field(default_factory=dict)  # conversion: module call -> why no tensor matched
    local_runs: int | None = None
    overlay: str | None = None  # Model Explorer node data: the error per ONNX tensor
    message: str | None = None
    tensor_errors: dict[str, float | None] = field(default_factory=dict)  # runtime: max abs per tensor (overlay)

    def to_dict(self) -> dict[str, Any]:
        # null where it says something: no divergent node, no culprit; for localize=source no module exceeding
        keep = {"first_divergent", "error", "culprit", "kind"} | ({"first_exceeding"} if self.kind == "conversion"
                                                                 else set())
        return {k: v for k, v in super().to_dict().items() if k != "tensor_errors" and (
            (v is not None and v != () and v != {} and v != []) or k in keep)}


@dataclass(frozen=True)
class FaultReport(Record):
    """Which stage a FAIL comes from, at its first failing batch size: `fault_class` "framework_drift" (the
    source model no longer reproduces its golden), "conversion" (the artifact on the reference runtime computes
    something else than the source on the same inputs), "runtime" (the backend differs from the reference
    runtime on the same artifact), or "unlocated" (each stage is within tolerance of the next)."""

    fault_class: str
    batch_size: int
    message: str
    reference_runtime: str | None = None
    stages: dict[str, Any] = field(default_factory=dict)  # stage -> {max_abs, within_tolerance, message}


@dataclass(frozen=True)
class BenchResult(Record):
    """Latency at one batch size (parity/timing.py's statistics), or the error that stopped it."""

    batch_size: int
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    unstable: bool | None = None
    unstable_reason: str | None = None
    artifact_sha256: str | None = None  # what was timed (None for an eager backend: the live model)

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"batch_size": self.batch_size, "error": self.error, "artifact_sha256": self.artifact_sha256}
        return {"batch_size": self.batch_size, "error": None, **jsonable(self.stats), "unstable": self.unstable,
                "unstable_reason": self.unstable_reason, "artifact_sha256": self.artifact_sha256}


@dataclass(frozen=True)
class ColdStart(Record):
    batch_size: int
    load_s: float
    first_inference_ms: float


@dataclass(frozen=True)
class Candidate(Record):
    """A batch size's backend outputs kept on disk (report.save_outputs), for the sweep's pairwise matrix."""

    batch_size: int
    path: str


@dataclass(frozen=True)
class BenchReport(Record):
    """Latency per batch size on one backend (mode=bench / verify+bench), or why it was skipped.

    `parity_verdict`: the verify verdict of the same job (None in mode=bench); a backend failing parity is
    marked on every row and never wins a sweep's comparison.
    """

    results: tuple[BenchResult, ...] = ()
    skip_reason: str | None = None
    parity_verdict: Verdict | None = None
    backend: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    timing: str | None = None  # what one timed interval covers
    include_transfers: bool | None = None
    threads: dict[str, Any] = field(default_factory=dict)
    cold: tuple[ColdStart, ...] = ()
    plot: str | None = None
    plot_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if self.skip_reason is not None:  # nothing ran: the reason, and no measurement fields at all
            return {k: data[k] for k in ("skip_reason", "results", "parity_verdict")}
        return data
