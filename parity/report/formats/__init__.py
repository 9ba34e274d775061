"""Report writers, registered by name: `report.formats: [json, table]` picks them. A new format is one module
in this package defining a ReportWriter subclass decorated with @writer; it is found by name automatically.

Writers get the reports in their JSON form (validated against the schemas): a job's report.json document and
a sweep's sweep_report.json document.
"""

from __future__ import annotations

import inspect
import json
import logging
import pkgutil
from abc import ABC, abstractmethod
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

from parity.errors import one_line

log = logging.getLogger("parity")

_WRITERS: dict[str, type[ReportWriter]] = {}


class ReportWriter(ABC):
    """Writes (or prints) a job report and a sweep report in one format.

    `needs_valid`: only a report that passed its schema is written (a machine-read file); `prints`: it writes to
    stdout, so it runs after every file writer (a file that failed to write turns the printed verdict to ERROR).
    """

    name: ClassVar[str]
    filename: ClassVar[str | None] = None  # the file it writes in a job's directory (removed when a job starts)
    needs_valid: ClassVar[bool] = True
    prints: ClassVar[bool] = False

    @abstractmethod
    def job(self, report: dict[str, Any], settings: Any, output_dir: Path) -> Path | None:
        """Write one job's report; the path written, if any."""

    @abstractmethod
    def sweep(self, document: dict[str, Any], settings: Any, sweep_dir: Path,
              reports: list[dict[str, Any] | None]) -> Path | None:
        """Write a sweep's report; the path written, if any. `reports`: each job's report (JSON form) in the
        order of document["jobs"], None for a job that left none."""


def write_text(text: str, path: Path) -> Path:
    """Write atomically (temp file + rename): a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def writer(cls: type[ReportWriter]) -> type[ReportWriter]:
    """Class decorator registering a writer under its `name`."""
    _WRITERS[cls.name] = cls
    return cls


@cache
def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        import_module(f"{__name__}.{info.name}")


def writer_names() -> list[str]:
    _discover()
    return sorted(_WRITERS)


def writers(names: list[str]) -> list[ReportWriter]:
    """The writers named, file writers first, each once."""
    _discover()
    chosen = [_WRITERS[n]() for n in dict.fromkeys(names)]
    return sorted(chosen, key=lambda w: w.prints)


def write_sweep(sweep: Any, settings: Any, sweep_dir: Path) -> bool:
    """Validate a sweep's report against its schema, then hand it to every requested writer; a writer that
    fails is logged and the others still run. False when something failed (the sweep is then an ERROR)."""
    from parity.report.schema import SWEEP_SCHEMA

    document = sweep.to_dict()
    problem = _schema_problem(document, SWEEP_SCHEMA, sweep_dir / "sweep_report.json.invalid")
    if problem is not None:
        log.error("%s", problem)
    valid = ok = problem is None
    for chosen in writers(list(settings.formats)):
        if chosen.needs_valid and not valid:
            continue
        try:
            if len(inspect.signature(chosen.sweep).parameters) >= 4:
                path = chosen.sweep(document, settings, sweep_dir, list(sweep.reports))
            else:  # a writer from before `reports` was passed: (document, settings, sweep_dir)
                path = chosen.sweep(document, settings, sweep_dir)
        except Exception as exc:
            ok = False
            log.error("report format '%s' failed on the sweep: %s", chosen.name, one_line(exc))
            continue
        if path is not None and not chosen.prints:
            log.info("sweep report: %s", path)
    return ok


def write_job(report: Any, settings: Any, output_dir: Path) -> None:
    """Validate a job's report against its schema, then hand it to every requested writer. A report breaking its
    schema is a parity bug: an ERROR saying so, the evidence kept beside it, and no machine-read file written."""
    from parity.report.schema import REPORT_SCHEMA

    document = report.to_dict()
    problem = _schema_problem(document, REPORT_SCHEMA, output_dir / f"{settings.filename}.invalid")
    valid = problem is None
    if not valid:
        report.error = problem
        log.error(report.error)
        document = report.to_dict()
    for chosen in writers(list(settings.formats)):
        if chosen.needs_valid and not valid:
            continue
        try:
            path = chosen.job(document, settings, output_dir)
        except Exception as exc:  # a writer failing must not hide the verdict
            report.error = report.error or f"report format '{chosen.name}' failed: {one_line(exc)}"
            log.error("report format '%s' failed: %s", chosen.name, one_line(exc))
            document = report.to_dict()
            continue
        if path is not None:
            log.info("report: %s", path)


def _schema_problem(document: dict[str, Any], schema: str, evidence: Path) -> str | None:
    """None when `document` validates against `schema`; else the one-line internal error, the document kept at
    `evidence` (a report breaking its schema is a parity bug)."""
    from parity.report.schema import validate

    try:
        validate(document, schema)
    except Exception as exc:
        evidence.write_text(json.dumps(document, indent=2, default=str))
        where = getattr(exc, "json_path", None)  # jsonschema's ValidationError: where in the document
        why = f"{' '.join(exc.message.split())} at {where}" if where and hasattr(exc, "message") else one_line(exc)
        return f"internal error: the report failed its schema ({why}); kept at {evidence}"
    return None
