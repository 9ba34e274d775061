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

        print(f"\n== sweep: {len(document['jobs'])} job(s) in {sweep_dir}")
        print(sweep_table(document["rows"], config.report.table_format))
        print(f"{document['verdict']}  sweep of {len(document['jobs'])} job(s); report: {sweep_dir / SWEEP_REPORT}",
              flush=True)
        from parity.__main__ import record_exit_code

        record_exit_code(document["exit_code"])


def aggregate(sweep_dir: Path, filename: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the sweep document from the jobs' reports (found on disk when `jobs` is empty)."""
    import parity
    from parity.report.table import flat_rows
    from parity.results import exit_code, overall

    if not jobs:
        jobs = [{"output_dir": str(p.parent), "num": None, "overrides": [], "error": None}
                for p in sorted(sweep_dir.glob(f"*/{filename}"))]
    entries, rows = [], []
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
                         "cosine": None, "top1_agreement": None, "message": error})
            continue
        num = job["num"] if job["num"] is not None else report["job"].get("num")
        entries.append({"num": num, "output_dir": job["output_dir"],
                        "overrides": job["overrides"] or report["job"]["overrides"],
                        "report": str(path) if path.is_file() else None,
                        "verdict": report["verdict"], "exit_code": report["exit_code"], "error": report["error"]})
        rows.extend(flat_rows(report, num))
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
    }
