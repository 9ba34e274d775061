"""`json`: report.json in the job's directory, sweep_report.json in the sweep's; validated, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parity.report.formats import ReportWriter, writer
from parity.report.schema import REPORT_SCHEMA, SWEEP_SCHEMA, write_json

SWEEP_REPORT = "sweep_report.json"


@writer
class JsonWriter(ReportWriter):
    name = "json"

    def job(self, report: dict[str, Any], settings: Any, output_dir: Path) -> Path:
        return write_json(report, output_dir / settings.filename, REPORT_SCHEMA)

    def sweep(self, document: dict[str, Any], settings: Any, sweep_dir: Path,
              reports: list[dict[str, Any] | None]) -> Path:
        return write_json(document, sweep_dir / SWEEP_REPORT, SWEEP_SCHEMA)
