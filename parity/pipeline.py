"""One job, top to bottom: the plan, then its mode (golden, verify, bench), then the report in every format."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from parity import checks, numerics, retention, sources, transfer
from parity import inputs as inputs_mod
from parity.bench import run_bench, with_plot
from parity.conversion import ArtifactCache, Sessions, availability, build_conversion
from parity.diagnostics.fault import classify
from parity.diagnostics.localize import run_localization
from parity.diagnostics.overlay import write_overlay
from parity.diagnostics.probes import run_probes
from parity.diagnostics.source import run_source_localization
from parity.errors import GoldenError, ModelError, ParityError, UnavailableError, one_line
from parity.frameworks import framework_for
from parity.golden import GoldenStore, output_dir_problem, reference_manifest, root_path
from parity.plan import JobContext, JobPlan, build_plan, report_settings
from parity.report.formats import write_job, writers
from parity.report.model import BackendInfo, GoldenInfo, JobReport
from parity.results import BenchReport, Candidate, Verdict, jsonable
from parity.weights import file_record

log = logging.getLogger("parity")


def run_job(cfg: Any, context: JobContext, plan: JobPlan | None = None) -> JobReport:
    """Run one job (planning it from `cfg` unless `plan` is given) and write its report. Never raises: every
    fault, a configuration error included, ends in the report with its verdict and exit code."""
    started = time.perf_counter()
    report = JobReport.start(cfg, str(context.output_dir), list(context.overrides), context.num)
    settings = plan.report if plan is not None else report_settings(cfg)
    report.skip_is = settings.skip_is
    inside = _inside_golden_root(cfg, plan, context)
    if inside is not None:  # its report, candidates and artifacts would land among goldens: write nothing
        report.fail(GoldenError(inside))
        log.error(report.error)
        report.seconds = time.perf_counter() - started
        return report
    context.output_dir.mkdir(parents=True, exist_ok=True)
    for stale in [settings.filename, *(w.filename for w in writers(list(settings.formats)) if w.filename)]:
        (context.output_dir / stale).unlink(missing_ok=True)  # never leave a stale report behind
    try:
        plan = plan or build_plan(cfg, context.start_dir)
        store = GoldenStore(root_path(plan.golden.root, context.start_dir), display_root=plan.golden.root,
                            command_overrides=list(context.command_overrides))
        if plan.makes_golden:
            make_golden(plan, store, report)
        if plan.mode == "import":
            report.exporter = report.transform = report.backend.name = None  # nothing is exported or run
            transfer.import_golden(plan, store, report, lambda framework: _build(plan, framework, report))
        if plan.mode == "compare_preprocess":
            compare_pipelines(plan, report)
        if plan.mode == "export":
            report.exporter = report.transform = report.backend.name = None
            report.exported, golden = transfer.export_golden(plan, store, context.start_dir)
            report.golden = GoldenInfo.of(golden, plan.inputs.name, store.root)
        cache = verify(plan, store, report, context.output_dir) if plan.verifies else None
        if plan.benches:
            bench(plan, report, context.output_dir, cache)
    except ParityError as exc:
        report.fail(exc)
        log.error(report.error)
    except MemoryError as exc:  # e.g. inputs.num_samples too large for this machine: the job's ERROR, one line
        report.fail(ModelError(f"out of memory ({one_line(exc)}); lower inputs.num_samples or the batch sizes"))
        log.error(report.error)
    except Exception as exc:  # a framework fault outside any check: still a report, never a crash
        report.fail(exc)
        log.exception("unexpected error")
    report.seconds = time.perf_counter() - started
    if settings.keep_artifacts != "all" and context.num is not None:
        # a sweep's pairwise matrix still reads the candidates: removed after the sweep's tables (its report)
        report.retention = {"policy": settings.keep_artifacts, "removed": None, "freed_bytes": None,
                            "applied": "sweep"}
    write_job(report, settings, context.output_dir)
    if settings.keep_artifacts != "all" and context.num is None:
        keep_artifacts(report, settings, context.output_dir)
    return report


def keep_artifacts(report: JobReport, settings: Any, output_dir: Path) -> None:
    """report.keep_artifacts for a single run, on its final verdict (a writer that failed has made it ERROR):
    the artifacts removed where the policy says so, and report.json rewritten to say what is gone."""
    removed = retention.apply(settings.keep_artifacts, report.verdict.value, output_dir)
    report.retention = {**(removed or {"policy": settings.keep_artifacts, "removed": [], "freed_bytes": 0}),
                        "applied": "job"}
    if "json" in settings.formats and (output_dir / settings.filename).is_file():
        from parity.report.formats.json_format import JsonWriter

        try:
            JsonWriter().job(report.to_dict(), settings, output_dir)
        except Exception as exc:  # the report as first written stands; the log says what was removed
            log.error("could not record the retention in %s: %s", settings.filename, one_line(exc))
    if removed and removed["removed"]:
        log.info("keep_artifacts=%s: removed %s (%.1f MB)", settings.keep_artifacts, ", ".join(removed["removed"]),
                 removed["freed_bytes"] / 1e6)


def _inside_golden_root(cfg: Any, plan: JobPlan | None, context: JobContext) -> str | None:
    """Why the job's output directory may not be used (it lies in the golden root, or a protected one), or None;
    a golden.root that cannot even be resolved is reported by the plan, not here."""
    try:
        root = plan.golden.root if plan is not None else OmegaConf.select(cfg, "golden.root", default=None)
        return output_dir_problem(context.output_dir, root, context.start_dir)
    except Exception:
        return None


def make_golden(plan: JobPlan, store: GoldenStore, report: JobReport) -> None:
    """The golden: the model's own framework, eager, CPU, float32, deterministic, on all samples at once."""
    framework = framework_for(plan.framework)
    report.exporter = report.transform = None  # the reference is the eager source model: nothing is exported
    report.backend = BackendInfo(name=f"{framework.reference_backend} (reference)", accepts=[framework.name],
                                 available=True)
    store.check_writable(plan.model.name, plan.inputs.name, plan.golden.overwrite)
    framework.require()  # a golden cannot be made without its framework: an ERROR naming what to install
    feeds, source = sources.load(plan)
    num_samples = source["num_samples"] if source else plan.inputs.num_samples
    model = _build(plan, framework, report)
    log.info("running the %s reference on %d samples", framework.name, num_samples)
    outputs = framework.run(model, feeds, plan.input_names, plan.output_names)
    checks.reference_outputs(plan, outputs, num_samples)
    manifest = reference_manifest(num_samples, report.model.weights_sha256, dict(plan.input_axes),
                                  {"framework": framework.name, **framework.reference_details(model)},
                                  {"model": jsonable(dataclasses.asdict(plan.model)),
                                   "inputs": jsonable(dataclasses.asdict(plan.inputs))},
                                  weights_file=report.model.weights_file, inputs_source=source)
    path = store.write(plan.model.name, plan.inputs.name, feeds, outputs, manifest, overwrite=plan.golden.overwrite)
    log.info("golden written: %s", path)
    report.golden = GoldenInfo.of(store.load(plan.model.name, plan.inputs.name), plan.inputs.name, store.root,
                                 written=True)


def compare_pipelines(plan: JobPlan, report: JobReport) -> None:
    """mode=compare_preprocess: both image pipelines through the source model, eager on CPU (no golden, no
    export): what the preprocessing difference alone does to the outputs."""
    from parity.compare_preprocess import pipeline_b, run

    framework = framework_for(plan.framework)
    report.exporter = report.transform = None
    report.backend = BackendInfo(name=f"{framework.reference_backend} (reference)", accepts=[framework.name],
                                 available=True)
    pipeline_b(plan)  # a bad pipeline b is a configuration error before the model is built
    framework.require()
    model = _build(plan, framework, report)
    report.preprocess_comparison = run(plan, framework, model)
    log.info("preprocessing a vs b: %s", report.preprocess_comparison["message"])


def verify(plan: JobPlan, store: GoldenStore, report: JobReport, work_dir: Path) -> ArtifactCache | None:
    """Per batch size: the live model against the golden (reference check), then the converted model on the
    backend against it (backend check); then determinism, probes and localisation where asked for."""
    golden = store.load(plan.model.name, plan.inputs.name)
    report.golden = GoldenInfo.of(golden, plan.inputs.name, store.root)
    sizes = plan.sizes(golden.num_samples)
    framework = framework_for(plan.framework)
    model, unavailable = _build_if_available(plan, framework, report)
    if unavailable is not None:  # e.g. a keras model without the `tf` extra: nothing can run here
        log.info("cannot run here: %s", unavailable)
        report.backend.available, report.backend.skip_reason = False, unavailable
        report.checks += [checks.skipped(c, b, unavailable) for b in sizes for c in ("reference", "backend")]
        return None
    regenerate = (golden.manifest.get("imported") or {}).get("command") or \
        store.command(plan.model.name, plan.inputs.name, overwrite=True)
    checks.golden_fits(plan, golden, report.model.weights_sha256, regenerate, sizes, report.model.weights_file)
    if plan.checks.probes == "auto":  # the model's top-level children that ran, in the order they finished
        plan = dataclasses.replace(plan, model=dataclasses.replace(plan.model, probes=auto_probes(
            framework, model, golden.inputs, plan, sizes[0])))
    conversion = build_conversion(plan, framework, plan.backend_sizes(sizes))
    report.describe(conversion)
    cache = ArtifactCache(plan, conversion, framework, model, golden.inputs, sizes, work_dir, _source(report))
    report.exports = cache.records  # every export this job makes, verify's and bench's
    candidates: dict[int, dict[str, np.ndarray]] = {}
    with numerics.applied(plan.numerics) as record, Sessions(conversion.backend) as sessions:
        report.numerics = record
        for b in sizes:
            feeds = inputs_mod.take(golden.inputs, dict(plan.input_axes), b)
            expected = inputs_mod.take(golden.outputs, dict(plan.output_axes), b)
            report.checks.append(checks.reference(plan, framework, model, feeds, expected, b))
            log.info("b=%d reference: %s", b, report.checks[-1].verdict.value)
            run = checks.backend(plan, cache, sessions, feeds, expected, b)
            report.checks.append(run.result)
            log.info("b=%d backend %s: %s", b, conversion.backend.name, run.result.verdict.value)
            report.backend.runtime = run.runtime or report.backend.runtime
            if run.candidate is not None:
                candidates[b] = run.candidate
                try:
                    if plan.checks.repeats > 1:
                        report.determinism.append(checks.determinism(run.session, feeds, run.candidate, b,
                                                                     plan.checks.repeats))
                except ParityError as exc:  # a repeat that fails: this size's ERROR, the other sizes go on
                    report.checks.append(checks.error("backend", b, exc))
        sessions.close()
        for b, candidate in candidates.items() if plan.report.save_outputs else ():
            np.savez_compressed(work_dir / f"candidates_b{b}.npz", **candidate)
            report.candidates.append(Candidate(b, str(work_dir / f"candidates_b{b}.npz")))
        first = next(iter(candidates), None)
        if plan.checks.probes:
            failed = any(c.batch_size == first and c.check == "backend" and c.verdict is Verdict.FAIL
                         for c in report.checks)
            report.probes = run_probes(plan, cache, golden.inputs, first, candidates.get(first), failed)
        report.fault = classify(plan, cache, golden.inputs, report.checks, candidates)
        localize(plan, cache, golden.inputs, report, first, work_dir)
    return cache


def localize(plan: JobPlan, cache: ArtifactCache, golden_inputs: Any, report: JobReport, first: int | None,
             work_dir: Path) -> None:
    """localize=all / source, or auto: the one the fault class calls for; on the first FAILing batch size (else
    the first that ran)."""
    kind = plan.localize
    if kind == "auto":
        fault = report.fault.fault_class if report.fault is not None else None
        kind = {"conversion": "source", "runtime": "all"}.get(fault or "", "none")
        if kind == "none":
            log.info("localize=auto: nothing to localise (%s)",
                     f"fault class {fault}: neither the conversion nor the runtime" if fault else "no FAIL")
    batch = report.fault.batch_size if report.fault is not None and report.fault.batch_size in cache.sizes else first
    if kind == "all":
        report.localization = run_localization(plan, cache, golden_inputs, batch, work_dir / "localize")
    elif kind == "source":
        report.localization = run_source_localization(plan, cache, golden_inputs, batch, work_dir / "localize")
    if report.localization is not None and report.localization.error is None:
        report.localization = write_overlay(report.localization, cache, batch, work_dir)


def auto_probes(framework: Any, model: Any, golden_inputs: Any, plan: JobPlan, batch: int) -> list[str]:
    """checks.probes=auto: the stage boundaries are the model's top-level children that ran once each and return
    a tensor (or a list of stage tensors, the last one the module's own output)."""
    feeds = inputs_mod.take(golden_inputs, dict(plan.input_axes), batch)
    calls, _ = framework.module_calls(model, feeds, plan.input_names)
    counts: dict[str, int] = {}
    for call in calls:
        counts[call.path] = counts.get(call.path, 0) + 1
    probes = [c.path for c in calls if "." not in c.path and counts[c.path] == 1 and c.probeable]
    if not probes:
        raise ModelError(f"checks.probes=auto: model '{plan.model.name}' has no top-level module that runs once")
    log.info("probes (auto): %s", ", ".join(probes))
    return probes


def bench(plan: JobPlan, report: JobReport, work_dir: Path, cache: ArtifactCache | None) -> None:
    """Latency per batch size (seed 004) on the artifacts the verify checked (`cache`), or on fresh ones when
    there is none (mode=bench, or a verify whose framework is not installed: the same reason then skips this);
    inputs are drawn from the declared specs, so any batch size runs and no golden is needed."""
    sizes = plan.bench_sizes(tuple(cache.sizes) if cache is not None else None)
    parity_verdict = report.checks_verdict()
    reason = cache.conversion.skip_reason if cache is not None else None
    if cache is None:  # mode=bench: no golden; export examples and calibration come from the input set
        framework = framework_for(plan.framework)
        model, reason = _build_if_available(plan, framework, report)
        if reason is None:
            conversion = build_conversion(plan, framework, sizes)
            report.describe(conversion)
            reason = conversion.skip_reason
        if reason is None:
            count = plan.inputs.num_samples or max(sizes)  # inputs from files: drawn anyway, any size runs
            samples = inputs_mod.generate(plan.model.inputs, count, plan.inputs.seed)
            cache = ArtifactCache(plan, conversion, framework, model, samples, sizes, work_dir, _source(report))
            report.exports = cache.records
    if reason is not None:
        report.bench = BenchReport(skip_reason=reason, parity_verdict=parity_verdict)
        log.info("bench skipped: %s", reason)
        return
    with numerics.applied(plan.numerics) as record:
        measured = run_bench(plan.bench, cache, sizes, plan.model.inputs)
    report.numerics = report.numerics or record
    measured = dataclasses.replace(measured, parity_verdict=parity_verdict, backend=cache.conversion.backend.name)
    title = f"{plan.model.name}: latency vs batch size"
    report.bench = with_plot(measured, cache.conversion, work_dir / "latency.png", title) if plan.bench.plot \
        else measured


def _build_if_available(plan: JobPlan, framework: Any, report: JobReport) -> tuple[Any, str | None]:
    """(the model, None), or (None, why it cannot run here): its framework or a package its builder imports is
    missing (parity.dependencies: the SKIP reason names what to install)."""
    reason = availability(framework)
    if reason is not None:
        return None, reason
    try:
        return _build(plan, framework, report), None
    except UnavailableError as exc:
        return None, str(exc)


def _source(report: JobReport) -> dict[str, Any]:
    """The built model's identity for the export cache: its weights' SHA-256 and the weights file's."""
    return {"weights_sha256": report.model.weights_sha256,
            "weights_file": (report.model.weights_file or {}).get("sha256")}


def _build(plan: JobPlan, framework: Any, report: JobReport) -> Any:
    log.info("building model %s (%s, seed %s)", plan.model.name, framework.name, plan.model.seed)
    model = framework.build(plan.model)
    report.model.weights_sha256 = framework.weights_sha256(model)
    # the file the weights came from: model.weights, or a SavedModel directory that is the model itself
    report.model.weights_file = file_record(plan.model.weights or (plan.model.path if plan.framework == "keras"
                                                                   else None))
    return model
