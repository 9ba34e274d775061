"""One job, top to bottom: config -> model -> golden -> export -> backend -> compare -> report."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

import parity
from parity import config as config_mod
from parity import inputs as inputs_mod
from parity.errors import ConfigError, ExportError, GoldenStaleError, ModelError, ParityError, one_line
from parity.golden import GoldenStore
from parity.report.schema import REPORT_SCHEMA, write_json
from parity.report.table import artifact_label, job_table
from parity.results import CheckResult, Verdict, exit_code, jsonable, overall

log = logging.getLogger("parity")


def preflight(cfg: Any) -> None:
    """Checks a schema cannot express: missing values, names, tolerances. Raises ConfigError (one line)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"missing mandatory value(s): {', '.join(missing)}")
    config_mod.validate(cfg)


def run_job(
    cfg: Any, output_dir: Path, start_dir: Path, overrides: list[str] | None = None, job_num: int | None = None
) -> tuple[dict[str, Any], int]:
    """Run one parity job and write its report. Never raises: every fault ends in the report.

    Returns (report, exit code): 0 all PASS/SKIP, 1 any FAIL, 2 any ERROR.
    """
    started = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / str(cfg.report.get("filename", "report.json"))).unlink(missing_ok=True)  # never report a stale one
    report = _empty_report(cfg, output_dir, overrides or [], job_num)
    try:
        preflight(cfg)
        root = Path(cfg.golden.root)
        store = GoldenStore(root if root.is_absolute() else start_dir / root, display_root=str(cfg.golden.root),
                            command_overrides=overrides)
        mode = str(getattr(cfg.mode, "value", cfg.mode))
        if mode == "golden":
            _make_golden(cfg, store, report)
        if mode in ("verify", "verify+bench"):
            _verify(cfg, store, output_dir, report)
        if mode in ("bench", "verify+bench"):
            _bench(cfg, output_dir, report)
    except ConfigError as exc:
        report["error"] = f"configuration error: {one_line(exc)}"
        log.error(report["error"])
    except ParityError as exc:
        report["error"] = one_line(exc)
        log.error(report["error"])
    except Exception as exc:  # a framework fault outside any check: still a report, never a crash
        report["error"] = f"unexpected {one_line(exc)}"
        log.exception("unexpected error")
    verdicts = [c["verdict"] for c in report["checks"]]
    for section in ("probes", "localization"):  # a requested diagnostic that could not run is an ERROR
        if report.get(section) and report[section].get("error"):
            verdicts.append(Verdict.ERROR)
    if report.get("bench"):
        bench = report["bench"]
        if bench.get("skip_reason"):
            verdicts.append(Verdict.SKIP)
        elif any(r["error"] for r in bench["results"]):
            verdicts.append(Verdict.ERROR)
        elif bench["results"]:
            verdicts.append(Verdict.PASS)
    if report["error"]:
        verdicts.append(Verdict.ERROR)
    elif report["mode"] == "golden" and report["golden"]["written"]:
        verdicts.append(Verdict.PASS)
    report["verdict"] = overall(verdicts).value
    backend_checks = [c["verdict"] for c in report["checks"] if c["check"] == "backend"]
    if report.get("bench") and report["bench"].get("skip_reason"):
        backend_checks.append("SKIP")
    if report["verdict"] == "PASS" and backend_checks and all(v == "SKIP" for v in backend_checks):
        report["verdict"] = "SKIP"  # the backend under test never ran: a passing reference alone is no PASS
    report["exit_code"] = exit_code(report["verdict"])
    report["seconds"] = time.perf_counter() - started
    report = jsonable(report)
    _emit(cfg, report, output_dir)
    return report, report["exit_code"]


def _emit(cfg: Any, report: dict[str, Any], output_dir: Path) -> None:
    """Write report.json (schema-validated) and print the table; a report breaking its schema is a loud ERROR."""
    if cfg.report.json:
        try:
            path = write_json(report, output_dir / cfg.report.filename, REPORT_SCHEMA)
            log.info("report: %s", path)
        except Exception as exc:  # a parity bug: say so loudly, keep the evidence, let a sweep go on
            bad = output_dir / f"{cfg.report.filename}.invalid"
            bad.write_text(json.dumps(report, indent=2, default=str))
            report["error"] = f"internal error: the report failed its schema ({one_line(exc)}); kept at {bad}"
            report["verdict"], report["exit_code"] = "ERROR", 2
            log.error(report["error"])
    if cfg.report.print_table:
        try:
            print(job_table(report, cfg.report.table_format), flush=True)
        except Exception as exc:
            log.error("could not print the table: %s", one_line(exc))
            print(f"{report['verdict']}  (table unavailable: {one_line(exc)})", flush=True)


# -- modes ------------------------------------------------------------------------------------------


def _make_golden(cfg: Any, store: GoldenStore, report: dict[str, Any]) -> None:
    """Reference = the model's own framework, eager, CPU, float32, deterministic, on all samples at once."""
    from parity.frameworks import framework_for

    model_name, input_set = cfg.model.name, cfg.inputs.name
    framework = framework_for(cfg.model.framework)
    report["exporter"] = None  # the golden's reference is the eager source model: no exporter or backend runs
    report["transform"] = None
    report["backend"].update(name=f"{framework.reference_backend} (reference)", accepts=framework.name,
                             available=True)
    store.check_writable(model_name, input_set, cfg.golden.overwrite)
    framework.require()  # a golden cannot be made without its framework: an ERROR naming what to install
    log.info("building model %s (%s, seed %s)", model_name, framework.name, cfg.model.seed)
    module = framework.build(cfg.model)
    weights = framework.weights_sha256(module)
    report["model"]["weights_sha256"] = weights
    feeds = inputs_mod.generate(cfg.model.inputs, int(cfg.inputs.num_samples), int(cfg.inputs.seed))
    log.info("running the %s reference on %d samples", framework.name, cfg.inputs.num_samples)
    outputs = framework.run(module, feeds, _input_names(cfg), _output_names(cfg))
    _check_reference_outputs(cfg, outputs, int(cfg.inputs.num_samples))
    manifest = {
        "num_samples": int(cfg.inputs.num_samples),
        "weights_sha256": weights,
        "input_batch_axes": {s.name: inputs_mod.batch_axis(s.shape) for s in cfg.model.inputs},
        "reference": {"framework": framework.name, **framework.reference_info()},
        "config": {
            "model": OmegaConf.to_container(cfg.model, resolve=True, enum_to_str=True),
            "inputs": OmegaConf.to_container(cfg.inputs, resolve=True, enum_to_str=True),
        },
        "environment": environment(),
        "created": _now(),
    }
    path = store.write(model_name, input_set, feeds, outputs, manifest, overwrite=cfg.golden.overwrite)
    log.info("golden written: %s", path)
    golden = store.load(model_name, input_set)  # read back: what was written must verify
    report["golden"].update(
        path=str(path), num_samples=golden.num_samples, created=golden.manifest["created"],
        weights_sha256=weights, written=True,
    )


def _verify(cfg: Any, store: GoldenStore, output_dir: Path, report: dict[str, Any]) -> None:
    from parity.artifact import Artifact
    from parity.frameworks import framework_for

    model_name, input_set = cfg.model.name, cfg.inputs.name
    golden = store.load(model_name, input_set)
    report["golden"].update(
        path=str(golden.path), num_samples=golden.num_samples, created=golden.manifest.get("created"),
        weights_sha256=golden.manifest.get("weights_sha256"),
    )
    sizes = config_mod.batch_sizes(cfg) if cfg.inputs.batch_sizes else [golden.num_samples]
    framework = framework_for(cfg.model.framework)
    unavailable = _availability(framework)
    if unavailable is not None:  # e.g. a keras model without the `tf` extra: nothing can run here
        log.info("%s is unavailable: %s", framework.name, unavailable)
        report["backend"]["available"], report["backend"]["skip_reason"] = False, unavailable
        for b in sizes:
            for check in ("reference", "backend"):
                report["checks"].append(CheckResult(check, b, Verdict.SKIP, unavailable).to_dict())
        return
    log.info("building model %s (%s, seed %s)", model_name, framework.name, cfg.model.seed)
    module = framework.build(cfg.model)
    weights = framework.weights_sha256(module)
    report["model"]["weights_sha256"] = weights
    regenerate = store.command(model_name, input_set, overwrite=True)
    if weights != golden.manifest.get("weights_sha256"):
        raise GoldenStaleError(
            f"golden is stale: weights changed (golden {str(golden.manifest.get('weights_sha256'))[:12]}…, "
            f"model now {weights[:12]}…); if the change is intended, regenerate with: {regenerate}"
        )
    names, outs = _input_names(cfg), _output_names(cfg)
    _check_golden_matches(cfg, golden.inputs, golden.outputs, golden.num_samples, regenerate)
    too_big = [b for b in sizes if b > golden.num_samples]
    if too_big:
        raise ConfigError(f"batch size(s) {too_big} exceed the golden's {golden.num_samples} samples")
    axes = {s.name: inputs_mod.batch_axis(s.shape) for s in cfg.model.inputs}
    out_axes = {s.name: s.batch_axis for s in cfg.model.outputs}

    from parity import numerics as numerics_mod

    backend, exporter, transform, reason = _conversion(cfg, framework, sizes, report)
    native = backend.accepts != "onnx"  # runs the source model itself: nothing is exported
    # a transform's preset (int8, fp16) judges the transformed artifact; the live framework against its own golden
    # keeps fp32 tolerances, or framework drift would hide behind the looser preset
    reference_tolerance = cfg.tolerance if transform.identity else _fp32_tolerance(cfg.tolerance)

    def make_artifact(b: int, key: int | None, probed: bool = False) -> Artifact:
        """The runnable model for batch size b: the live module, or an (optionally probed) ONNX export."""
        if probed:  # torch forward hooks: imported only when probes run (keras jobs need no torch)
            from parity.diagnostics.torch_hooks import ProbedModule, probe_output_name
        probe_names = [probe_output_name(p) for p in cfg.model.probes] if probed else []
        model = ProbedModule(module, cfg.model.probes) if probed else module
        all_outs = outs + probe_names
        if native:
            return Artifact(kind=framework.name, input_names=names, output_names=all_outs, module=model,
                            input_axes=axes)
        example = inputs_mod.take(golden.inputs, axes, b) if key is not None else _example(golden.inputs, axes, sizes)
        example = {n: example[n] for n in names}  # positional binding follows the declared order
        tag = f"{exporter.name}{'-probed' if probed else ''}{'' if key is None else f'-b{b}'}"
        log.info("exporting with %s%s%s", exporter.name, " (with probes)" if probed else "",
                 "" if key is None else f" at batch {b}")
        artifact = _export(exporter, transform, model, example, axes, all_outs, output_dir / "artifacts" / tag, b,
                           {**out_axes, **{n: 0 for n in probe_names}}, golden.inputs)
        report["exports"].append(artifact.record.to_dict())
        return artifact

    artifacts: dict[int | None, Artifact] = {}
    candidates: dict[int, dict[str, np.ndarray]] = {}
    loaded_key: Any = "none"
    stack = contextlib.ExitStack()
    try:
        report["numerics"] = stack.enter_context(numerics_mod.applied(cfg.numerics))  # restored in `finally`
        for b in sizes:
            feeds = inputs_mod.take(golden.inputs, axes, b)
            expected = inputs_mod.take(golden.outputs, out_axes, b)
            # 1. the live reference against the golden: did the framework drift?
            t0 = time.perf_counter()
            try:
                live = framework.run(module, feeds, names, outs)
                report["checks"].append(_compare_check(cfg, "reference", b, expected, live, time.perf_counter() - t0,
                                                       reference_tolerance))
            except ParityError as exc:
                report["checks"].append(_error_check("reference", b, exc))
            log.info("b=%d reference: %s", b, report["checks"][-1]["verdict"])
            # 2. the converted model on the backend against the golden: is the conversion right?
            if reason is not None:
                report["checks"].append(CheckResult("backend", b, Verdict.SKIP, reason).to_dict())
                continue
            key = None if native or exporter.dynamic_batch else b
            if key not in artifacts:
                artifacts[key] = make_artifact(b, key)
            artifact = artifacts[key]
            if artifact.kind == "onnx" and artifact.record.failure():
                report["checks"].append(CheckResult("backend", b, Verdict.ERROR, artifact.record.failure()).to_dict())
                continue
            t0 = time.perf_counter()
            try:
                if loaded_key != key:
                    backend.close()
                    log.info("loading on %s", backend.name)
                    backend.load(artifact)
                    loaded_key = key
                    report["backend"]["runtime"] = backend.runtime_info()
                candidate = backend.infer(feeds)
                report["checks"].append(
                    _compare_check(cfg, "backend", b, expected, candidate, time.perf_counter() - t0)
                )
                candidates[b] = candidate
                if cfg.checks.repeats > 1:
                    report["determinism"].append(_determinism(backend, feeds, candidate, b, cfg.checks.repeats))
            except ParityError as exc:
                loaded_key = "none"
                report["checks"].append(_error_check("backend", b, exc))
            log.info("b=%d backend %s: %s", b, backend.name, report["checks"][-1]["verdict"])
        if cfg.report.save_outputs:
            for b, candidate in candidates.items():
                np.savez_compressed(output_dir / f"candidates_b{b}.npz", **candidate)
        first = next(iter(candidates), None)
        if cfg.checks.probes:
            backend.close()
            loaded_key = "none"
            report["probes"] = _probes(cfg, module, backend, make_artifact, golden.inputs, axes, names, outs, first,
                                       None if native or exporter.dynamic_batch else first,
                                       candidates.get(first))
        if str(getattr(cfg.localize, "value", cfg.localize)) == "all":
            backend.close()
            report["localization"] = _localization(cfg, backend, artifacts, golden.inputs, axes, first, output_dir,
                                                   None if native or exporter.dynamic_batch
                                                   else first)
    finally:
        backend.close()
        stack.close()


def _bench(cfg: Any, output_dir: Path, report: dict[str, Any]) -> None:
    """Latency per batch size on the configured backend (seed 004); inputs generated from the declared specs."""
    from parity import numerics as numerics_mod
    from parity.artifact import Artifact
    from parity.bench import plot_latency, run_bench
    from parity.frameworks import framework_for

    sizes = list(cfg.bench.batch_sizes or cfg.inputs.batch_sizes or [int(cfg.inputs.num_samples)])
    verified = [c["verdict"] for c in report["checks"]]
    parity_verdict = overall(verified).value if verified else None
    framework = framework_for(cfg.model.framework)
    reason = _availability(framework)
    backend = exporter = transform = None
    if reason is None:
        backend, exporter, transform, reason = _conversion(cfg, framework, sizes, report, record_backend=False)
    if reason is not None:
        report["bench"] = {"skip_reason": reason, "results": [], "parity_verdict": parity_verdict}
        log.info("bench skipped: %s", reason)
        return
    module = framework.build(cfg.model)
    report["model"]["weights_sha256"] = framework.weights_sha256(module)
    names, outs = _input_names(cfg), _output_names(cfg)
    axes = {s.name: inputs_mod.batch_axis(s.shape) for s in cfg.model.inputs}
    out_axes = {s.name: s.batch_axis for s in cfg.model.outputs}
    cache: dict[int | None, Artifact] = {}
    # a calibrated transform sees the input set's samples (the golden's inputs), as in verify, not the bench inputs
    calibration = inputs_mod.generate(cfg.model.inputs, int(cfg.inputs.num_samples), int(cfg.inputs.seed))

    def artifact_for(b: int) -> Artifact:
        if exporter is None:
            key: int | None = None
            if key not in cache:
                cache[key] = Artifact(kind=framework.name, input_names=names, output_names=outs, module=module,
                                      input_axes=axes)
            return cache[key]
        key = None if exporter.dynamic_batch else b
        if key not in cache:
            example = inputs_mod.generate(cfg.model.inputs, max(2, b) if key is None else b, int(cfg.bench.seed))
            tag = f"bench-{exporter.name}" + ("" if key is None else f"-b{b}")
            artifact = _export(exporter, transform, module, {n: example[n] for n in names}, axes, outs,
                               output_dir / "artifacts" / tag, b, out_axes, calibration)
            report["exports"].append(artifact.record.to_dict())
            cache[key] = artifact
        artifact = cache[key]
        if artifact.record.failure():
            raise ExportError(artifact.record.failure())
        return artifact

    with numerics_mod.applied(cfg.numerics) as numerics_record:
        record = run_bench(cfg, backend, artifact_for, sizes)
    report["numerics"] = report.get("numerics") or numerics_record
    record["parity_verdict"] = parity_verdict
    record["skip_reason"] = None
    record["backend"] = backend.name
    if cfg.bench.plot and any(r["error"] is None for r in record["results"]):
        try:
            label = f"{artifact_label(exporter.name, transform.name)}×{backend.name}" if exporter else backend.name
            record["plot"] = str(plot_latency({label: record["results"]}, output_dir / "latency.png",
                                              f"{cfg.model.name}: latency vs batch size"))
        except Exception as exc:  # matplotlib missing or broken: the numbers still stand
            record["plot_error"] = one_line(exc)
            log.warning("no latency plot: %s", record["plot_error"])
    report["bench"] = record


_EXPORTERS_FOR = {"torch": "dynamo, torchscript, jit_trace", "keras": "tf2onnx, keras_export"}


def _conversion(cfg: Any, framework: Any, sizes: list[int], report: dict[str, Any],
                record_backend: bool = True) -> tuple[Any, Any, Any, str | None]:
    """Instantiate the backend, and the exporter and transform an ONNX backend needs.

    Returns (backend, exporter, transform, skip reason). The reason is set when something cannot run here: the
    backend, exporter or transform is not installed, or a native backend cannot run this framework's model.
    A mismatch the user chose (a torch exporter for a keras model) is a ConfigError.
    """
    from hydra.utils import instantiate

    from parity import numerics as numerics_mod

    try:
        backend = instantiate(cfg.backend, **numerics_mod.backend_overrides(cfg.numerics, cfg.backend),
                              _convert_="all")
    except Exception as exc:
        raise ConfigError(f"backend '{cfg.backend.get('name')}': {one_line(exc.__cause__ or exc)}") from exc
    try:
        transform = instantiate(cfg.transform, _convert_="all")
    except Exception as exc:
        raise ConfigError(f"transform '{cfg.transform.get('name')}': {one_line(exc.__cause__ or exc)}") from exc
    native = backend.accepts != "onnx"
    backend.plan({s.name: list(s.shape) for s in cfg.model.inputs}, sizes)
    reason = _availability(backend)
    if reason is None and native and backend.accepts != framework.name:
        reason = f"backend '{backend.name}' runs {backend.accepts} models; model '{cfg.model.name}' is a " \
                 f"{framework.name} model"
    if reason is None and native and not transform.identity:
        reason = f"transform '{transform.name}' applies to ONNX artifacts; backend '{backend.name}' runs the " \
                 f"{framework.name} model itself"
    exporter = None
    if native:
        report["exporter"] = None  # eager: nothing is exported (a transform asked for is kept: it is the SKIP's cause)
    elif reason is None:
        try:
            exporter = instantiate(cfg.exporter, **numerics_mod.exporter_overrides(cfg.numerics, cfg.exporter),
                                   _convert_="all")
        except Exception as exc:
            raise ConfigError(f"exporter '{cfg.exporter.get('name')}': {one_line(exc.__cause__ or exc)}") from exc
        if exporter.source != framework.name:
            raise ConfigError(f"exporter '{exporter.name}' takes {exporter.source} models but model "
                              f"'{cfg.model.name}' is a {framework.name} model (exporters for it: "
                              f"{_EXPORTERS_FOR.get(framework.name, '?')})")
        for part, what in ((exporter, "exporter"), (transform, "transform")):
            why = _availability(part)
            if why is not None:
                reason = f"{what} '{part.name}' cannot run here: {why}"
                break
    if record_backend:
        report["backend"]["accepts"] = backend.accepts
        report["backend"]["available"] = reason is None
        report["backend"]["skip_reason"] = reason
    return backend, exporter, transform, reason


def _availability(part: Any) -> str | None:
    """`part.availability()`; a check that itself crashes (a half-installed library) is a reason too, not a crash."""
    try:
        return part.availability()
    except Exception as exc:
        return f"availability check failed: {one_line(exc)}"


def _export(exporter: Any, transform: Any, model: Any, example: dict[str, np.ndarray], axes: dict[str, int],
            outs: list[str], out_dir: Path, b: int, out_axes: dict[str, int | None],
            calibration: dict[str, np.ndarray]) -> Any:
    """Export, then apply the post-export transform (calibrated on `calibration` where it needs data)."""
    artifact = exporter.export(model, example, axes, outs, out_dir, b, output_axes=out_axes)
    if artifact.record.ok:
        log.info("exported %s (sha256 %s…, %.1fs)", artifact.path, artifact.record.sha256[:12],
                 artifact.record.seconds)
    return transform.apply(artifact, calibration, out_dir.with_name(f"{out_dir.name}-{transform.name}"))


def _determinism(backend: Any, feeds: dict[str, np.ndarray], first: dict[str, np.ndarray], b: int,
                 repeats: int) -> dict[str, Any]:
    """Run the backend `repeats - 1` more times on the same inputs; bitwise identical, or the max difference."""
    per_output = {name: 0.0 for name in first}
    identical = True
    for _ in range(repeats - 1):
        again = backend.infer(feeds)
        for name, value in first.items():
            if not np.array_equal(value, again[name], equal_nan=True):
                identical = False
                diff = np.abs(value.astype(np.float64) - again[name].astype(np.float64))
                per_output[name] = max(per_output[name], float(np.nanmax(diff)) if diff.size else 0.0)
    log.info("b=%d determinism over %d runs: %s", b, repeats, "bitwise identical" if identical else
             f"max run-to-run diff {max(per_output.values()):.3g}")
    return {"batch_size": b, "repeats": repeats, "bitwise_identical": identical,
            "max_abs_diff": max(per_output.values(), default=0.0), "per_output": per_output}


def _probes(cfg: Any, module: Any, backend: Any, make_artifact: Any, golden_inputs: dict[str, np.ndarray],
            axes: dict[str, int], names: list[str], outs: list[str], b: int | None, key: int | None,
            main_candidate: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """Probe tensors from torch hooks (reference) vs the probed artifact on the backend, in forward order."""
    from parity.compare import error_metrics, tolerance_for, within
    from parity.diagnostics.torch_hooks import probe_output_name, run_with_probes

    record: dict[str, Any] = {"batch_size": b, "probes": [], "first_exceeding": None, "side_effect_max_abs": None,
                              "side_effect_ok": None, "error": None}
    if b is None or main_candidate is None:
        record["error"] = "no batch size ran on the backend, so there is nothing to localise"
        return record
    feeds = inputs_mod.take(golden_inputs, axes, b)
    try:
        reference = run_with_probes(module, feeds, names, cfg.model.probes)
        artifact = make_artifact(b, key, probed=True)
        if artifact.kind == "onnx" and artifact.record.failure():
            raise ExportError(f"probed artifact: {artifact.record.failure()}")
        backend.load(artifact)
        probed = backend.infer(feeds)
    except ParityError as exc:
        record["error"] = one_line(exc)
        return record
    finally:
        backend.close()
    # the probes must not change the main outputs (extra graph outputs can block fusions)
    side = max((float(np.max(np.abs(probed[o].astype(np.float64) - main_candidate[o].astype(np.float64))))
                for o in outs if probed[o].size), default=0.0)
    tol_main = min(tolerance_for(cfg.tolerance, o).atol for o in outs)
    record["side_effect_max_abs"] = side
    record["side_effect_ok"] = side <= tol_main
    previous = None
    for path in reference:  # in the order the modules ran, whatever order the config lists them in
        ref, cand = reference[path], probed[probe_output_name(path)]
        tol = tolerance_for(cfg.tolerance, path)  # probes may have per_output entries too
        if ref.shape != cand.shape:
            entry = {"name": path, "shape": list(ref.shape), "max_abs": None, "mean_abs": None, "l2_rel": None,
                     "amplification": None, "within_tolerance": False,
                     "message": f"shape {list(ref.shape)} vs {list(cand.shape)}"}
        else:
            m = error_metrics(ref, cand, tol.atol, tol.rtol)
            amplification = (m["max_abs"] / previous) if previous else None
            previous = m["max_abs"] or None
            entry = {"name": path, "shape": list(ref.shape), "max_abs": m["max_abs"], "mean_abs": m["mean_abs"],
                     "l2_rel": m["l2_rel"], "amplification": amplification,
                     "within_tolerance": within(m, tol), "message": ""}
        record["probes"].append(entry)
        if not entry["within_tolerance"] and record["first_exceeding"] is None:
            record["first_exceeding"] = path
    log.info("probes: first exceeding tolerance: %s", record["first_exceeding"] or "none")
    return record


def _localization(cfg: Any, backend: Any, artifacts: dict[int | None, Any], golden_inputs: dict[str, np.ndarray],
                  axes: dict[str, int], b: int | None, output_dir: Path, key: int | None) -> dict[str, Any]:
    """localize=all against ORT CPU with graph optimisations off, on the first batch size that ran."""
    from parity.backends.onnxruntime import OrtBackend
    from parity.compare import tolerance_for
    from parity.localize import localize

    artifact = artifacts.get(key)
    if backend.accepts != "onnx" or artifact is None or artifact.kind != "onnx" or artifact.record.failure() or b is None:
        return {"error": "localize=all needs an ONNX backend whose export and first run succeeded", "first_divergent": None}
    tol = tolerance_for(cfg.tolerance, "")  # the tolerance option's defaults
    try:
        return {**localize(artifact, inputs_mod.take(golden_inputs, axes, b),
                           lambda: OrtBackend(name="ort_cpu_noopt", graph_optimization_level="disable_all"),
                           backend, tol.atol, tol.rtol, int(cfg.checks.localize_chunk), output_dir / "localize"),
                "batch_size": b, "error": None}
    except ParityError as exc:
        return {"error": one_line(exc), "first_divergent": None, "batch_size": b}


# -- helpers ----------------------------------------------------------------------------------------


def _compare_check(
    cfg: Any, check: str, batch: int, expected: dict[str, np.ndarray], candidate: dict[str, np.ndarray], seconds: float,
    tolerance: Any = None,
) -> dict[str, Any]:
    from parity.compare import compare_output, tolerance_for
    from parity.config import OutputKind

    results = []
    for spec in cfg.model.outputs:
        if spec.name not in candidate:
            return CheckResult(check, batch, Verdict.ERROR, f"output '{spec.name}' missing from the candidate").to_dict()
        results.append(
            compare_output(spec.name, expected[spec.name], candidate[spec.name],
                           tolerance_for(cfg.tolerance if tolerance is None else tolerance, spec.name),
                           OutputKind(spec.kind))
        )
    verdict = overall(r.verdict for r in results)
    failing = [r.name for r in results if r.verdict is not Verdict.PASS]
    message = "all outputs within tolerance" if not failing else f"outside tolerance: {', '.join(failing)}"
    return CheckResult(check, batch, verdict, message, tuple(results), seconds).to_dict()


def _fp32_tolerance(tol_cfg: Any) -> Any:
    """The schema's fp32 defaults (the `default` preset's values) with the job's per-output entries."""
    from parity.config import ToleranceConfig

    base = OmegaConf.structured(ToleranceConfig(name="default"))
    base.per_output = tol_cfg.per_output
    return base


def _error_check(check: str, batch: int, exc: BaseException) -> dict[str, Any]:
    return CheckResult(check, batch, Verdict.ERROR, one_line(exc)).to_dict()


def _check_reference_outputs(cfg: Any, outputs: dict[str, np.ndarray], num_samples: int) -> None:
    """A golden holds finite values, and every batched output has num_samples along its batch axis."""
    for spec in cfg.model.outputs:
        array = outputs[spec.name]
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array))) if array.dtype.kind in "fc" else 0
        if bad:
            raise ModelError(f"reference output '{spec.name}' has {bad} NaN/Inf value(s); a golden must be finite")
        axis = spec.batch_axis
        if axis is not None and (array.ndim <= axis or array.shape[axis] != num_samples):
            raise ConfigError(
                f"output '{spec.name}' has shape {list(array.shape)}: axis {axis} is not the batch of {num_samples}; "
                f"set its batch_axis (null if it has none)"
            )


def _check_golden_matches(cfg: Any, golden_inputs: dict[str, np.ndarray], golden_outputs: dict[str, np.ndarray],
                          num_samples: int, regenerate: str) -> None:
    """The golden must hold exactly the inputs and outputs the model config declares now."""
    declared_in = {s.name: (inputs_mod.concrete_shape(s.shape, num_samples), s.dtype) for s in cfg.model.inputs}
    stored_in = {k: (tuple(v.shape), str(v.dtype)) for k, v in golden_inputs.items()}
    if declared_in != stored_in:
        raise GoldenStaleError(
            f"golden is stale: declared inputs {declared_in} differ from the stored {stored_in}; "
            f"regenerate with: {regenerate}"
        )
    if set(_output_names(cfg)) != set(golden_outputs):
        raise GoldenStaleError(
            f"golden is stale: declared outputs {_output_names(cfg)} differ from the stored {sorted(golden_outputs)}; "
            f"regenerate with: {regenerate}"
        )


def _example(golden_inputs: dict[str, np.ndarray], axes: dict[str, int], sizes: list[int]) -> dict[str, np.ndarray]:
    """Example for a dynamic-batch export: at least 2 samples (repeated if the golden has 1), so the
    exporter does not specialise the batch axis to a constant."""
    available = next(iter(golden_inputs.values())).shape[next(iter(axes.values()))] if golden_inputs else 1
    count = max(2, min(available, max(sizes)))
    if available >= count:
        return inputs_mod.take(golden_inputs, axes, count)
    return inputs_mod.repeat_to(golden_inputs, axes, count)


def _framework_name(cfg: Any) -> str | None:
    return config_mod.framework_name(cfg.model) if cfg.get("model") is not None else None


def _input_names(cfg: Any) -> list[str]:
    return [s.name for s in cfg.model.inputs]


def _output_names(cfg: Any) -> list[str]:
    return [s.name for s in cfg.model.outputs]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def environment() -> dict[str, str]:
    """Versions of everything that can change a result, for reports and golden manifests."""
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "parity": parity.__version__,
    }
    from importlib.metadata import PackageNotFoundError, version

    for module, distributions in _VERSIONED.items():
        mod = sys.modules.get(module)
        if mod is not None:
            env[module] = str(getattr(mod, "__version__", "unknown"))
            continue
        for dist in distributions:  # not imported by this job: what is installed
            try:
                env[module] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return env


# module -> the distributions that may provide it (onnxruntime-gpu provides onnxruntime, tensorflow-cpu tensorflow)
_VERSIONED = {
    "torch": ("torch",), "onnx": ("onnx",), "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "onnxscript": ("onnxscript",), "tensorflow": ("tensorflow", "tensorflow-cpu"), "keras": ("keras",),
    "tf2onnx": ("tf2onnx",), "openvino": ("openvino",), "tensorrt": ("tensorrt",), "polygraphy": ("polygraphy",),
}


def _empty_report(cfg: Any, output_dir: Path, overrides: list[str], job_num: int | None) -> dict[str, Any]:
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except Exception as exc:  # an unresolvable interpolation: keep the raw config
        resolved = {"unresolved": OmegaConf.to_container(cfg, resolve=False, enum_to_str=True), "error": str(exc)}
    mode = cfg.get("mode", "verify")
    return {
        "schema": "parity.report/v1",
        "parity_version": parity.__version__,
        "created": _now(),
        "mode": mode.value if hasattr(mode, "value") else str(mode),
        "verdict": "ERROR",
        "exit_code": 2,
        "error": None,
        "job": {"output_dir": str(output_dir), "overrides": list(overrides), "num": job_num},
        "model": {"name": cfg.model.get("name"), "framework": _framework_name(cfg), "weights_sha256": None},
        "exporter": cfg.exporter.get("name") if cfg.get("exporter") is not None else None,
        "transform": cfg.transform.get("name") if cfg.get("transform") is not None else None,
        "backend": {"name": cfg.backend.get("name"), "accepts": None, "available": None, "skip_reason": None,
                    "runtime": {}},
        "golden": {"path": None, "input_set": cfg.inputs.get("name"), "num_samples": None, "created": None,
                   "weights_sha256": None, "written": False},
        "exports": [],
        "checks": [],
        "determinism": [],
        "probes": None,
        "localization": None,
        "numerics": None,
        "bench": None,
        "config": resolved,
        "environment": environment(),
        "seconds": 0.0,
    }
