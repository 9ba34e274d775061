"""Hydra callback: after a multirun, one combined table and sweep_report.json in the sweep directory."""

from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("parity")

SWEEP_REPORT = "sweep_report.json"


class AggregateCallback(Callback):
    """Collects each job's report.json; a job that left none counts as ERROR with its exception."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

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
        elif isinstance(value, dict):
            report = value  # in memory: works with report.json=false, never a stale file
        self.jobs.append({"output_dir": str(output_dir), "num": num, "report_data": report,
                          "overrides": list(getattr(job_return, "overrides", None) or []), "error": error})

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        filename = config.report.filename
        sweep_dir = Path(config.hydra.sweep.dir)
        document = aggregate(sweep_dir, filename, self.jobs)
        if config.report.json:
            from parity.report.schema import SWEEP_SCHEMA, write_json

            write_json(document, sweep_dir / SWEEP_REPORT, SWEEP_SCHEMA)
        from parity.report.table import sweep_table

        from parity.report.table import pairwise_tables, pivot_table

        fmt = config.report.table_format
        print(f"\n== sweep: {len(document['jobs'])} job(s) in {sweep_dir}")
        print(sweep_table(document["rows"], fmt))
        if len(document["pivot"]["columns"]) > 1:
            print("\n== exporter × backend (max abs vs golden, verdict)")
            print(pivot_table(document["pivot"], fmt))
        for text in pairwise_tables(document["pairwise"], fmt):
            print(text)
        if document["bench"]:
            from parity.report.table import comparison_table

            print(comparison_table(document["bench"], fmt))
        print(f"{document['verdict']}  sweep of {len(document['jobs'])} job(s); report: {sweep_dir / SWEEP_REPORT}",
              flush=True)
        from parity.__main__ import record_exit_code

        record_exit_code(document["exit_code"])


def aggregate(sweep_dir: Path, filename: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the sweep document from the jobs' reports (found on disk when `jobs` is empty)."""
    import parity
    from parity.report.table import artifact_label, flat_rows
    from parity.results import exit_code, overall

    if not jobs:
        jobs = [{"output_dir": str(p.parent), "num": None, "overrides": [], "error": None}
                for p in sorted(sweep_dir.glob(f"*/{filename}"))]
    entries, rows, sources = [], [], []
    variants = _variants(jobs)
    for job in sorted(jobs, key=lambda j: (j["num"] is None, j["num"] or 0, j["output_dir"])):
        path = Path(job["output_dir"]) / filename
        report = job.get("report_data")
        error = job["error"]
        if report is None and error is None:  # no in-memory result (another launcher): read it from disk
            if path.is_file():
                try:
                    report = json.loads(path.read_text())
                except ValueError as exc:
                    error = f"unreadable report {path}: {exc}"
            else:
                error = f"job wrote no report at {path}"
        if report is None:
            entries.append({"num": job["num"], "output_dir": job["output_dir"], "overrides": job["overrides"],
                            "report": None, "verdict": "ERROR", "exit_code": 2, "error": error})
            rows.append({"job": job["num"], "model": None, "exporter": None, "backend": None, "check": None,
                         "batch_size": None, "output": None, "verdict": "ERROR", "max_abs": None, "mean_abs": None,
                         "cosine": None, "top1_agreement": None, "l2_rel": None, "prob_diff_max_pp": None,
                         "message": error})
            continue
        num = job["num"] if job["num"] is not None else report["job"].get("num")
        entries.append({"num": num, "output_dir": job["output_dir"],
                        "overrides": job["overrides"] or report["job"]["overrides"],
                        "report": str(path) if path.is_file() else None,
                        "verdict": report["verdict"], "exit_code": report["exit_code"], "error": report["error"]})
        variant = variants.get(id(job), "")
        rows.extend({**row, "variant": variant} for row in flat_rows(report, num))
        sources.append({"variant": variant, "output_dir": job["output_dir"], "model": report["model"]["name"],
                        "exporter": artifact_label(report["exporter"], report.get("transform")),
                        "backend": report["backend"]["name"],
                        "golden": report["golden"]["path"], "config": report.get("config", {}),
                        "bench": report.get("bench")})
    verdict = overall(e["verdict"] for e in entries).value
    return {
        "schema": "parity.sweep/v1",
        "parity_version": parity.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sweep_dir": str(sweep_dir),
        "verdict": verdict,
        "exit_code": exit_code(verdict),
        "jobs": entries,
        "rows": rows,
        "pivot": pivot(rows),
        "pairwise": pairwise(sources),
        "bench": bench_comparison(sources, sweep_dir),
    }


def _label(source: dict[str, Any]) -> str:
    """A sweep column: exporter(+transform)×backend, plus the job's other varying overrides in brackets."""
    label = f"{source['exporter']}×{source['backend']}" if source["exporter"] else str(source["backend"])
    return f"{label} [{source['variant']}]" if source.get("variant") else label


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


def pivot(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Seed 001's table: rows = model outputs x batch sizes, columns = exporter x backend, cells = max abs + verdict."""
    columns: list[str] = []
    table: dict[tuple[Any, ...], dict[str, Any]] = {}
    known: dict[Any, list[str]] = {}  # outputs seen per model: an ERROR/SKIP cell (no outputs) fills each of them
    for row in rows:
        if row["check"] == "backend" and row["output"] and row["output"] not in known.setdefault(row["model"], []):
            known[row["model"]].append(row["output"])
    for row in sorted((r for r in rows if r["check"] == "backend"), key=lambda r: (r["batch_size"] or 0)):
        column = _label(row)
        if column not in columns:
            columns.append(column)
        for output in [row["output"]] if row["output"] else known.get(row["model"]) or ["—"]:
            key = (row["model"], output, row["batch_size"])
            table.setdefault(key, {})[column] = {"max_abs": row["max_abs"], "verdict": row["verdict"]}
    return {
        "columns": columns,
        "rows": [{"model": k[0], "output": k[1], "batch_size": k[2], "cells": cells} for k, cells in table.items()],
    }


def pairwise(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed 002's matrix: max / mean |a - b| between every pair of candidates and the golden, on the same inputs.

    Reads each job's candidates_b<N>.npz (report.save_outputs) and the golden's outputs.npz; jobs are grouped
    by model and batch size. Built only when a sweep ran several backends (or one backend in several settings).
    """
    import itertools

    import numpy as np

    if len({(source["backend"], source.get("variant")) for source in sources}) < 2:  # one runtime, one setting
        return []
    groups: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for source in sources:
        for path in sorted(Path(source["output_dir"]).glob("candidates_b*.npz")):
            batch = int(path.stem.split("_b")[-1])
            group = groups.setdefault((source["model"], batch), {})
            with np.load(path, allow_pickle=False) as data:
                group[_label(source)] = {k: np.array(data[k]) for k in data.files}
            if "golden" not in group and source["golden"]:
                group["golden"] = _golden_outputs(Path(source["golden"]), source["config"], batch)
    matrices = []
    for (model, batch), candidates in sorted(groups.items()):
        labels = sorted(candidates, key=lambda label: label != "golden")  # the golden first, then sweep order
        outputs = sorted(set.intersection(*(set(c) for c in candidates.values())))
        for output in outputs:
            pairs = []
            for a, b in itertools.combinations(labels, 2):
                x, y = candidates[a][output], candidates[b][output]
                if x.shape != y.shape:
                    pairs.append({"a": a, "b": b, "max_abs": None, "mean_abs": None})
                    continue
                d = np.abs(x.astype(np.float64) - y.astype(np.float64))
                pairs.append({"a": a, "b": b, "max_abs": float(d.max()) if d.size else 0.0,
                              "mean_abs": float(d.mean()) if d.size else 0.0})
            matrices.append({"model": model, "batch_size": batch, "output": output, "labels": labels, "pairs": pairs})
    return matrices


def _golden_outputs(path: Path, config: dict[str, Any], batch: int) -> dict[str, Any]:
    """The golden's first `batch` samples of every output (unbatched outputs whole)."""
    import numpy as np

    axes = {o["name"]: o.get("batch_axis", 0) for o in config.get("model", {}).get("outputs", [])}
    with np.load(path / "outputs.npz", allow_pickle=False) as data:
        return {k: np.array(data[k]) if axes.get(k, 0) is None else np.take(data[k], np.arange(batch), axis=axes.get(k, 0))
                for k in data.files}


def bench_comparison(sources: list[dict[str, Any]], sweep_dir: Path) -> list[dict[str, Any]]:
    """Seed 004's table per model: median latency by batch size per backend, the winner, the crossover; plus
    one latency plot for all of them in the sweep directory. Backends that failed parity never win."""
    from parity.timing import comparison

    by_model: dict[str, dict[str, Any]] = {}
    for source in sources:
        bench = source.get("bench")
        if not bench or bench.get("skip_reason"):
            continue
        group = by_model.setdefault(source["model"], {"medians": {}, "failed": [], "series": {}})
        label = _label(source)
        group["medians"][label] = {r["batch_size"]: r["median_ms"] for r in bench["results"] if r["error"] is None}
        group["series"][label] = bench["results"]
        if bench.get("parity_verdict") in ("FAIL", "ERROR"):
            group["failed"].append(label)
    tables = []
    for model, group in by_model.items():
        table = comparison(group["medians"], group["failed"])
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
