"""The typed job and sweep reports: they own the verdict rules and their JSON form (validated by the schemas)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import parity
from parity.environment import environment, now
from parity.errors import ConfigError, ParityError, one_line
from parity.results import (
    BenchReport,
    Candidate,
    CheckResult,
    DeterminismResult,
    ExportRecord,
    FaultReport,
    LocalizationReport,
    ProbeReport,
    Record,
    Verdict,
    exit_code,
    jsonable,
    overall,
)

REPORT_SCHEMA_ID = "parity.report/v2"
SWEEP_SCHEMA_ID = "parity.sweep/v2"


@dataclass
class JobInfo(Record):
    output_dir: str
    overrides: list[str]
    num: int | None


@dataclass
class ModelInfo(Record):
    name: str | None
    framework: str | None
    weights_sha256: str | None = None
    weights_file: dict[str, Any] | None = None  # the trained-weights file loaded: path, sha256, size_bytes


@dataclass
class BackendInfo(Record):
    name: str | None
    accepts: list[str] | None = None  # the artifact kinds it runs
    available: bool | None = None
    skip_reason: str | None = None
    runtime: dict[str, Any] = field(default_factory=dict)  # what really ran (device, providers, versions)


@dataclass
class GoldenInfo(Record):
    input_set: str | None
    root: str | None = None  # the golden store's root directory (resolved)
    path: str | None = None
    num_samples: int | None = None
    created: str | None = None
    weights_sha256: str | None = None
    written: bool = False
    inputs_source: dict[str, Any] | None = None  # the files its inputs were read from, and their preprocessing
    imported: dict[str, Any] | None = None  # the tool and files an imported golden came from

    @classmethod
    def of(cls, golden: Any, input_set: str, root: Any, written: bool = False) -> GoldenInfo:
        """What a loaded golden (parity.golden.Golden) says of itself, below the store's `root`."""
        return cls(input_set=input_set, root=str(Path(root).resolve()), path=str(golden.path),
                   num_samples=golden.num_samples, created=golden.manifest.get("created"),
                   weights_sha256=golden.manifest.get("weights_sha256"), written=written,
                   inputs_source=golden.manifest.get("inputs_source"), imported=golden.manifest.get("imported"))


@dataclass
class JobReport:
    """One job's report, filled stage by stage; `verdict` and `exit_code` follow from what it holds."""

    mode: str
    job: JobInfo
    model: ModelInfo
    exporter: str | None
    transform: str | None
    backend: BackendInfo
    golden: GoldenInfo
    config: dict[str, Any]
    environment: dict[str, str] = field(default_factory=environment)
    created: str = field(default_factory=now)
    exports: list[ExportRecord] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    determinism: list[DeterminismResult] = field(default_factory=list)
    probes: ProbeReport | None = None
    localization: LocalizationReport | None = None
    fault: FaultReport | None = None  # a FAIL's stage: framework drift, conversion, runtime (parity.diagnostics.fault)
    numerics: dict[str, Any] | None = None
    bench: BenchReport | None = None
    candidates: list[Candidate] = field(default_factory=list)
    exported: dict[str, Any] | None = None  # mode=export: format, directory, files
    preprocess_comparison: dict[str, Any] | None = None  # mode=compare_preprocess (parity.compare_preprocess)
    error: str | None = None
    seconds: float = 0.0
    skip_is: str = "ok"  # report.skip_is: "fail" makes a SKIP exit 1
    retention: dict[str, Any] | None = None  # report.keep_artifacts: what was removed (parity.retention)

    @classmethod
    def start(cls, cfg: Any, output_dir: str, overrides: list[str], num: int | None) -> JobReport:
        """The report of a job about to run, from the composed config as it stands (never raises)."""
        from omegaconf import OmegaConf

        from parity.config import value_of

        try:
            resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        except Exception as exc:  # an unresolvable interpolation: keep the raw config
            resolved = {"unresolved": OmegaConf.to_container(cfg, resolve=False, enum_to_str=True), "error": str(exc)}

        def name(group: str) -> Any:
            node = cfg.get(group)
            return node.get("name") if node is not None else None

        framework = cfg.model.get("framework", "torch") if cfg.get("model") is not None else None
        return cls(
            mode=value_of(cfg.get("mode", "verify")),
            job=JobInfo(output_dir=output_dir, overrides=list(overrides), num=num),
            model=ModelInfo(name=name("model"), framework=None if framework is None else value_of(framework)),
            exporter=name("exporter"),
            transform=name("transform"),
            backend=BackendInfo(name=name("backend")),
            golden=GoldenInfo(input_set=name("inputs")),
            config=resolved,
        )

    def describe(self, conversion: Any) -> None:
        """What the backend under test takes, and whether it can run here (parity.conversion.Conversion)."""
        self.backend.accepts = sorted(conversion.backend.accepts)
        self.backend.available = conversion.skip_reason is None
        self.backend.skip_reason = conversion.skip_reason
        if conversion.exporter is None:  # eager: nothing is exported (a transform asked for stays: the SKIP's cause)
            self.exporter = None

    def fail(self, exc: BaseException) -> None:
        """Record what stopped the job: a typed error in one line, anything else as unexpected."""
        if isinstance(exc, ConfigError):
            self.error = f"configuration error: {one_line(exc)}"
        elif isinstance(exc, ParityError):
            self.error = one_line(exc)
        else:
            self.error = f"unexpected {one_line(exc)}"

    @property
    def verdict(self) -> Verdict:
        """The worst of every check, diagnostic and benchmark; a job whose backend never ran is no PASS."""
        verdicts = [c.verdict for c in self.checks]
        verdicts += [Verdict.ERROR for section in (self.probes, self.localization) if section and section.error]
        bench_skipped = self.bench is not None and self.bench.skip_reason is not None
        if self.bench is not None:
            if bench_skipped:
                verdicts.append(Verdict.SKIP)
            elif any(r.error for r in self.bench.results):
                verdicts.append(Verdict.ERROR)
            elif self.bench.results:
                verdicts.append(Verdict.PASS)
        if self.preprocess_comparison is not None:
            verdicts.append(Verdict(self.preprocess_comparison["verdict"]))
        if self.error:
            verdicts.append(Verdict.ERROR)
        elif (self.mode in ("golden", "import") and self.golden.written) or \
                (self.mode == "export" and self.exported is not None):
            verdicts.append(Verdict.PASS)
        verdict = overall(verdicts)
        backend_checks = [c.verdict for c in self.checks if c.check == "backend"] + ([Verdict.SKIP] * bench_skipped)
        if verdict is Verdict.PASS and backend_checks and all(v is Verdict.SKIP for v in backend_checks):
            return Verdict.SKIP  # the backend under test never ran: a passing reference alone is no PASS
        return verdict

    @property
    def exit_code(self) -> int:
        return exit_code(self.verdict, self.skip_is)

    def checks_verdict(self) -> Verdict | None:
        """The verdict of the checks alone (what a benchmark in the same job is marked with); None without any."""
        return overall(c.verdict for c in self.checks) if self.checks else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, as report.v2.json describes it."""
        return jsonable({
            "schema": REPORT_SCHEMA_ID,
            "parity_version": parity.__version__,
            "created": self.created,
            "mode": self.mode,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "error": self.error,
            "job": self.job,
            "model": self.model,
            "exporter": self.exporter,
            "transform": self.transform,
            "backend": self.backend,
            "golden": self.golden,
            "exports": self.exports,
            "checks": self.checks,
            "determinism": self.determinism,
            "probes": self.probes,
            "localization": self.localization,
            "fault": self.fault,
            "numerics": self.numerics,
            "bench": self.bench,
            "candidates": self.candidates,
            "exported": self.exported,
            "preprocess_comparison": self.preprocess_comparison,
            "config": self.config,
            "environment": self.environment,
            "retention": self.retention,
            "seconds": self.seconds,
        })


@dataclass(frozen=True)
class SweepJob(Record):
    """One job of a sweep: where it ran, its report, its verdict."""

    num: int | None
    output_dir: str
    overrides: tuple[str, ...]
    report: str | None
    verdict: Verdict
    exit_code: int
    error: str | None


@dataclass(frozen=True)
class SweepRow(Record):
    """One row of the sweep table: a job's check at one batch size for one output (or the check as a whole)."""

    job: int | None
    model: str | None
    exporter: str | None
    backend: str | None
    verdict: Verdict
    message: str = ""
    check: str | None = None
    batch_size: int | None = None
    output: str | None = None
    max_abs: float | None = None
    mean_abs: float | None = None
    cosine: float | None = None
    top1_agreement: float | None = None
    l2_rel: float | None = None
    prob_diff_max_pp: float | None = None
    variant: str = ""  # the job's other varying overrides (e.g. numerics=strict), part of its column label


@dataclass
class SweepReport:
    """A multirun's jobs and the tables across them; its verdict is the worst job's."""

    sweep_dir: str
    jobs: list[SweepJob]
    rows: list[SweepRow]
    pivot: dict[str, Any]
    pairwise: list[dict[str, Any]]
    bench: list[dict[str, Any]]
    created: str = field(default_factory=now)
    # each job's report (JSON form) in the order of `jobs`, None where a job left none: for the writers, not
    # serialised (the jobs' own files hold them)
    reports: list[dict[str, Any] | None] = field(default_factory=list)
    retention: list[dict[str, Any]] = field(default_factory=list)  # per job: what report.keep_artifacts removed

    @property
    def verdict(self) -> Verdict:
        return overall(job.verdict for job in self.jobs)

    @property
    def exit_code(self) -> int:
        """The worst job's code (a job counting a SKIP as a failure included), at least the verdict's."""
        return max([exit_code(self.verdict), *(job.exit_code for job in self.jobs)])

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "schema": SWEEP_SCHEMA_ID,
            "parity_version": parity.__version__,
            "created": self.created,
            "sweep_dir": self.sweep_dir,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "jobs": self.jobs,
            "rows": self.rows,
            "pivot": self.pivot,
            "pairwise": self.pairwise,
            "bench": self.bench,
            "retention": self.retention,
        })


def column(exporter: str | None, backend: str | None, variant: str = "") -> str:
    """A result's label in sweeps and plots: exporter(+transform)×backend (the backend alone when eager), plus
    the job's other varying overrides in brackets."""
    label = f"{exporter}×{backend}" if exporter else str(backend)
    return f"{label} [{variant}]" if variant else label


def artifact_label(exporter: str | None, transform: str | None) -> str | None:
    """`exporter` or `exporter+transform` (e.g. dynamo+int8_static); None for eager backends."""
    if exporter is None:
        return None
    return exporter if transform in (None, "none") else f"{exporter}+{transform}"


def rows_of(report: dict[str, Any], job: int | None = None, variant: str = "") -> list[SweepRow]:
    """A job report's (JSON form) rows: one per (check, batch size, output); a check without outputs gives one."""
    base = {"job": job, "model": report["model"]["name"], "backend": report["backend"]["name"], "variant": variant,
            "exporter": artifact_label(report["exporter"], report.get("transform"))}
    if not report["checks"]:
        message = report["error"] or ("golden written" if report["golden"]["written"] else "")
        return [SweepRow(**base, verdict=Verdict(report["verdict"]), message=message)]
    rows = []
    for check in report["checks"]:
        where = {"check": check["check"], "batch_size": check["batch_size"]}
        if not check["outputs"]:
            rows.append(SweepRow(**base, **where, verdict=Verdict(check["verdict"]), message=check["message"]))
        for out in check["outputs"]:
            metrics, cls = out["metrics"], out["classification"] or {}
            rows.append(SweepRow(**base, **where, output=out["name"], verdict=Verdict(out["verdict"]),
                                 message=out["message"], max_abs=metrics.get("max_abs"),
                                 mean_abs=metrics.get("mean_abs"), cosine=metrics.get("cosine"),
                                 top1_agreement=cls.get("top1_agreement"), l2_rel=metrics.get("l2_rel"),
                                 prob_diff_max_pp=cls.get("prob_diff_max_pp")))
    return rows
