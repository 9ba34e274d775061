"""One job, top to bottom: the plan, then its mode (golden, verify, bench), then the report in every format."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from parity import checks, numerics
from parity import inputs as inputs_mod
from parity.bench import plot_latency, run_bench
from parity.config import ReportConfig
from parity.conversion import ArtifactCache, Conversion, Sessions, availability, build_conversion
from parity.diagnostics.localize import run_localization
from parity.diagnostics.probes import run_probes
from parity.environment import environment, now
from parity.errors import ParityError, one_line
from parity.frameworks import framework_for
from parity.golden import Golden, GoldenStore
from parity.plan import JobContext, JobPlan, build_plan, typed_node
from parity.report.formats import writers
from parity.report.model import BackendInfo, GoldenInfo, JobReport, artifact_label
from parity.report.schema import REPORT_SCHEMA, validate
from parity.results import BenchReport, Candidate, CheckResult, Verdict

log = logging.getLogger("parity")


def run_job(cfg: Any, context: JobContext, plan: JobPlan | None = None) -> JobReport:
    """Run one job (planning it from `cfg` unless `plan` is given) and write its report. Never raises: every
    fault, a configuration error included, ends in the report with its verdict and exit code."""
    started = time.perf_counter()
    context.output_dir.mkdir(parents=True, exist_ok=True)
    report = JobReport.start(cfg, str(context.output_dir), list(context.overrides), context.num)
    settings = plan.report if plan is not None else _report_settings(cfg)
    (context.output_dir / settings.filename).unlink(missing_ok=True)  # never leave a stale report behind
    try:
        plan = plan or build_plan(cfg)
        root = plan.golden.root if Path(plan.golden.root).is_absolute() else context.start_dir / plan.golden.root
        store = GoldenStore(root, display_root=plan.golden.root, command_overrides=list(context.overrides))
        if plan.makes_golden:
            make_golden(plan, store, report)
        cache = verify(plan, store, report, context.output_dir) if plan.verifies else None
        if plan.benches:
            bench(plan, report, context.output_dir, cache)
    except ParityError as exc:
        report.fail(exc)
        log.error(report.error)
    except Exception as exc:  # a framework fault outside any check: still a report, never a crash
        report.fail(exc)
        log.exception("unexpected error")
    report.seconds = time.perf_counter() - started
    emit(report, settings, context.output_dir)
    return report


def make_golden(plan: JobPlan, store: GoldenStore, report: JobReport) -> None:
    """The golden: the model's own framework, eager, CPU, float32, deterministic, on all samples at once."""
    framework = framework_for(plan.framework)
    report.exporter = report.transform = None  # the reference is the eager source model: nothing is exported
    report.backend = BackendInfo(name=f"{framework.reference_backend} (reference)", accepts=[framework.name],
                                 available=True)
    store.check_writable(plan.model.name, plan.inputs.name, plan.golden.overwrite)
    framework.require()  # a golden cannot be made without its framework: an ERROR naming what to install
    model = _build(plan, framework, report)
    feeds = inputs_mod.generate(plan.model.inputs, plan.inputs.num_samples, plan.inputs.seed)
    log.info("running the %s reference on %d samples", framework.name, plan.inputs.num_samples)
    outputs = framework.run(model, feeds, plan.input_names, plan.output_names)
    checks.reference_outputs(plan, outputs, plan.inputs.num_samples)
    manifest = {
        "num_samples": plan.inputs.num_samples,
        "weights_sha256": report.model.weights_sha256,
        "input_batch_axes": dict(plan.input_axes),
        "reference": {"framework": framework.name, **framework.reference_info()},
        "config": {"model": _plain(plan.model), "inputs": _plain(plan.inputs)},
        "environment": environment(),
        "created": now(),
    }
    path = store.write(plan.model.name, plan.inputs.name, feeds, outputs, manifest, overwrite=plan.golden.overwrite)
    log.info("golden written: %s", path)
    report.golden = _golden_info(plan, store.load(plan.model.name, plan.inputs.name), store, written=True)


def verify(plan: JobPlan, store: GoldenStore, report: JobReport, work_dir: Path) -> ArtifactCache | None:
    """Per batch size: the live model against the golden (reference check), then the converted model on the
    backend against it (backend check); then determinism, probes and localisation where asked for."""
    golden = store.load(plan.model.name, plan.inputs.name)
    report.golden = _golden_info(plan, golden, store)
    sizes = plan.sizes(golden.num_samples)
    framework = framework_for(plan.framework)
    unavailable = availability(framework)
    if unavailable is not None:  # e.g. a keras model without the `tf` extra: nothing can run here
        log.info("%s is unavailable: %s", framework.name, unavailable)
        report.backend.available, report.backend.skip_reason = False, unavailable
        report.checks += [checks.skipped(c, b, unavailable) for b in sizes for c in ("reference", "backend")]
        return None
    model = _build(plan, framework, report)
    regenerate = store.command(plan.model.name, plan.inputs.name, overwrite=True)
    checks.golden_fits(plan, golden, report.model.weights_sha256, regenerate, sizes)
    conversion = build_conversion(plan, framework, sizes)
    _describe(report, conversion)
    cache = ArtifactCache(plan, conversion, framework, model, golden.inputs, sizes, work_dir)
    report.exports = cache.records  # every export this job makes, verify's and bench's
    candidates: dict[int, dict[str, np.ndarray]] = {}
    with numerics.applied(plan.numerics) as record, Sessions(conversion.backend) as sessions:
        report.numerics = record
        for b in sizes:
            feeds = inputs_mod.take(golden.inputs, dict(plan.input_axes), b)
            expected = inputs_mod.take(golden.outputs, dict(plan.output_axes), b)
            report.checks.append(checks.reference(plan, framework, model, feeds, expected, b))
            log.info("b=%d reference: %s", b, report.checks[-1].verdict.value)
            result, candidate = _backend_check(plan, cache, sessions, report, feeds, expected, b)
            report.checks.append(result)
            log.info("b=%d backend %s: %s", b, conversion.backend.name, result.verdict.value)
            if candidate is not None:
                candidates[b] = candidate
        sessions.close()
        first = next(iter(candidates), None)
        if plan.checks.probes:
            report.probes = run_probes(plan, cache, golden.inputs, first, candidates.get(first))
        if plan.localize:
            report.localization = run_localization(plan, cache, golden.inputs, first, work_dir / "localize")
    if plan.report.save_outputs:
        for b, candidate in candidates.items():
            np.savez_compressed(work_dir / f"candidates_b{b}.npz", **candidate)
            report.candidates.append(Candidate(b, str(work_dir / f"candidates_b{b}.npz")))
    return cache


def bench(plan: JobPlan, report: JobReport, work_dir: Path, cache: ArtifactCache | None) -> None:
    """Latency per batch size (seed 004) on the artifact the verify checked, or, in mode=bench, on a fresh one;
    inputs are drawn from the declared specs, so any batch size runs and no golden is needed."""
    sizes = plan.bench_batch_sizes
    parity_verdict = report.checks_verdict()
    reason = cache.conversion.skip_reason if cache is not None else None
    if cache is None:
        framework = framework_for(plan.framework)
        reason = availability(framework)
        conversion = build_conversion(plan, framework, sizes) if reason is None else None
        reason = reason or conversion.skip_reason
        if conversion is not None:
            _describe(report, conversion)
        if reason is None:
            # a calibrated transform sees the input set's samples (what a golden of it holds), as in verify
            samples = inputs_mod.generate(plan.model.inputs, plan.inputs.num_samples, plan.inputs.seed)
            cache = ArtifactCache(plan, conversion, framework, _build(plan, framework, report), samples, sizes,
                                  work_dir)
            report.exports = cache.records
    if reason is not None or cache is None:
        report.bench = BenchReport(skip_reason=reason, parity_verdict=parity_verdict)
        log.info("bench skipped: %s", reason)
        return
    with numerics.applied(plan.numerics) as record:
        measured = run_bench(plan.bench, cache, sizes, plan.model.inputs)
    report.numerics = report.numerics or record
    conversion = cache.conversion
    measured = dataclasses.replace(measured, parity_verdict=parity_verdict, backend=conversion.backend.name)
    if plan.bench.plot and any(r.error is None for r in measured.results):
        exporter = artifact_label(conversion.exporter.name, conversion.transform.name) if conversion.exporter else None
        label = f"{exporter}×{conversion.backend.name}" if exporter else conversion.backend.name
        try:
            plot = plot_latency({label: [r.to_dict() for r in measured.results]}, work_dir / "latency.png",
                                f"{plan.model.name}: latency vs batch size")
            measured = dataclasses.replace(measured, plot=str(plot))
        except Exception as exc:  # matplotlib missing or broken: the numbers still stand
            measured = dataclasses.replace(measured, plot_error=one_line(exc))
            log.warning("no latency plot: %s", measured.plot_error)
    report.bench = measured


def emit(report: JobReport, settings: ReportConfig, output_dir: Path) -> None:
    """Validate the report against its schema, then hand it to every requested writer. A report that breaks
    its schema is a parity bug: an ERROR saying so, the evidence kept beside it, no report.json written."""
    document = report.to_dict()
    try:
        validate(document, REPORT_SCHEMA)
        valid = True
    except Exception as exc:
        bad = output_dir / f"{settings.filename}.invalid"
        bad.write_text(json.dumps(document, indent=2, default=str))
        report.error = f"internal error: the report failed its schema ({one_line(exc)}); kept at {bad}"
        log.error(report.error)
        document, valid = report.to_dict(), False
    for chosen in writers(list(settings.formats)):
        if chosen.needs_valid and not valid:
            continue
        try:
            path = chosen.job(document, settings, output_dir)
            if path is not None:
                log.info("report: %s", path)
        except Exception as exc:  # a writer failing must not hide the verdict
            report.error = report.error or f"report format '{chosen.name}' failed: {one_line(exc)}"
            log.error("report format '%s' failed: %s", chosen.name, one_line(exc))
            document = report.to_dict()


# -- the stages' small helpers ----------------------------------------------------------------------------------


def _backend_check(plan: JobPlan, cache: ArtifactCache, sessions: Sessions, report: JobReport,
                   feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                   b: int) -> tuple[CheckResult, dict[str, np.ndarray] | None]:
    """The backend check at batch size b (and its determinism runs), on the session of b's artifact."""
    if cache.conversion.skip_reason is not None:
        return checks.skipped("backend", b, cache.conversion.skip_reason), None
    artifact = cache.get(b)
    if artifact.failure():
        return CheckResult("backend", b, Verdict.ERROR, artifact.failure()), None
    try:
        session = sessions.open(artifact)
    except ParityError as exc:
        return checks.error("backend", b, exc), None
    report.backend.runtime = session.runtime_info()
    result, candidate = checks.backend(plan, session, feeds, expected, b)
    if candidate is not None and plan.checks.repeats > 1:
        report.determinism.append(checks.determinism(session, feeds, candidate, b, plan.checks.repeats))
    return result, candidate


def _build(plan: JobPlan, framework: Any, report: JobReport) -> Any:
    log.info("building model %s (%s, seed %s)", plan.model.name, framework.name, plan.model.seed)
    model = framework.build(plan.model)
    report.model.weights_sha256 = framework.weights_sha256(model)
    return model


def _describe(report: JobReport, conversion: Conversion) -> None:
    report.backend.accepts = sorted(conversion.backend.accepts)
    report.backend.available = conversion.skip_reason is None
    report.backend.skip_reason = conversion.skip_reason
    if conversion.exporter is None:  # eager: nothing is exported (a transform asked for stays: the SKIP's cause)
        report.exporter = None


def _golden_info(plan: JobPlan, golden: Golden, store: GoldenStore, written: bool = False) -> GoldenInfo:
    return GoldenInfo(input_set=plan.inputs.name, root=str(store.root.resolve()),
                      path=str(golden.path), num_samples=golden.num_samples, created=golden.manifest.get("created"),
                      weights_sha256=golden.manifest.get("weights_sha256"), written=written)


def _plain(config: Any) -> dict[str, Any]:
    from parity.results import jsonable

    return jsonable(dataclasses.asdict(config))


def _report_settings(cfg: Any) -> ReportConfig:
    """The report settings of a job whose plan is not built yet (the defaults when they are invalid too)."""
    try:
        return typed_node(ReportConfig, cfg.report, "report")
    except ParityError:
        return ReportConfig()
