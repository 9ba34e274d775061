"""A sweep's report from its jobs' reports: the combined rows, the exporter × backend pivot (seed 001), the
pairwise matrix between backends and the golden (seed 002), the latency comparison (seed 004); and the thin
Hydra callback that builds it after a multirun and hands it to the report writers."""

from __future__ import annotations

import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from parity.report.model import SweepJob, SweepReport, SweepRow, artifact_label, column, rows_of
from parity.results import Verdict

log = logging.getLogger("parity")


class AggregateCallback(Callback):
    """Collects each job's report; a job that left none counts as ERROR with its exception.

    With the basic launcher every callback runs in this process and the reports arrive in memory. Launchers that
    run jobs elsewhere (joblib's processes, Ray, Submitit) call on_job_start / on_job_end there: the sweep is then
    aggregated from the reports in the sweep directory, which every host must see, against the list of jobs the
    sweep launches (`expected`), so a job that died without a report is an ERROR row all the same.
    """

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.total: int | None = None
        self.started = time.monotonic()
        self.expected: list[list[str]] | None = None
        self.config: DictConfig | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _ACTIVE
        self.expected = expected_jobs(config)
        self.total = len(self.expected) if self.expected is not None else sweep_size(config)
        self.started, self.config = time.monotonic(), config
        _ACTIVE = self

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        from parity.progress import job_line

        try:
            hc = HydraConfig.get()
        except ValueError:
            return
        if hc.mode is not None and str(hc.mode).endswith("MULTIRUN"):
            num = hc.job.get("num")
            done = num if isinstance(num, int) else len(self.jobs)  # in a launcher's worker, self.jobs is empty
            log.info("%s", job_line(done, self.total, self.started, " ".join(hc.overrides.task)))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        try:
            hc = HydraConfig.get()
            output_dir, num = hc.runtime.output_dir, hc.job.get("num")
        except ValueError:  # not inside a Hydra job
            return
        error, report = None, None
        status = getattr(job_return, "status", None)
        value = getattr(job_return, "_return_value", None)
        if status is not None and status.name == "FAILED":
            error = f"job raised: {value!r}"
        elif isinstance(value, dict) and value:
            report = value  # in memory: works without report.json, never a stale file
        self.jobs.append({"output_dir": str(output_dir), "num": num, "report_data": report,
                          "overrides": list(getattr(job_return, "overrides", None) or []), "error": error})

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.finish(config)

    def finish(self, config: DictConfig, failure: str | None = None) -> None:
        """Aggregate, write the sweep's report, record its exit code. `failure`: why the launcher stopped early
        (then the jobs without a report say so)."""
        from parity.plan import report_settings
        from parity.report import outcome
        from parity.report.formats import write_sweep

        global _ACTIVE
        _ACTIVE = None
        settings = report_settings(config)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep = aggregate(sweep_dir, settings.filename, self.jobs, self.expected, failure)
        outcome.record_sweep(sweep.exit_code)  # first: whatever a writer does, the process exits with it
        sweep.retention = apply_retention(sweep)
        if not write_sweep(sweep, settings, sweep_dir):
            outcome.record_sweep(2)  # a report that failed its schema, or a format that failed: an ERROR


_ACTIVE: AggregateCallback | None = None  # a sweep that started and has not been aggregated yet


def finish_failed_sweep(exc: BaseException) -> bool:
    """After the launcher raised (a worker process killed, a Ray node lost, a Slurm job cancelled): aggregate
    what the jobs left, every job without a report an ERROR row naming the failure. False when no sweep was
    running (the exception is not a launcher's)."""
    from parity.errors import one_line
    from parity.report import outcome

    active = _ACTIVE
    if active is None or active.config is None:
        return False
    failure = one_line(exc)
    log.error("the launcher stopped the sweep: %s", failure)
    active.finish(active.config, failure)
    outcome.record_sweep(2)  # even where every job left a report: the launcher did not finish
    return True


def expected_jobs(config: DictConfig) -> list[list[str]] | None:
    """The overrides of every job the basic sweeper launches, in job-number order (command-line sweeps and
    hydra.sweeper.params, as BasicSweeper splits them); None for another sweeper, whose jobs cannot be told."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        if not str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
            return None
        batches = BasicSweeper.split_arguments(_parsed(_sweep_words(config)), None)
        return [list(job) for batch in batches for job in batch]
    except Exception:
        return None


def _sweep_words(config: DictConfig) -> list[str]:
    """The overrides the basic sweeper expands, in its order: hydra.sweeper.params first, then the command line's
    (which win where both set a key)."""
    params = config.hydra.sweeper.get("params") or {}
    return [*(f"{k}={v}" for k, v in params.items()), *config.hydra.overrides.task]


def _parsed(words: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(words)


def sweep_size(config: DictConfig) -> int | None:
    """How many jobs the basic sweeper will launch: the product of the sweep overrides' lengths (command line and
    hydra.sweeper.params); None where that cannot be told (another sweeper, a range it cannot count)."""
    try:
        total = 1
        for override in _parsed(_sweep_words(config)):
            if override.is_sweep_override():
                total *= len(list(override.sweep_string_iterator()))
        return total
    except Exception:
        return None


def aggregate(sweep_dir: Path, filename: str, jobs: list[dict[str, Any]], expected: list[list[str]] | None = None,
              failure: str | None = None) -> SweepReport:
    """The sweep report from the jobs (their reports in memory, else read from disk; found on disk when `jobs`
    is empty). `expected`: every job's overrides by number; a job with no report (none in memory, none in
    `sweep_dir` newer than the sweep) is an ERROR row "no report", with `failure` (why the launcher stopped) if any."""
    if not jobs:
        jobs = _on_disk(sweep_dir, filename)
    if expected is not None:
        have = {j["num"] for j in jobs}
        for num, overrides in enumerate(expected):
            if num in have:
                continue
            found = sorted(sweep_dir.glob(f"{num}-*"), key=_mtime)  # the newest: an earlier sweep's may be there
            where = found[-1] if found else sweep_dir
            error = (f"no report: job {num} ended without writing {where / filename if found else filename} "
                     f"(killed, out of memory, or never started{'; see its parity.log' if found else ''})")
            jobs.append({"output_dir": str(where), "num": num, "overrides": list(overrides),
                         "error": f"{error}; the launcher stopped the sweep: {failure}" if failure else error})
    entries, rows, sources, reports = [], [], [], []
    variants = _variants(jobs)
    for job in sorted(jobs, key=lambda j: (j["num"] is None, j["num"] or 0, j["output_dir"])):
        path = Path(job["output_dir"]) / filename
        report, error = _report_of(job, path)
        reports.append(report)
        if report is None:
            entries.append(SweepJob(job["num"], job["output_dir"], tuple(job["overrides"]), None, Verdict.ERROR, 2,
                                    error))
            rows.append(SweepRow(job=job["num"], model=None, exporter=None, backend=None, verdict=Verdict.ERROR,
                                 message=error or ""))
            continue
        num = job["num"] if job["num"] is not None else report["job"].get("num")
        entries.append(SweepJob(num, job["output_dir"], tuple(job["overrides"] or report["job"]["overrides"]),
                                str(path) if path.is_file() else None, Verdict(report["verdict"]),
                                report["exit_code"], report["error"]))
        variant = variants.get(id(job), "")
        rows.extend(rows_of(report, num, variant))
        sources.append({"variant": variant, "report": report,
                        "exporter": artifact_label(report["exporter"], report.get("transform"))})
    return SweepReport(sweep_dir=str(sweep_dir), jobs=entries, rows=rows, pivot=pivot(rows),
                       pairwise=pairwise(sources), bench=bench_comparison(sources, sweep_dir), reports=reports)


def _on_disk(sweep_dir: Path, filename: str) -> list[dict[str, Any]]:
    """The jobs whose reports lie under `sweep_dir` (at any depth: hydra.sweep.subdir may nest), numbered as their
    reports say. Reports older than this sweep's multirun.yaml, which the sweeper writes before launching (an
    earlier sweep's, into the same directory), are left out: both times come from the file system's clock, so
    hosts whose clocks differ agree."""
    marker = sweep_dir / "multirun.yaml"
    cutoff = _mtime(marker) - 2.0 if marker.is_file() else None  # 2 s: file systems with coarse timestamps
    jobs = []
    for path in sorted(sweep_dir.rglob(filename)):
        if path.parent == sweep_dir or (cutoff is not None and _mtime(path) < cutoff):
            continue
        try:
            report = json.loads(path.read_text())
            num = report["job"].get("num")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            report, num = None, None
        jobs.append({"output_dir": str(path.parent), "num": num, "overrides": [], "error": None,
                     "report_data": report})
    return jobs


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def apply_retention(sweep: SweepReport) -> list[dict[str, Any]]:
    """report.keep_artifacts for every job of a finished sweep (each job's own setting, as its report records
    it), once its tables are built; what was removed per job."""
    from parity import retention

    done = []
    for job, report in zip(sweep.jobs, sweep.reports):
        if report is None:  # no report, no verdict to keep by: left as it is
            continue
        policy = (report.get("retention") or {}).get("policy", "all")  # a job without a record kept everything
        if policy == "all":
            continue
        removed = retention.apply(policy, job.verdict.value, Path(job.output_dir))
        done.append({"job": job.num, "output_dir": job.output_dir, "policy": policy,
                     **({"removed": [], "freed_bytes": 0} if removed is None else
                        {"removed": removed["removed"], "freed_bytes": removed["freed_bytes"]})})
    freed = sum(d["freed_bytes"] for d in done)
    if done:
        log.info("keep_artifacts: removed %d file(s) or folder(s) from %d job(s), %.1f MB freed",
                 sum(len(d["removed"]) for d in done), sum(1 for d in done if d["removed"]), freed / 1e6)
    return done


def _report_of(job: dict[str, Any], path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A job's report (in memory, else its file) or why there is none."""
    if job.get("report_data") is not None or job["error"] is not None:
        return job.get("report_data"), job["error"]
    if not path.is_file():  # no in-memory result (another launcher) and no file
        return None, f"job wrote no report at {path}"
    try:
        return json.loads(path.read_text()), None
    except ValueError as exc:
        return None, f"unreadable report {path}: {exc}"


def _label(source: dict[str, Any]) -> str:
    return column(source["exporter"], source["report"]["backend"]["name"], source["variant"])


# overrides already named by a column label (or by a row: model, batch sizes), and Hydra's own
_LABELLED = {"model", "exporter", "backend", "transform", "inputs.batch_sizes", "bench.batch_sizes"}


def _variants(jobs: list[dict[str, Any]]) -> dict[int, str]:
    """Per job, the overrides that vary across the sweep and are not in its label yet (e.g. numerics=strict), so
    jobs differing only there get columns of their own instead of overwriting each other."""
    parsed = {id(job): dict(o.lstrip("+~").split("=", 1) for o in job.get("overrides") or [] if "=" in o)
              for job in jobs}
    keys = {k for overrides in parsed.values() for k in overrides}
    varying = sorted(k for k in keys if k not in _LABELLED and not k.startswith("hydra.")
                     and len({overrides.get(k) for overrides in parsed.values()}) > 1)
    return {key: ", ".join(f"{k}={overrides[k]}" for k in varying if k in overrides)
            for key, overrides in parsed.items()}


def pivot(rows: list[SweepRow]) -> dict[str, Any]:
    """Seed 001's table: rows = model outputs x batch sizes, columns = exporter x backend, cells = max abs + verdict."""
    columns: list[str] = []
    table: dict[tuple[Any, ...], dict[str, Any]] = {}
    known: dict[Any, list[str]] = {}  # outputs seen per model: an ERROR/SKIP cell (no outputs) fills each of them
    backend_rows = [r for r in rows if r.check == "backend"]
    for row in backend_rows:
        if row.output and row.output not in known.setdefault(row.model, []):
            known[row.model].append(row.output)
    for row in sorted(backend_rows, key=lambda r: r.batch_size or 0):
        label = column(row.exporter, row.backend, row.variant)
        if label not in columns:
            columns.append(label)
        for output in [row.output] if row.output else known.get(row.model) or ["—"]:
            key = (row.model, output, row.batch_size)
            table.setdefault(key, {})[label] = {"max_abs": row.max_abs, "verdict": row.verdict.value}
    return {
        "columns": columns,
        "rows": [{"model": k[0], "output": k[1], "batch_size": k[2], "cells": cells} for k, cells in table.items()],
    }


def pairwise(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed 002's matrix: max / mean |a - b| between every pair of candidates and the golden, on the same inputs.

    Reads the candidate files each job's report lists (report.save_outputs) and each golden through the golden
    store (hash-checked); jobs are grouped by model and batch size. Built only when a sweep ran several backends
    (or one backend in several settings).
    """
    from parity.compare import difference

    if len({(s["report"]["backend"]["name"], s.get("variant")) for s in sources}) < 2:  # one runtime, one setting
        return []
    groups: dict[tuple[str, int], dict[str, dict[str, np.ndarray]]] = {}
    for source in sources:
        report = source["report"]
        for candidate in report.get("candidates") or []:
            try:
                with np.load(candidate["path"], allow_pickle=False) as data:
                    outputs = {k: np.array(data[k]) for k in data.files}
            except (OSError, ValueError) as exc:  # moved, deleted or damaged since the job wrote it
                log.warning("pairwise matrix without %s at batch %s: %s", _label(source), candidate["batch_size"],
                            exc)
                continue
            group = groups.setdefault((report["model"]["name"], candidate["batch_size"]), {})
            group[_label(source)] = outputs
            if "golden" not in group:
                golden = _golden_outputs(report, candidate["batch_size"])
                if golden is not None:
                    group["golden"] = golden
    matrices = []
    for (model, batch), candidates in sorted(groups.items()):
        labels = sorted(candidates, key=lambda label: label != "golden")  # the golden first, then sweep order
        outputs = sorted(set.intersection(*(set(c) for c in candidates.values())))
        for output in outputs:
            pairs = []
            for a, b in itertools.combinations(labels, 2):
                x, y = candidates[a][output], candidates[b][output]
                stats = difference(x, y) if x.shape == y.shape else {}
                if stats.get("nonfinite") or stats.get("golden_nonfinite"):  # NaN/Inf: no distance to report
                    stats = {}
                pairs.append({"a": a, "b": b, "max_abs": stats.get("max_abs"), "mean_abs": stats.get("mean_abs")})
            matrices.append({"model": model, "batch_size": batch, "output": output, "labels": labels, "pairs": pairs})
    return matrices


def _golden_outputs(report: dict[str, Any], batch: int) -> dict[str, np.ndarray] | None:
    """The first `batch` samples of every output of the job's golden (unbatched outputs whole), read through the
    golden store, which checks every file's SHA-256; None (and a warning) when it cannot be read."""
    from parity import inputs as inputs_mod
    from parity.errors import ParityError
    from parity.golden import GoldenStore

    golden = report["golden"]
    if not golden.get("root") or not golden.get("input_set"):
        return None
    try:
        loaded = GoldenStore(golden["root"]).load(report["model"]["name"], golden["input_set"])
        # the outputs' batch axes as the golden was made (an ONNX model's are read from its graph, so the job's
        # composed config does not list them), else as the job's config declares them
        made = ((loaded.manifest.get("config") or {}).get("model") or {}).get("outputs") or \
            report.get("config", {}).get("model", {}).get("outputs", [])
        axes = {o["name"]: o.get("batch_axis", 0) for o in made}
        return inputs_mod.take(loaded.outputs, axes, batch)
    except (ParityError, OSError, ValueError, IndexError) as exc:
        log.warning("pairwise matrix without the golden: %s", exc)
        return None


def bench_comparison(sources: list[dict[str, Any]], sweep_dir: Path) -> list[dict[str, Any]]:
    """Seed 004's table per model: median latency by batch size per backend, the winner, the crossover; plus
    one latency plot for all of them in the sweep directory. Backends that failed parity never win, and no
    backend wins where the medians differ by less than their measured noise (parity.timing.comparison)."""
    from parity.timing import comparison, median_error

    by_model: dict[str, dict[str, Any]] = {}
    for source in sources:
        bench = source["report"].get("bench")
        if not bench or bench.get("skip_reason"):
            continue
        group = by_model.setdefault(source["report"]["model"]["name"],
                                    {"medians": {}, "errors": {}, "failed": [], "series": {}})
        label = _label(source)
        measured = [r for r in bench["results"] if r["error"] is None]
        group["medians"][label] = {r["batch_size"]: r["median_ms"] for r in measured}
        group["errors"][label] = {r["batch_size"]: median_error(r) for r in measured}
        group["series"][label] = bench["results"]
        if bench.get("parity_verdict") in ("FAIL", "ERROR"):
            group["failed"].append(label)
    tables = []
    for model, group in by_model.items():
        table = comparison(group["medians"], group["failed"], group["errors"])
        plot, plot_error = None, None
        try:
            from parity.bench import plot_latency

            name = "latency.png" if len(by_model) == 1 else f"latency_{model}.png"
            plot = str(plot_latency(group["series"], sweep_dir / name, f"{model}: latency vs batch size"))
        except Exception as exc:  # matplotlib missing: the table still stands
            plot_error = f"{type(exc).__name__}: {exc}"
        tables.append({"model": model, "backends": list(group["medians"]), **table, "plot": plot,
                       "plot_error": plot_error})
    return tables
