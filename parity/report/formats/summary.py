"""`summary`: a markdown summary (summary.md) in the job's and the sweep's directory, also appended to
$GITHUB_STEP_SUMMARY when that is set (a single run's job summary, or a sweep's; never each job of a sweep).

GitHub refuses a step summary over 1 MiB: the text is kept under that (what the file already holds counts), cut
at a line with a note saying how much was left out and where the full report is.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from parity.report.formats import ReportWriter, write_text, writer

log = logging.getLogger("parity")
LIMIT = 1024 * 1024  # GitHub's step summary limit, in bytes
APPEND = True  # the pytest plugin turns it off: pytest's own report is the CI page's there
FILENAME = "summary.md"


def _code(text: str) -> str:
    return text.replace("|", "\\|")


def job_markdown(report: dict[str, Any], settings: Any) -> list[str]:
    """The job's printed table as markdown: its tables as they are, every other line a list item, in order."""
    from parity.report.formats.table import job_table, summary_line
    from parity.report.model import column

    where = column(report["exporter"], report["backend"]["name"])
    lines = [f"### parity: {report['verdict']} · {report['model']['name']} · {where}"]
    last = summary_line(report)
    in_table = False
    for line in job_table(report, "markdown", settings.columns, None).splitlines():
        if not line.strip() or line == last:
            continue
        table = line.startswith("|")
        if table != in_table or not table:
            if table != in_table:
                lines.append("")
            in_table = table
        lines.append(line if table else f"- {_code(line)}")
    return [*lines, "", f"`{last}`", ""]


def sweep_markdown(document: dict[str, Any], settings: Any) -> list[str]:
    from parity.report.formats.table import pivot_table, sweep_table

    jobs = document["jobs"]
    counts = {v: sum(1 for j in jobs if j["verdict"] == v) for v in ("PASS", "FAIL", "ERROR", "SKIP")}
    tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    lines = [f"### parity sweep: {document['verdict']} · {len(jobs)} job(s): {tally}", ""]
    if len(document["pivot"]["columns"]) > 1:
        lines += ["exporter × backend (max abs vs golden, verdict):", "",
                  *pivot_table(document["pivot"], "markdown", None).splitlines(), ""]
    lines += [*sweep_table(document["rows"], "markdown", settings.columns, None).splitlines(), ""]
    for job in jobs:
        if job["error"]:
            lines.append(f"- job {job['num']}: {job['verdict']}: {_code(job['error'])}")
    lines += ["", f"`{document['verdict']}  sweep of {len(jobs)} job(s) in {document['sweep_dir']}`", ""]
    return lines


def fit_markdown(lines: list[str], budget: int, full: str) -> str:
    """The lines (joined) within `budget` bytes; cut at a line boundary with a note when they are not."""
    text = "\n".join(lines) + "\n"
    if len(text.encode()) <= budget:
        return text
    kept, size = [], 0
    note = "\n\n> Truncated to stay under GitHub's 1 MiB step summary: {} of {} lines shown; full report: {}\n"
    room = budget - len(note.format(len(lines), len(lines), full).encode()) - 16
    if room <= 0:  # not even the note fits: nothing
        return ""
    for line in lines:
        size += len(line.encode()) + 1
        if size > room:
            break
        kept.append(line)
    return "\n".join(kept) + note.format(len(kept), len(lines), full)


def append_step_summary(text: str) -> Path | None:
    """Append to $GITHUB_STEP_SUMMARY when set (the file GitHub Actions renders on the run's page)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target or not text or not APPEND:
        return None
    path = Path(target)
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:  # the run's own summary.md stands; the CI page just lacks it
        log.warning("could not append to $GITHUB_STEP_SUMMARY (%s): %s", target, exc)
        return None
    return path


def _budget() -> int:
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    try:
        used = Path(target).stat().st_size if target and Path(target).is_file() else 0
    except OSError:
        used = 0
    return max(LIMIT - used, 0)


@writer
class SummaryWriter(ReportWriter):
    name = "summary"
    filename = FILENAME
    needs_valid = False  # a report that broke its schema is an ERROR: the summary still says so

    def job(self, report: dict[str, Any], settings: Any, output_dir: Path) -> Path:
        lines = job_markdown(report, settings)
        path = write_text(fit_markdown(lines, LIMIT, str(output_dir)), output_dir / FILENAME)
        if report["job"].get("num") is None:  # a single run; a sweep appends its own summary once
            append_step_summary(fit_markdown(lines, _budget(), str(path)))
        return path

    def sweep(self, document: dict[str, Any], settings: Any, sweep_dir: Path,
              reports: list[dict[str, Any] | None]) -> Path:
        lines = sweep_markdown(document, settings)
        path = write_text(fit_markdown(lines, LIMIT, str(sweep_dir)), sweep_dir / FILENAME)
        append_step_summary(fit_markdown(lines, _budget(), str(path)))
        return path
