"""`html`: one self-contained report.html per job and per sweep (styles, plots and script inside the file; it
opens from disk, offline, and can be attached to a CI run as it is).

A job's page: the verdict and where it ran; the verdict table (every metric and the criteria); per output, a
histogram of |candidate − golden| on log-spaced bins and its worst elements; the divergence along the network
when probes or localisation ran; latency against batch size when a benchmark ran. A sweep's page: the
exporter × backend grid coloured by verdict, the sweep's rows, the pairwise matrices coloured by distance, the
latency comparison, and a link to each job's page.

Plots are PNG images drawn with matplotlib (already parity's plotting library) and embedded as data: URLs.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from parity.report.formats import ReportWriter, write_text, writer
from parity.report.formats.table import _num
from parity.report.model import column

FILENAME = "report.html"

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1f24;max-width:1200px}
h1{font-size:20px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin-bottom:4px}
table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f6f8fa}
.PASS{background:#dafbe1}.FAIL{background:#ffebe9}.ERROR{background:#ffd8b5}.SKIP{background:#eaeef2}
.badge{padding:2px 10px;border-radius:10px;font-weight:600}
.note{color:#57606a} .mono{font-family:ui-monospace,monospace}
figure{margin:8px 0} figure img{max-width:100%} .outputs{display:flex;flex-wrap:wrap;gap:24px}
.output{flex:1 1 520px}
"""

# one behaviour: hide the PASS rows of the long tables
_SCRIPT = """
document.querySelectorAll('button.only-problems').forEach(function (button) {
  button.addEventListener('click', function () {
    var table = document.getElementById(button.dataset.table);
    var hide = button.getAttribute('aria-pressed') !== 'true';
    button.setAttribute('aria-pressed', hide ? 'true' : 'false');
    button.textContent = hide ? 'show all rows' : 'show only rows that did not PASS';
    table.querySelectorAll('tbody tr').forEach(function (row) {
      row.hidden = hide && row.dataset.verdict === 'PASS';
    });
  });
});
"""


def _e(value: Any) -> str:
    return html.escape("—" if value is None else str(value))


def _table(headers: list[str], rows: list[list[Any]], verdicts: list[str] | None = None, table_id: str | None = None,
           classes: list[list[str]] | None = None) -> str:
    """An HTML table; a row's verdict colours its verdict cell and marks the row for the PASS filter."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        verdict = verdicts[i] if verdicts else None
        cells = []
        for j, cell in enumerate(row):
            css = (classes[i][j] if classes else "") or (verdict if verdict and headers[j] == "verdict" else "")
            cells.append(f'<td class="{css}">{_e(cell)}</td>' if css else f"<td>{_e(cell)}</td>")
        mark = f' data-verdict="{_e(verdict)}"' if verdict else ""
        body.append(f"<tr{mark}>{''.join(cells)}</tr>")
    attr = f' id="{table_id}"' if table_id else ""
    button = (f'<button class="only-problems" data-table="{table_id}" aria-pressed="false">show only rows that did '
              f"not PASS</button>") if table_id and verdicts else ""
    return f"{button}<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(data: str, alt: str, css: str) -> str:
    return f'<figure><img class="{css}" alt="{_e(alt)}" src="data:image/png;base64,{data}"></figure>'


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def histogram_png(out: dict[str, Any]) -> str | None:
    """|d| on log-spaced bins, with atol (and, for l2_rel and the statistics checks, no line) marked."""
    profile = out.get("profile") or {}
    if not profile.get("counts"):
        return None
    plt = _pyplot()
    edges, counts = profile["edges"], profile["counts"]
    fig, ax = plt.subplots(figsize=(6.2, 2.6))
    widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color="#0969da", edgecolor="white", linewidth=0.4)
    ax.set_xscale("log")
    ax.set_xlabel("|candidate − golden|")
    sample = profile.get("sample")
    ax.set_ylabel(f"elements of a {sample}-element sample" if sample else "elements")
    if out["check"] in ("elementwise", "max", "mean", "median") and out["atol"] > 0:
        ax.axvline(out["atol"], color="#cf222e", linestyle="--", linewidth=1, label=f"atol {out['atol']:g}")
        ax.legend(loc="upper right", fontsize=8)
    extra = [f"{profile['zeros']} exactly equal"]
    if profile["nonfinite"]:
        extra.append(f"{profile['nonfinite']} NaN/Inf")
    ax.set_title(f"{out['name']}: " + ", ".join(extra), fontsize=9)
    return _png(fig)


def divergence_png(report: dict[str, Any]) -> str | None:
    """max |d| along the network: the probes in forward order, the matched modules of localize=source (and their
    local error), or every marked ONNX tensor of localize=all in graph order (from its node-data file)."""
    series: list[tuple[str, list[str], list[float]]] = []
    probes = report.get("probes") or {}
    if probes.get("probes"):
        series.append(("probes", [p["name"] for p in probes["probes"]], [p["max_abs"] for p in probes["probes"]]))
    loc = report.get("localization") or {}
    modules = loc.get("modules") or []
    if modules:
        names = [m["module"] for m in modules]
        series.append(("modules: max abs", names, [m["max_abs"] for m in modules]))
        if any(m.get("local_max_abs") is not None for m in modules):
            series.append(("modules: local error", names, [m.get("local_max_abs") for m in modules]))
    overlay = loc.get("overlay")
    if loc.get("kind") != "conversion" and overlay and Path(overlay).is_file():  # localize=all: every tensor
        import json

        results = json.loads(Path(overlay).read_text()).get("results", {})
        series.append(("ONNX tensors: max abs vs the reference runtime", list(results),
                       [entry.get("value") for entry in results.values()]))
    if not series:
        return None

    def positive(values: list[float | None]) -> list[int]:
        return [i for i, v in enumerate(values) if v is not None and v > 0 and math.isfinite(v)]

    if not any(positive(values) for _, _, values in series):  # nothing to draw on a log scale: all equal
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3))
    for label, names, values in series:
        xs = positive(values)
        ax.plot(xs, [values[i] for i in xs], marker="o", markersize=3, linewidth=1, label=label)
    names = series[0][1]
    step = max(1, len(names) // 24)
    ax.set_xticks(range(0, len(names), step))
    ax.set_xticklabels([names[i] for i in range(0, len(names), step)], rotation=60, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("max |d|")
    ax.legend(fontsize=8)
    return _png(fig)


def _latency_png(path: str | None, results: dict[str, list[dict[str, Any]]], title: str) -> str | None:
    """The benchmark's own latency plot embedded; drawn afresh where the file is gone."""
    if path and Path(path).is_file():
        return base64.b64encode(Path(path).read_bytes()).decode("ascii")
    if not any(r.get("median_ms") for rows in results.values() for r in rows):
        return None
    import tempfile

    from parity.bench import plot_latency

    with tempfile.TemporaryDirectory() as tmp:
        drawn = plot_latency(results, Path(tmp) / "latency.png", title)
        return base64.b64encode(drawn.read_bytes()).decode("ascii")


def _page(title: str, verdict: str, body: list[str]) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
            f'<body data-verdict="{_e(verdict)}">{"".join(body)}<script>{_SCRIPT}</script></body></html>\n')


def _heading(verdict: str, text: str) -> str:
    return f'<h1><span id="verdict" class="badge {_e(verdict)}">{_e(verdict)}</span> {_e(text)}</h1>'


def job_page(report: dict[str, Any]) -> str:
    from parity.report.formats.table import (
        FULL_JOB, JOB_COLUMNS, bench_lines, cache_line, diagnostics_lines, runtime_line, summary_line)

    where = column(report["exporter"], report["backend"]["name"])
    body = [_heading(report["verdict"], f"{report['model']['name']} · {where}"),
            f'<p class="mono">{_e(summary_line(report))}</p>']
    facts = [("mode", report["mode"]), ("created", report["created"]), ("golden", report["golden"].get("path")),
             ("ran on", runtime_line(report)), ("export cache", (cache_line(report) or "")[len("export cache: "):]),
             ("error", report["error"]), ("seconds", _num(report["seconds"]))]
    body.append("<p>" + "<br>".join(f"<b>{_e(k)}</b>: {_e(v)}" for k, v in facts if v) + "</p>")
    rows, verdicts = [], []
    for check in report["checks"]:
        if not check["outputs"]:
            rows.append([check["check"], check["batch_size"], "—", *["—"] * (len(FULL_JOB) - 4), check["verdict"]])
            verdicts.append(check["verdict"])
        for out in check["outputs"]:
            rows.append([JOB_COLUMNS[n][1](check, out) for n in FULL_JOB])
            verdicts.append(out["verdict"])
    body.append("<h2>Verdicts</h2>")
    if rows:
        body.append(_table([JOB_COLUMNS[n][0] for n in FULL_JOB], rows, verdicts, "verdicts"))
    notes = [f"{c['check']} b={c['batch_size']} {o['name']}: {o['message']}" for c in report["checks"]
             for o in c["outputs"] if o["verdict"] != "PASS"]
    notes += [f"{c['check']} b={c['batch_size']}: {c['verdict']}: {c['message']}" for c in report["checks"]
              if not c["outputs"] and c["message"]]
    if notes:
        body.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    body += _outputs_section(report)
    diagnostics = diagnostics_lines(report, "plain", None)
    divergence = divergence_png(report)
    if diagnostics or divergence:
        body.append('<h2 id="divergence">Diagnostics and divergence along the network</h2>')
        if divergence:
            body.append(_img(divergence, "max |d| along the network", "divergence"))
        body.append(f'<pre class="mono">{_e(chr(10).join(diagnostics))}</pre>')
    bench = report.get("bench")
    if bench and not bench.get("skip_reason"):
        body.append('<h2 id="latency">Latency</h2>')
        latency = _latency_png(bench.get("plot"), {where: bench["results"]}, f"{report['model']['name']}: latency")
        if latency:
            body.append(_img(latency, "latency against batch size", "latency"))
        body.append(f'<pre class="mono">{_e(chr(10).join(bench_lines(report, "plain", "full", None)))}</pre>')
    elif bench:
        body.append(f"<p>bench: SKIP: {_e(bench['skip_reason'])}</p>")
    return _page(f"parity {report['verdict']} {report['model']['name']} {where}", report["verdict"], body)


def _outputs_section(report: dict[str, Any]) -> list[str]:
    """Per output of the backend checks (the reference's where no backend ran): histogram and worst elements;
    of every batch size, the one that did worst."""
    chosen: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    checks = [c for c in report["checks"] if c["check"] == "backend" and c["outputs"]] or \
        [c for c in report["checks"] if c["outputs"]]
    for check in checks:
        for out in check["outputs"]:
            best = chosen.get(out["name"])
            if best is None or (out["metrics"].get("max_abs") or 0) > (best[1]["metrics"].get("max_abs") or 0):
                chosen[out["name"]] = (check, out)
    if not chosen:
        return []
    from parity.report.formats.table import criteria

    parts = ['<h2 id="outputs">Where the error is, per output</h2><div class="outputs">']
    for name, (check, out) in chosen.items():
        parts.append(f'<div class="output" data-output="{_e(name)}"><h3>{_e(check["check"])} b={check["batch_size"]} '
                     f'{_e(name)} <span class="badge {_e(out["verdict"])}">{_e(out["verdict"])}</span></h3>')
        parts.append(f'<p class="note">criteria: {_e(criteria(out))}; {_e(out["message"])}</p>')
        picture = histogram_png(out)
        if picture:
            parts.append(_img(picture, f"error histogram of {name}", "histogram"))
        else:
            parts.append(f'<p class="note">{_e(_no_histogram(out))}</p>')
        worst = (out.get("profile") or {}).get("worst") or []
        if worst:
            rows = [[str(w["index"]), _num(w["golden"], ".7g"), _num(w["candidate"], ".7g"), _num(w["abs_diff"]),
                     _num(w.get("allowed"))] for w in worst]
            over = [["", "", "", "FAIL" if w["abs_diff"] is None or (w.get("allowed") is not None
                                                                     and w["abs_diff"] > w["allowed"]) else "", ""]
                    for w in worst] if out["check"] == "elementwise" else None
            parts.append(_table(["index", "golden", "candidate", "|d|", "allowed"], rows, classes=over))
        parts.append("</div>")
    parts.append("</div>")
    return parts


def _no_histogram(out: dict[str, Any]) -> str:
    """Why an output has no histogram: nothing differs, nothing finite, or nothing compared element-wise."""
    profile = out.get("profile")
    if profile is None:
        return f"no element-wise comparison: {out['message']}"
    if profile["zeros"]:
        return "every element is exactly equal"
    if profile["nonfinite"]:
        return f"every element is NaN/Inf on one side ({profile['nonfinite']})"
    return "the output is empty"


def sweep_page(document: dict[str, Any], reports: list[dict[str, Any] | None], sweep_dir: Path) -> str:
    from parity.report.formats.table import FULL_SWEEP, SWEEP_COLUMNS, comparison_table

    sweep_dir = sweep_dir.resolve()  # links to the jobs relative to it: the folder can be moved or uploaded whole
    jobs = document["jobs"]
    tally = ", ".join(f"{sum(1 for j in jobs if j['verdict'] == v)} {v}" for v in ("PASS", "FAIL", "ERROR", "SKIP")
                      if any(j["verdict"] == v for j in jobs))
    body = [_heading(document["verdict"], f"sweep of {len(jobs)} job(s): {tally}"),
            f'<p class="mono">{_e(document["sweep_dir"])}</p>']
    pivot = document["pivot"]
    if pivot["columns"]:
        body.append('<h2 id="grid">Exporter × backend (max abs vs golden)</h2>')
        rows, classes = [], []
        for row in pivot["rows"]:
            cells = [row["cells"].get(c) for c in pivot["columns"]]
            rows.append([row["model"], row["output"], _num(row["batch_size"], "d"),
                         *("—" if c is None else f"{_num(c['max_abs'])} {c['verdict']}" for c in cells)])
            classes.append(["", "", "", *("" if c is None else c["verdict"] for c in cells)])
        body.append(f'<div id="matrix">{_table(["model", "output", "batch", *pivot["columns"]], rows, classes=classes)}'
                    "</div>")
    body.append("<h2>Rows</h2>")
    body.append(_table([SWEEP_COLUMNS[n][0] for n in FULL_SWEEP],
                       [[SWEEP_COLUMNS[n][1](r) for n in FULL_SWEEP] for r in document["rows"]],
                       [r["verdict"] for r in document["rows"]], "rows"))
    for matrix in document["pairwise"]:
        body.append(f"<h3>pairwise max |a − b|: {_e(matrix['model'])} b={matrix['batch_size']} "
                    f"{_e(matrix['output'])}</h3>")
        body.append(_pairwise(matrix))
    if document["bench"]:
        body.append('<h2 id="latency">Latency</h2>')
        for table in document["bench"]:
            if table.get("plot") and Path(table["plot"]).is_file():
                body.append(_img(base64.b64encode(Path(table["plot"]).read_bytes()).decode("ascii"),
                                 f"{table['model']} latency", "latency"))
        body.append(f'<pre class="mono">{_e(comparison_table(document["bench"], "plain", None))}</pre>')
    links = []
    for job, report in zip(jobs, reports):
        page = Path(job["output_dir"]).resolve() / FILENAME
        label = f"job {job['num']}: {' '.join(job['overrides'])}"
        if page.is_file():
            href = html.escape(str(page.relative_to(sweep_dir)) if page.is_relative_to(sweep_dir) else page.as_uri())
            links.append(f'<li class="{_e(job["verdict"])}"><a href="{href}">{_e(label)}</a> {_e(job["verdict"])}</li>')
        else:
            links.append(f'<li class="{_e(job["verdict"])}">{_e(label)} {_e(job["verdict"])}'
                         f'{_e(": " + job["error"]) if job["error"] else ""}</li>')
    body.append("<h2>Jobs</h2><ul>" + "".join(links) + "</ul>")
    return _page(f"parity sweep {document['verdict']}", document["verdict"], body)


def _pairwise(matrix: dict[str, Any]) -> str:
    """The distance between every pair, coloured from green (identical) to red (the largest in the matrix)."""
    labels = matrix["labels"]
    cell = {(p["a"], p["b"]): p for p in matrix["pairs"]}
    values = [p["max_abs"] for p in matrix["pairs"] if p["max_abs"]]
    top = max(values, default=0.0)
    rows = []
    for a in labels:
        row = [a]
        for b in labels:
            p = cell.get((a, b)) or cell.get((b, a))
            row.append("—" if a == b or p is None else _num(p["max_abs"]))
        rows.append(row)
    head = "".join(f"<th>{_e(h)}</th>" for h in ["", *labels])
    body = []
    for row in rows:
        cells = [f"<th>{_e(row[0])}</th>"]
        for value in row[1:]:
            shade = ""
            if value != "—" and top > 0:
                x = float(value)
                share = 0.0 if x <= 0 else max(0.0, min(1.0, 1 + math.log10(x / top) / 6))  # six decades of scale
                shade = f' style="background:hsl({int(120 * (1 - share))},70%,85%)"'
            cells.append(f"<td{shade}>{_e(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="pairwise"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


@writer
class HtmlWriter(ReportWriter):
    name = "html"
    filename = FILENAME
    needs_valid = False  # a report that broke its schema is an ERROR: the page still shows it

    def job(self, report: dict[str, Any], settings: Any, output_dir: Path) -> Path:
        return write_text(job_page(report), output_dir / FILENAME)

    def sweep(self, document: dict[str, Any], settings: Any, sweep_dir: Path,
              reports: list[dict[str, Any] | None]) -> Path:
        return write_text(sweep_page(document, reports, sweep_dir), sweep_dir / FILENAME)
