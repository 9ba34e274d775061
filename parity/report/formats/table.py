"""`table`: the tabulated tables printed on stdout (`report.table_format`: any tabulate format)."""

from __future__ import annotations

import os

import logging
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from parity.errors import one_line
from parity.report.formats import ReportWriter, writer

log = logging.getLogger("parity")


@writer
class TableWriter(ReportWriter):
    name = "table"
    needs_valid = False
    prints = True

    def job(self, report: dict[str, Any], settings: Any, output_dir: Path) -> None:
        try:
            text = job_table(report, settings.table_format, settings.columns, settings.width)
        except Exception as exc:
            log.error("could not print the table: %s", one_line(exc))
            text = f"{report['verdict']}  (table unavailable: {one_line(exc)})"
        print(text, flush=True)

    def sweep(self, document: dict[str, Any], settings: Any, sweep_dir: Path,
              reports: list[dict[str, Any] | None]) -> None:
        fmt, width = settings.table_format, settings.width
        print(f"\n== sweep: {len(document['jobs'])} job(s) in {sweep_dir}")
        print(sweep_table(document["rows"], fmt, settings.columns, width))
        lost = [f"job {j['num']}: {j['verdict']}: {j['error']}" for j in document["jobs"]
                if j.get("report") is None and j.get("error")]  # no report to show its own table: why, here
        if lost:
            print("\n".join(_wrap(lost, width)))
        if len(document["pivot"]["columns"]) > 1:
            print("\n== exporter × backend (max abs vs golden, verdict)")
            print(pivot_table(document["pivot"], fmt, width))
        for text in pairwise_tables(document["pairwise"], fmt, width):
            print(text)
        if document["bench"]:
            print(comparison_table(document["bench"], fmt, width))
        where = f"; report: {sweep_dir / 'sweep_report.json'}" if "json" in settings.formats else ""
        print(f"{document['verdict']}  sweep of {len(document['jobs'])} job(s){where}{_strict(document)}", flush=True)


def _num(value: Any, spec: str = ".3g") -> str:
    return "—" if value is None else format(value, spec)


def _g(value: float) -> str:
    """A limit as short as it reads exactly: 1e-05 -> 1e-5, 0.001 -> 1e-3, 0.5 -> 0.5."""
    plain = format(value, "g")
    short = format(value, ".0e").replace("e-0", "e-").replace("e+0", "e+")
    return short if len(short) < len(plain) and float(short) == float(plain) else \
        plain.replace("e-0", "e-").replace("e+0", "e+")


def criteria(out: dict[str, Any]) -> str:
    """What decides an output's verdict, as the check states it (parity.compare.Tolerance.violations), without a
    `|` (a markdown table would take it for a cell border): `allclose a=… r=…` (elementwise: every element
    |d| ≤ a + r·|golden|, numpy.allclose's rule), `max≤a or rel≤r` (the max / mean / median of |d| within atol,
    or of |d|/|golden| within rtol), `L2 rel≤r` (l2_rel), then the classification thresholds where set."""
    check, atol, rtol = out["check"], out["atol"], out["rtol"]
    if check == "elementwise":
        parts = [f"allclose a={_g(atol)} r={_g(rtol)}"]
    elif check == "l2_rel":
        parts = [f"L2 rel≤{_g(rtol)}"]
    elif check in ("max", "mean", "median"):
        parts = [f"{check}≤{_g(atol)} or rel≤{_g(rtol)}"]  # Polygraphy's check_error_stat
    else:
        parts = [f"{check} a={_g(atol)} r={_g(rtol)}"]
    if out.get("classification"):
        if out.get("min_top1_agreement") is not None:
            parts.append(f"top-1≥{out['min_top1_agreement'] * 100:g}%")
        if out.get("max_prob_diff_pp") is not None:
            parts.append(f"Δp≤{_g(out['max_prob_diff_pp'])}pp")
    return ", ".join(parts)


def _share(value: float | None) -> str:
    """A share as a percentage, rounded down to 0.1 so that nothing short of all reads 100%."""
    if value is None:
        return "—"
    return f"{math.floor(value * 1000) / 10:g}%"


def _top1(out: dict[str, Any]) -> str:
    cls = out.get("classification")
    return _share(cls["top1_agreement"]) if cls else "—"


# The job table's columns: name -> (header, cell of one output). `report.columns` picks them by name.
JOB_COLUMNS: dict[str, tuple[str, Callable[[dict[str, Any], dict[str, Any]], str]]] = {
    "check": ("check", lambda c, o: c["check"]),
    "batch": ("b", lambda c, o: str(c["batch_size"])),
    "output": ("output", lambda c, o: o["name"]),
    "max_abs": ("max abs", lambda c, o: _num(o["metrics"].get("max_abs"))),
    "mean_abs": ("mean abs", lambda c, o: _num(o["metrics"].get("mean_abs"))),
    "max_rel": ("max rel", lambda c, o: _num(o["metrics"].get("max_rel"), ".2g")),
    "l2_rel": ("L2 rel", lambda c, o: _num(o["metrics"].get("l2_rel"))),
    "cosine": ("cosine", lambda c, o: _num(o["metrics"].get("cosine"), ".6f")),
    "pct_out": ("% out", lambda c, o: _num(o["metrics"].get("pct_outside"), ".3g")),
    "mean_rel": ("mean rel", lambda c, o: _num(o["metrics"].get("mean_rel"), ".2g")),
    "median_abs": ("median abs", lambda c, o: _num(o["metrics"].get("median_abs"))),
    "median_rel": ("median rel", lambda c, o: _num(o["metrics"].get("median_rel"), ".2g")),
    "top1": ("top-1", lambda c, o: _top1(o)),
    "dp": ("Δp pp", lambda c, o: _num((o.get("classification") or {}).get("prob_diff_max_pp"), ".2f")),
    "grade": ("grade", lambda c, o: (o.get("classification") or {}).get("grade", "—")),
    "tolerance": ("tolerance", lambda c, o: criteria(o)),
    "verdict": ("verdict", lambda c, o: o["verdict"]),
}
FULL_JOB = ["check", "batch", "output", "max_abs", "mean_abs", "max_rel", "l2_rel", "cosine", "pct_out", "top1",
            "dp", "grade", "tolerance", "verdict"]
SQUEEZABLE = {"output", "model", "exporter", "backend"}  # names that may be shortened to fit the width


def _compact_job(outputs: list[dict[str, Any]]) -> list[str]:
    """The compact columns: where the output is, max abs, the measured values that decide (the statistic each
    output's check uses, top-1 and Δp where classification thresholds apply), the criteria, the verdict."""
    used = {o["check"] for o in outputs}
    measured = (["pct_out"] if "elementwise" in used else []) + (["l2_rel"] if "l2_rel" in used else [])
    for stat in ("max", "mean", "median"):  # |d| <= atol or |d|/|g| <= rtol of that statistic
        if stat in used:
            measured += ([] if stat == "max" else [f"{stat}_abs"]) + [f"{stat}_rel"]
    if any(o.get("classification") for o in outputs):
        measured += ["top1", "dp"]
    return ["check", "batch", "output", "max_abs", *measured, "tolerance", "verdict"]


def chosen_columns(columns: Any, known: dict[str, Any], full: list[str], compact: list[str]) -> list[str]:
    """`report.columns` resolved: compact, full, or a list of known names (the plan has checked them)."""
    if columns in (None, "compact"):
        return compact
    if columns == "full":
        return full
    chosen = [c for c in columns if c in known]
    return chosen or compact  # a list naming none of this table's columns (only the sweep's, say): compact


def fit(headers: list[str], body: list[list[str]], fmt: str, width: int | None, squeeze: set[int] = frozenset(),
        keep: int = 0) -> str:
    """A tabulate table no wider than `width`: the longest cells of the `squeeze` columns are shortened in the
    middle with '…' first; a table still too wide is split into several, each repeating the first `keep` columns
    (a grid with many exporter × backend columns); whatever is still too wide then has its longest cells of any
    column shortened (down to 6 characters, which `report.width` >= 40 always leaves room for)."""
    if width is None or _wide(_tabulate(body, headers, fmt)) <= width:
        return _tabulate(body, headers, fmt)
    headers, body = list(headers), [list(row) for row in body]
    headers, body = _squeeze(headers, body, fmt, width, set(squeeze), 8)
    if _wide(_tabulate(body, headers, fmt)) <= width:
        return _tabulate(body, headers, fmt)
    parts = []
    if len(headers) > keep + 1:
        start = keep
        while start < len(headers):
            stop = start + 1
            while stop < len(headers) and _wide(_tabulate([r[:keep] + r[start:stop + 1] for r in body],
                                                          headers[:keep] + headers[start:stop + 1], fmt)) <= width:
                stop += 1
            parts.append((headers[:keep] + headers[start:stop], [r[:keep] + r[start:stop] for r in body]))
            start = stop
    else:
        parts.append((headers, body))
    fitted = []
    for part_headers, part_body in parts:
        part_headers, part_body = _squeeze(part_headers, part_body, fmt, width, set(range(len(part_headers))), 6)
        fitted.append(_tabulate(part_body, part_headers, fmt))
    return "\n\n".join(fitted)


def _wide(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _squeeze(headers: list[str], body: list[list[str]], fmt: str, width: int, columns: set[int],
             shortest: int) -> tuple[list[str], list[list[str]]]:
    """Shorten the longest of `columns` (cells and header) step by step until the table fits or none of them is
    longer than `shortest`."""
    while columns:
        over = _wide(_tabulate(body, headers, fmt)) - width
        if over <= 0:
            break
        lengths = {i: max([len(headers[i])] + [len(r[i]) for r in body]) for i in columns}
        column = max(lengths, key=lambda i: lengths[i])
        if lengths[column] <= shortest:
            break
        target = max(lengths[column] - over, shortest)
        body = [[_shorten(c, target) if i == column else c for i, c in enumerate(row)] for row in body]
        headers = [_shorten(h, target) if i == column else h for i, h in enumerate(headers)]
    return headers, body


def _tabulate(rows: list[list[str]], headers: list[str], fmt: str) -> str:
    """tabulate without its two extra spaces of header padding (a module-level setting, restored after);
    `markdown` is GitHub's pipe table with the cells' own | escaped."""
    import tabulate as module

    if fmt == "markdown":  # GitHub-flavoured markdown: a | inside a cell must be escaped
        rows = [[str(cell).replace("|", "\\|") for cell in row] for row in rows]
        headers = [h.replace("|", "\\|") for h in headers]
        fmt = "github"
    padding, module.MIN_PADDING = module.MIN_PADDING, 0
    try:
        return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
    finally:
        module.MIN_PADDING = padding


def _shorten(text: str, length: int) -> str:
    if len(text) <= length:
        return text
    head = (length - 1) // 2 + (length - 1) % 2
    return text[:head] + "…" + text[len(text) - (length - 1 - head):]


def _wrap(lines: list[str], width: int | None) -> list[str]:
    """Prose lines wrapped at `width` (continuations indented), never breaking a word or path."""
    if width is None:
        return lines
    wrapped = []
    for line in lines:
        if "\n" in line:  # a table (already fitted) or a titled block: as it is
            wrapped.append(line)
            continue
        wrapped.extend(textwrap.wrap(line, width, subsequent_indent="  ", break_long_words=False,
                                     break_on_hyphens=False) or [line])
    return wrapped


def job_table(report: dict[str, Any], fmt: str = "github", columns: Any = "compact",
              width: int | None = 120) -> str:
    """The per-job table: per output the metrics that decide, the criteria and the verdict; then notes,
    diagnostics and the overall verdict."""
    outputs = [o for check in report["checks"] for o in check["outputs"]]
    names = chosen_columns(columns, JOB_COLUMNS, FULL_JOB, _compact_job(outputs))
    headers = [JOB_COLUMNS[n][0] for n in names]
    body = []
    notes = []
    for check in report["checks"]:
        if not check["outputs"]:
            cells = {"check": check["check"], "batch": str(check["batch_size"]), "verdict": check["verdict"]}
            body.append([cells.get(n, "—") for n in names])
            notes.append(f"{check['check']} b={check['batch_size']}: {check['verdict']}: {check['message']}")
        for out in check["outputs"]:
            body.append([JOB_COLUMNS[n][1](check, out) for n in names])
            if out["verdict"] != "PASS":
                notes.append(f"{check['check']} b={check['batch_size']} {out['name']}: {out['message']}")
    lines = []
    if body:
        lines.append(fit(headers, body, fmt, width, {i for i, n in enumerate(names) if n in SQUEEZABLE},
                         keep=len([n for n in names[:3] if n in ("check", "batch", "output")])))
    lines.extend(_wrap(notes, width))
    for line in (runtime_line(report), cache_line(report)):
        if line:
            lines.extend(_wrap([line], width))
    lines.extend(diagnostics_lines(report, fmt, width))
    lines.extend(preprocess_lines(report, fmt, width))
    lines.extend(bench_lines(report, fmt, columns, width))
    if report["error"]:
        lines.extend(_wrap([f"error: {report['error']}"], width))
    lines.append(summary_line(report))
    return "\n".join(lines)


def cache_line(report: dict[str, Any]) -> str | None:
    """What the export cache did for the job's exports (and transforms), in one line; None without a cache."""
    parts = []
    for export in report.get("exports") or []:
        for step, what in ((export, export["exporter"]), (export.get("transform") or {}, None)):
            cache = step.get("cache")
            if not cache:
                continue
            name = what or f"transform {step['name']}"
            size = "" if export["batch_size"] is None else f" b={export['batch_size']}"
            detail = (f"saved {cache['saved_s']:.1f}s" if cache["status"] == "hit" and cache.get("saved_s") else
                      "stored" if cache["stored"] else f"not stored: {cache['error']}" if cache["error"] else "")
            parts.append(f"{name}{size} {cache['status']} ({cache['key'][:12]}{', ' + detail if detail else ''})")
    return "export cache: " + "; ".join(parts) if parts else None


def runtime_line(report: dict[str, Any]) -> str | None:
    """What the backend really ran on, in one line (the full record is in report.json: backend.runtime)."""
    rt = report["backend"].get("runtime") or {}
    framework = rt.get("framework")
    if not framework:
        return None
    if framework == "command":
        import shlex

        # absolute paths by their file name: the program and its arguments, not the machine's directories
        command = shlex.join(os.path.basename(a) if os.path.isabs(a) else a for a in rt.get("command") or [])
        parts = [f"command {command if len(command) <= 80 else command[:79] + '…'}"]
        if rt.get("version"):
            version = str(rt["version"]).splitlines()[0]
            parts.append(version[:100] if version.startswith("version command") else f"version {version[:60]}")
        if (rt.get("client") or {}).get("name"):
            parts.append(f"client {rt['client']['name']}")
    else:
        parts = [f"{framework} {rt.get(framework, '')}".strip()]
    if rt.get("runtime"):
        parts.append(str(rt["runtime"]))
    if rt.get("providers_active"):
        parts.append("providers " + ", ".join(rt["providers_active"]))
    if rt.get("device"):
        name = f" ({rt['device_name']})" if rt.get("device_name") else ""
        parts.append(f"device {rt['device']}{name}")
    if rt.get("inference_precision"):
        parts.append(f"inference precision {rt['inference_precision']}")
    if rt.get("signature"):
        parts.append(f"signature {rt['signature']}")
    if isinstance(rt.get("wasm"), dict):
        wasm = rt["wasm"]
        parts.append(f"wasm threads {wasm.get('num_threads')}, simd {wasm.get('simd')}")
    if rt.get("model_sha256_loaded"):
        parts.append(f"model loaded sha256 {str(rt['model_sha256_loaded'])[:12]}…")
    return "ran on: " + ", ".join(parts)


def diagnostics_lines(report: dict[str, Any], fmt: str = "github", width: int | None = 120) -> list[str]:
    """Determinism, layer probes and localisation, when they ran."""
    lines = []
    for det in report.get("determinism") or []:
        state = "bitwise identical" if det["bitwise_identical"] else f"max run-to-run diff {_num(det['max_abs_diff'])}"
        lines.append(f"determinism b={det['batch_size']}: {det['repeats']} runs, {state}")
    probes = report.get("probes")
    if probes:
        if probes["error"]:
            lines.append(f"probes: ERROR: {probes['error']}")
        else:
            body = [[p["name"], "×".join(map(str, p["shape"])), _num(p["max_abs"]), _num(p["mean_abs"]),
                     _num(p["l2_rel"]), "—" if p["amplification"] is None else f"{p['amplification']:.3g}×",
                     "yes" if p["within_tolerance"] else "NO"] for p in probes["probes"]]
            lines.append(f"\nprobes (b={probes['batch_size']}, forward order, backend vs torch hooks):")
            lines.append(fit(["probe", "shape", "max abs", "mean abs", "L2 rel", "amplification", "within tol"],
                             body, fmt, width, {0}))
            lines.append(f"first probe exceeding its tolerance: {probes['first_exceeding'] or 'none'}")
            side = "unchanged" if probes["side_effect_ok"] else "CHANGED: probe results are unreliable"
            lines.append(f"main outputs with probes attached: max abs {_num(probes['side_effect_max_abs'])} vs "
                         f"without ({side})")
    if probes and probes.get("after_last_probe"):
        lines.append(f"every probe is within tolerance but the outputs FAIL: the error enters after the last probe, "
                     f"{probes['after_last_probe']}")
    fault = report.get("fault")
    if fault:
        lines.append(f"fault class (b={fault['batch_size']}): {fault['fault_class']}: {fault['message']}")
    loc = report.get("localization")
    if loc:
        lines += _localization_lines(loc, fmt, width)
    return _wrap(lines, width)


def _localization_lines(loc: dict[str, Any], fmt: str, width: int | None = 120) -> list[str]:
    if loc["error"]:
        return [f"localize: ERROR: {loc['error']}"]
    lines = []
    if loc.get("kind") == "conversion":
        lines.append(f"localize=source (b={loc['batch_size']}): {loc['tensors_compared']} of {loc['modules_total']} "
                     f"module calls matched to ONNX tensors, compared in {loc['chunks_run']} chunk(s): source model "
                     f"vs the artifact on {loc['reference']}")
        exceeding = [m for m in loc.get("modules", []) if not m["within_tolerance"]]
        if exceeding:
            body = [[m["module"] + (f" #{m['call'] + 1}" if m["call"] else ""), m["node"], _num(m["max_abs"]),
                     _num(m["input_max_abs"]), "—" if m["amplification"] is None else f"{m['amplification']:.3g}×",
                     _num(m["local_max_abs"]), m["origin"] or "—"] for m in exceeding[:12]]
            more = f" (first 12 of {len(exceeding)})" if len(exceeding) > 12 else ""
            lines.append(f"modules exceeding their tolerance{more}:")
            lines.append(fit(["module", "ONNX node", "max abs", "input err", "amplification", "local err", "origin"],
                             body, fmt, width, {0, 1}))
        culprit = loc.get("culprit")
        if culprit:
            fused = f" (fused with {', '.join(culprit['fused'])})" if culprit.get("fused") else ""
            lines.append(f"culprit: {culprit['module']}{fused} ↔ {culprit['node']} ({culprit['op_type']}), tensor "
                         f"{culprit['tensor']}: local error max abs {_num(culprit['local_max_abs'])} on the source's "
                         f"own inputs (input error {_num(culprit['input_max_abs'])})")
        else:
            lines.append(f"culprit: none ({loc.get('message', '')})")
    else:
        head = (f"localize (b={loc['batch_size']}): {loc['tensors_compared']} of {loc['tensors_total']} "
                f"intermediate tensors compared in {loc['chunks_run']} chunk(s), {loc['candidate']} vs "
                f"{loc['reference']}")
        first = loc["first_divergent"]
        module = (loc.get("culprit") or {}).get("module")
        tail = ("no divergent tensor" if first is None else
                f"first divergent node: {first['node']} ({first['op_type']})"
                f"{f' of module {module}' if module else ''}, tensor {first['tensor']}: "
                f"{first['reason']}, max abs {_num(first['max_abs'])}")
        lines.append(f"{head}; {tail}")
    if loc.get("overlay"):
        lines.append(f"errors per node for Model Explorer: {loc['overlay']}")
    return lines


BENCH_FULL = ["batch", "runs", "median", "mean", "p90", "p95", "p99", "min", "max", "std", "samples/s", "flags"]
BENCH_COMPACT = ["batch", "runs", "median", "p90", "p99", "min", "max", "samples/s", "flags"]


def bench_lines(report: dict[str, Any], fmt: str = "github", columns: Any = "compact",
                width: int | None = 120) -> list[str]:
    """The latency table of a bench job; a backend that failed parity is marked on every row."""
    bench = report.get("bench")
    if not bench:
        return []
    if bench.get("skip_reason"):
        return [f"bench: SKIP: {bench['skip_reason']}"]
    failed = bench["parity_verdict"] in ("FAIL", "ERROR")
    names = BENCH_FULL if columns == "full" else BENCH_COMPACT
    body, notes = [], []
    for r in bench["results"]:
        if r["error"]:
            body.append([str(r["batch_size"]), *["—"] * (len(names) - 2), "ERROR"])
            notes.append(f"b={r['batch_size']} ERROR: {r['error']}")
            continue
        flags = ["UNSTABLE"] if r["unstable"] else []
        if r["unstable"]:
            notes.append(f"b={r['batch_size']} unstable: {r['unstable_reason']}")
        if failed:
            flags.insert(0, f"PARITY {bench['parity_verdict']}: not a result")
        cells = {"batch": str(r["batch_size"]), "runs": str(r["runs"]), "std": _num(r["std_ms"], ".3g"),
                 "samples/s": _num(r["throughput_per_s"], ".4g"), "flags": "; ".join(flags),
                 **{k: _num(r[f"{k}_ms"], ".4g") for k in ("median", "mean", "p90", "p95", "p99", "min", "max")}}
        body.append([cells[n] for n in names])
    lines = [f"\nlatency (ms) on {bench.get('backend')}: {bench.get('timing')}", fit(names, body, fmt, width),
             *_wrap(notes, width)]
    for cold in bench.get("cold", []):
        lines.append(f"cold (b={cold['batch_size']}): load {cold['load_s']:.3f} s, first inference "
                     f"{cold['first_inference_ms']:.3f} ms")
    if bench.get("plot"):
        lines.append(f"plot: {bench['plot']}")
    return lines


def _pipeline(steps: dict[str, Any]) -> str:
    size = f"resize {steps['resize']}" if steps.get("resize") else \
        f"shorter side {steps['resize_shorter']}" if steps.get("resize_shorter") else "no resize"
    return (f"{steps['library']} {steps['interpolation']}, {size}, crop {steps.get('crop') or 'none'}, "
            f"{steps['layout']} {steps['dtype']}")


def preprocess_lines(report: dict[str, Any], fmt: str, width: int | None = 120) -> list[str]:
    """mode=compare_preprocess: one table, a row per image and one for all: tensors a vs b, then the model's
    outputs (top-1 of each and agreement, probability difference with seed 000's grade; max abs otherwise)."""
    comparison = report.get("preprocess_comparison")
    if not comparison:
        return []
    outputs = list(comparison["overall"]["outputs"])
    headers = ["image", "input max abs", "mean abs", "% differ"]
    for name in outputs:
        if "top1_agreement" in comparison["overall"]["outputs"][name]:
            headers += [f"{name} top-1", "agree", "Δp pp"]  # top-1: class under a / class under b
        else:
            headers += [f"{name} max abs"]
    body = []
    for row in [*comparison["images"], comparison["overall"]]:
        cells = [row["image"], _num(row["max_abs"]), _num(row["mean_abs"]), _num(row["pct_differ"], ".3g")]
        for name in outputs:
            stats = row["outputs"][name]
            if "top1_agreement" in stats:
                tops = f"{stats['top1_a']}/{stats['top1_b']}" if "top1_a" in stats else "—"
                cells += [tops, _share(stats["top1_agreement"]),
                          f"{_num(stats['prob_diff_max_pp'], '.2f')} {stats['grade']}"]
            else:
                cells += [_num(stats["max_abs"])]
        body.append(cells)
    return [f"preprocessing a: {_pipeline(comparison['a'])}", f"preprocessing b: {_pipeline(comparison['b'])}",
            fit(headers, body, fmt, width, keep=1), f"{comparison['verdict']}: {comparison['message']}"]


def summary_line(report: dict[str, Any]) -> str:
    where = f"model={report['model']['name']}"
    if report["mode"] in ("verify", "bench", "verify+bench"):
        exporter = report["exporter"] or "none (eager)"
        where += f" exporter={exporter}"
        if report.get("transform") not in (None, "none"):
            where += f" transform={report['transform']}"
        where += f" backend={report['backend']['name']}"
        if report["backend"]["skip_reason"]:
            where += f" (skipped: {report['backend']['skip_reason']})"
    elif report["mode"] == "compare_preprocess":
        comparison = report.get("preprocess_comparison") or {}
        where += f" images={len(comparison.get('images', []))}"
    else:
        where += f" golden={report['golden']['path']}"
        if report.get("exported"):
            where += f" exported={report['exported']['format']}:{report['exported']['dir']}"
        elif report["mode"] == "import" and (report["golden"].get("imported") or {}).get("format"):
            where += f" imported={report['golden']['imported']['format']}:{report['golden']['imported']['path']}"
    return f"{report['verdict']}  {where}{_strict(report)}"


def _strict(report: dict[str, Any]) -> str:
    """The note on a job or sweep exiting worse than its verdict: a SKIP under report.skip_is=fail."""
    from parity.results import exit_code

    if report["exit_code"] > exit_code(report["verdict"]):
        return f"  (exit {report['exit_code']}: report.skip_is=fail counts a SKIP as a failure)"
    return ""


SWEEP_COLUMNS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "job": ("job", lambda r: "—" if r["job"] is None else str(r["job"])),
    "model": ("model", lambda r: r["model"] or "—"),
    "exporter": ("exporter", lambda r: r["exporter"] or "—"),
    "backend": ("backend", lambda r: (r["backend"] or "—") + (f" [{r['variant']}]" if r.get("variant") else "")),
    "check": ("check", lambda r: r["check"] or "—"),
    "batch": ("b", lambda r: _num(r["batch_size"], "d")),
    "output": ("output", lambda r: r["output"] or "—"),
    "max_abs": ("max abs", lambda r: _num(r["max_abs"])),
    "mean_abs": ("mean abs", lambda r: _num(r["mean_abs"])),
    "l2_rel": ("L2 rel", lambda r: _num(r.get("l2_rel"))),
    "cosine": ("cosine", lambda r: _num(r["cosine"], ".6f")),
    "top1": ("top-1", lambda r: _share(r["top1_agreement"])),
    "dp": ("Δp pp", lambda r: _num(r.get("prob_diff_max_pp"), ".2f")),
    "verdict": ("verdict", lambda r: r["verdict"]),
}
FULL_SWEEP = list(SWEEP_COLUMNS)


def _compact_sweep(rows: list[dict[str, Any]]) -> list[str]:
    """Without mean abs and cosine; the model only when several ran, top-1 and Δp only where measured."""
    names = ["job", "model", "exporter", "backend", "check", "batch", "output", "max_abs", "l2_rel", "top1", "dp",
             "verdict"]
    if len({r["model"] for r in rows}) <= 1:
        names.remove("model")
    if all(r["top1_agreement"] is None for r in rows):
        names = [n for n in names if n not in ("top1", "dp")]
    return names


def sweep_table(rows: list[dict[str, Any]], fmt: str = "github", columns: Any = "compact",
                width: int | None = 120) -> str:
    """The multirun table: rows = jobs x outputs."""
    names = chosen_columns(columns, SWEEP_COLUMNS, FULL_SWEEP, _compact_sweep(rows))
    body = [[SWEEP_COLUMNS[n][1](r) for n in names] for r in rows]
    keep = names.index("output") + 1 if "output" in names else 1
    return fit([SWEEP_COLUMNS[n][0] for n in names], body, fmt, width,
               {i for i, n in enumerate(names) if n in SQUEEZABLE}, keep=keep)


def pivot_table(pivot: dict[str, Any], fmt: str = "github", width: int | None = 120) -> str:
    """Seed 001's table: rows = outputs x batch sizes, columns = exporter x backend, cells = max abs (verdict);
    split into several tables when the columns do not fit the width."""
    columns = pivot["columns"]
    body = []
    for row in pivot["rows"]:
        cells = [row["cells"].get(c) for c in columns]
        body.append([row["model"], row["output"], _num(row["batch_size"], "d"),
                     *("—" if c is None else f"{_num(c['max_abs'])} {c['verdict']}" for c in cells)])
    return fit(["model", "output", "batch", *columns], body, fmt, width, {1}, keep=3)


def pairwise_tables(matrices: list[dict[str, Any]], fmt: str = "github", width: int | None = 120) -> list[str]:
    """Seed 002's tables: one matrix per model / batch size / output, cells = max / mean |a - b|."""
    texts = []
    for m in matrices:
        labels = m["labels"]
        cell = {(p["a"], p["b"]): p for p in m["pairs"]}
        body = []
        for a in labels:
            row = [a]
            for b in labels:
                p = cell.get((a, b)) or cell.get((b, a))
                row.append("—" if a == b or p is None else f"{_num(p['max_abs'])} / {_num(p['mean_abs'])}")
            body.append(row)
        texts.append(f"\n== pairwise max / mean |a − b|: {m['model']} b={m['batch_size']} {m['output']}")
        texts.append(fit(["", *labels], body, fmt, width, keep=1))
    return texts


def comparison_table(tables: list[dict[str, Any]], fmt: str = "github", width: int | None = 120) -> str:
    """Seed 004's comparison: median ms by batch size per backend, the winner, and the crossover."""
    texts = []
    for t in tables:
        labels = t["backends"]
        heads = [f"{label} (parity {'FAILED' if label in t['excluded'] else 'ok'})" if t["excluded"] else label
                 for label in labels]
        body = [[r["batch_size"], *(_num(r["medians_ms"].get(label), ".4g") for label in labels),
                 r["winner"] or (f"no significant difference ({', '.join(r['tied'])})" if r.get("tied") else "—")]
                for r in t["rows"]]
        texts.append(f"\n== latency: {t['model']}, median ms by batch size")
        texts.append(fit(["batch", *heads, "winner"], body, fmt, width, {len(heads) + 1}, keep=1))
        if t["crossovers"]:
            for c in t["crossovers"]:
                texts.append(f"crossover: {c['to']} wins from batch {c['batch_size']} "
                             f"({c['from']} up to {c['after_batch_size']})")
        elif any(r.get("tied") for r in t["rows"]):
            texts.append("crossover: none found (where no backend wins, the medians differ by less than their noise)")
        else:
            texts.append("crossover: none (one backend wins at every batch size)")
        if t["excluded"]:
            texts.append(f"failed parity, never a winner: {', '.join(t['excluded'])}")
        if t["plot"]:
            texts.append(f"plot: {t['plot']}")
    return "\n".join(texts)
