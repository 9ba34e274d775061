"""`junit`: JUnit XML for CI test views (GitLab's unit test reports, Jenkins' JUnit plugin, GitHub actions that
read it): junit.xml in the job's directory (one <testsuite>) and in the sweep's (one <testsuite> per job).

One <testcase> per check × batch size × output: classname `<model>.<exporter[+transform]>.<backend>` (Jenkins
splits a classname at its last dot into package and class), name `<check>[b=<batch>] <output>`. A FAIL is a
<failure>, an ERROR an <error>, a SKIP <skipped> (a <failure> under report.skip_is=fail), each with the message as
its `message` and the key metrics and criteria in its body. A job fault outside the checks (an export that failed,
probes or localisation that broke, a benchmark error) is one more <testcase> named after what failed.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from parity.report.formats import ReportWriter, write_text, writer
from parity.report.model import artifact_label

FILENAME = "junit.xml"
# not allowed in XML 1.0 (ANSI escapes' ESC, and lone surrogates of undecodable file names)
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _text(value: Any) -> str:
    return _ILLEGAL.sub("", _ANSI.sub("", str(value)))


def _time(seconds: float | None) -> str:
    """Seconds with three decimals and no exponent (the Surefire time pattern Jenkins validates)."""
    return f"{max(seconds or 0.0, 0.0):.3f}"


def classname(report: dict[str, Any], variant: str = "") -> str:
    label = artifact_label(report["exporter"], report.get("transform")) or "eager"
    backend = report["backend"]["name"] or report["mode"]
    parts = [report["model"]["name"] or "unknown", label, str(backend).replace(" (reference)", "")]
    if variant:
        parts[-1] += f"[{variant}]"
    return ".".join(p.replace(".", "_") for p in parts)  # a dot inside a part would move Jenkins' split


def _metrics_body(out: dict[str, Any], report_path: str | None) -> str:
    from parity.report.formats.table import _num, criteria

    m, cls = out["metrics"], out.get("classification") or {}
    lines = [out["message"], f"criteria: {criteria(out)}",
             f"max abs {_num(m.get('max_abs'))}, mean abs {_num(m.get('mean_abs'))}, max rel "
             f"{_num(m.get('max_rel'))}, L2 rel {_num(m.get('l2_rel'))}, cosine {_num(m.get('cosine'), '.6f')}"]
    if m.get("pct_outside") is not None:
        lines.append(f"elements outside: {_num(m['pct_outside'])}%")
    if m.get("worst_index") is not None:
        lines.append(f"worst element {m['worst_index']}: golden {_num(m.get('worst_reference'))}, got "
                     f"{_num(m.get('worst_candidate'))}")
    if cls:
        lines.append(f"top-1 agreement {_num(cls.get('top1_agreement'))}, prob diff max "
                     f"{_num(cls.get('prob_diff_max_pp'))} pp ({cls.get('grade')})")
    lines.append(f"shape {out['candidate_shape']} {out['candidate_dtype']} (golden {out['reference_shape']} "
                 f"{out['reference_dtype']})")
    if report_path:
        lines.append(f"report: {report_path}")
    return "\n".join(lines)


def _outcome(case: ET.Element, verdict: str, message: str, body: str, strict: bool) -> None:
    """The child element a verdict gives a testcase (none for PASS)."""
    if verdict == "PASS":
        return
    if verdict == "SKIP" and strict:
        tag, kind, message = "failure", "strict-skip", f"SKIP counted as a failure (report.skip_is=fail): {message}"
    else:
        tag, kind = {"FAIL": ("failure", "FAIL"), "ERROR": ("error", "ERROR"), "SKIP": ("skipped", "SKIP")}[verdict]
    child = ET.SubElement(case, tag, {"message": _text(message.splitlines()[0] if message else verdict), "type": kind})
    child.text = _text(body or message)


def testsuite(report: dict[str, Any], report_path: str | None = None, variant: str = "",
              name: str | None = None) -> ET.Element:
    """One job's <testsuite>: a <testcase> per check × batch × output, plus one per fault outside the checks."""
    strict = ((report.get("config") or {}).get("report") or {}).get("skip_is") == "fail"
    klass = classname(report, variant)
    suite = ET.Element("testsuite", {"name": _text(name or f"parity {klass}")})
    properties = ET.SubElement(suite, "properties")
    for key, value in (("model", report["model"]["name"]), ("exporter", report["exporter"]),
                       ("transform", report.get("transform")), ("backend", report["backend"]["name"]),
                       ("mode", report["mode"]), ("verdict", report["verdict"]),
                       ("golden", report["golden"].get("path")), ("parity_version", report.get("parity_version")),
                       ("report", report_path), ("output_dir", report["job"]["output_dir"])):
        if value is not None:
            ET.SubElement(properties, "property", {"name": key, "value": _text(value)})
    cases: list[ET.Element] = []

    def case(name: str, seconds: float | None) -> ET.Element:
        element = ET.Element("testcase", {"classname": _text(klass), "name": _text(name), "time": _time(seconds)})
        cases.append(element)
        return element

    for check in report["checks"]:
        title = f"{check['check']}[b={check['batch_size']}]"
        if not check["outputs"]:
            _outcome(case(title, check.get("seconds")), check["verdict"], check["message"], check["message"], strict)
        share = (check.get("seconds") or 0.0) / max(len(check["outputs"]), 1)
        for out in check["outputs"]:
            body = _metrics_body(out, report_path)
            _outcome(case(f"{title} {out['name']}", share), out["verdict"], out["message"], body, strict)
    for section in ("probes", "localization"):
        if (report.get(section) or {}).get("error"):
            _outcome(case(section, None), "ERROR", report[section]["error"], report[section]["error"], strict)
    bench = report.get("bench")
    if bench:
        if bench.get("skip_reason"):
            _outcome(case("bench", None), "SKIP", bench["skip_reason"], bench["skip_reason"], strict)
        for result in bench.get("results", []):
            element = case(f"bench[b={result['batch_size']}]", (result.get("median_ms") or 0.0) / 1000.0)
            if result.get("error"):
                _outcome(element, "ERROR", result["error"], result["error"], strict)
    if report["error"] or not cases:  # the job's own fault, or a job without checks (golden, import, export)
        verdict = "ERROR" if report["error"] else report["verdict"]
        message = report["error"] or f"{report['mode']}: {report['verdict']}"
        _outcome(case(report["mode"], report.get("seconds")), verdict, message, message, strict)
    suite.extend(cases)
    counts = {"tests": len(cases), "failures": _count(cases, "failure"), "errors": _count(cases, "error"),
              "skipped": _count(cases, "skipped")}
    suite.attrib.update({k: str(v) for k, v in counts.items()})
    suite.set("time", _time(report.get("seconds")))
    suite.set("timestamp", _local(report["created"]))
    suite.set("hostname", _text(socket.gethostname()))
    return suite


def _local(created: str) -> str:
    """The report's UTC time as JUnit writers put it: local time, no offset (Ant's and Surefire's habit)."""
    import datetime

    try:
        moment = datetime.datetime.fromisoformat(created)
    except ValueError:
        return created[:19]
    return moment.astimezone().replace(tzinfo=None).isoformat(timespec="seconds")


def _count(cases: list[ET.Element], tag: str) -> int:
    return sum(1 for c in cases if c.find(tag) is not None)


def missing_suite(job: dict[str, Any]) -> ET.Element:
    """A sweep job that left no report: one <testcase> in <error>."""
    name = f"job {job['num']}" if job.get("num") is not None else job["output_dir"]
    suite = ET.Element("testsuite", {"name": _text(f"parity {name}"), "tests": "1", "failures": "0", "errors": "1",
                                     "skipped": "0", "time": _time(0)})
    case = ET.SubElement(suite, "testcase", {"classname": "parity.sweep", "name": _text(name), "time": _time(0)})
    message = job.get("error") or "the job left no report"
    _outcome(case, "ERROR", message, f"{message}\noverrides: {' '.join(job.get('overrides') or [])}", False)
    return suite


def document(suites: list[ET.Element], name: str) -> str:
    root = ET.Element("testsuites", {"name": _text(name)})
    root.extend(suites)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in suites)))
    root.set("time", _time(sum(float(s.get("time", "0")) for s in suites)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


@writer
class JunitWriter(ReportWriter):
    name = "junit"
    filename = FILENAME

    def job(self, report: dict[str, Any], settings: Any, output_dir: Path) -> Path:
        path = str(output_dir / settings.filename) if "json" in settings.formats else None
        return write_text(document([testsuite(report, path)], "parity"), output_dir / FILENAME)

    def sweep(self, document_: dict[str, Any], settings: Any, sweep_dir: Path,
              reports: list[dict[str, Any] | None]) -> Path:
        suites, seen = [], set()
        variants = {row["job"]: row.get("variant", "") for row in document_["rows"]}
        for job, report in zip(document_["jobs"], reports):
            if report is None:
                suites.append(missing_suite(job))
                continue
            suite = testsuite(report, job.get("report"), variants.get(job["num"], ""),
                              name=f"parity job {job['num']}: {classname(report, variants.get(job['num'], ''))}")
            for case in suite.iter("testcase"):  # GitLab keeps only the first of equal (classname, name)
                key = (case.get("classname"), case.get("name"))
                if key in seen:
                    case.set("name", f"{case.get('name')} (job {job['num']})")
                seen.add((case.get("classname"), case.get("name")))
            suites.append(suite)
        return write_text(document(suites, f"parity sweep {sweep_dir.name}"), sweep_dir / FILENAME)
