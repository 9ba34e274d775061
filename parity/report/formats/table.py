"""`table`: the tabulated tables printed on stdout (`report.table_format`: any tabulate format)."""

from __future__ import annotations

import logging
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
            text = job_table(report, settings.table_format)
        except Exception as exc:
            log.error("could not print the table: %s", one_line(exc))
            text = f"{report['verdict']}  (table unavailable: {one_line(exc)})"
        print(text, flush=True)

    def sweep(self, document: dict[str, Any], settings: Any, sweep_dir: Path) -> None:
        fmt = settings.table_format
        print(f"\n== sweep: {len(document['jobs'])} job(s) in {sweep_dir}")
        print(sweep_table(document["rows"], fmt))
        if len(document["pivot"]["columns"]) > 1:
            print("\n== exporter × backend (max abs vs golden, verdict)")
            print(pivot_table(document["pivot"], fmt))
        for text in pairwise_tables(document["pairwise"], fmt):
            print(text)
        if document["bench"]:
            print(comparison_table(document["bench"], fmt))
        where = f"; report: {sweep_dir / 'sweep_report.json'}" if "json" in settings.formats else ""
        print(f"{document['verdict']}  sweep of {len(document['jobs'])} job(s){where}", flush=True)


def _num(value: Any, spec: str = ".3g") -> str:
    return "—" if value is None else format(value, spec)


def job_table(report: dict[str, Any], fmt: str = "github") -> str:
    """The per-job table: key metrics, tolerance and verdict per output, then the overall verdict."""
    headers = ["check", "batch", "output", "max abs", "mean abs", "max rel", "L2 rel", "cosine", "% out",
               "top-1", "Δp max pp", "tolerance", "verdict"]
    body = []
    notes = []
    for check in report["checks"]:
        if not check["outputs"]:
            body.append([check["check"], check["batch_size"], "—", *["—"] * 9, check["verdict"]])
            notes.append(f"{check['check']} b={check['batch_size']}: {check['verdict']}: {check['message']}")
        for out in check["outputs"]:
            m = out["metrics"]
            cls = out["classification"]
            top1 = _num(cls["top1_agreement"], ".0%") if cls else "—"
            dp = f"{_num(cls['prob_diff_max_pp'])} ({cls['grade']})" if cls else "—"
            tol = f"{out['check']} a={out['atol']:g} r={out['rtol']:g}"
            body.append([check["check"], check["batch_size"], out["name"], _num(m.get("max_abs")),
                         _num(m.get("mean_abs")), _num(m.get("max_rel")), _num(m.get("l2_rel")),
                         _num(m.get("cosine"), ".6f"), _num(m.get("pct_outside"), ".3g"), top1, dp, tol,
                         out["verdict"]])
            if out["verdict"] != "PASS":
                notes.append(f"{check['check']} b={check['batch_size']} {out['name']}: {out['message']}")
    lines = []
    if body:
        lines.append(tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True))
    lines.extend(notes)
    ran = runtime_line(report)
    if ran:
        lines.append(ran)
    lines.extend(diagnostics_lines(report, fmt))
    lines.extend(preprocess_lines(report, fmt))
    lines.extend(bench_lines(report, fmt))
    if report["error"]:
        lines.append(f"error: {report['error']}")
    lines.append(summary_line(report))
    return "\n".join(lines)


def runtime_line(report: dict[str, Any]) -> str | None:
    """What the backend really ran on, in one line (the full record is in report.json: backend.runtime)."""
    rt = report["backend"].get("runtime") or {}
    framework = rt.get("framework")
    if not framework:
        return None
    parts = [f"{framework} {rt.get(framework, '')}".strip()]
    if rt.get("providers_active"):
        parts.append("providers " + ", ".join(rt["providers_active"]))
    if rt.get("device"):
        name = f" ({rt['device_name']})" if rt.get("device_name") else ""
        parts.append(f"device {rt['device']}{name}")
    if rt.get("inference_precision"):
        parts.append(f"inference precision {rt['inference_precision']}")
    if rt.get("signature"):
        parts.append(f"signature {rt['signature']}")
    return "ran on: " + ", ".join(parts)


def diagnostics_lines(report: dict[str, Any], fmt: str = "github") -> list[str]:
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
            lines.append(tabulate(body, headers=["probe", "shape", "max abs", "mean abs", "L2 rel", "amplification",
                                                 "within tol"], tablefmt=fmt, disable_numparse=True))
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
        lines += _localization_lines(loc, fmt)
    return lines


def _localization_lines(loc: dict[str, Any], fmt: str) -> list[str]:
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
            lines.append(tabulate(body, headers=["module", "ONNX node", "max abs", "input err", "amplification",
                                                 "local err", "origin"], tablefmt=fmt, disable_numparse=True))
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


def bench_lines(report: dict[str, Any], fmt: str = "github") -> list[str]:
    """The latency table of a bench job; a backend that failed parity is marked on every row."""
    bench = report.get("bench")
    if not bench:
        return []
    if bench.get("skip_reason"):
        return [f"bench: SKIP: {bench['skip_reason']}"]
    failed = bench["parity_verdict"] in ("FAIL", "ERROR")
    body = []
    for r in bench["results"]:
        if r["error"]:
            body.append([r["batch_size"], *["—"] * 10, f"ERROR: {r['error']}"])
            continue
        flags = [f"UNSTABLE ({r['unstable_reason']})"] if r["unstable"] else []
        if failed:
            flags.insert(0, f"PARITY {bench['parity_verdict']}: not a result")
        body.append([r["batch_size"], r["runs"], _num(r["median_ms"], ".4g"), _num(r["mean_ms"], ".4g"),
                     _num(r["p90_ms"], ".4g"),
                     _num(r["p95_ms"], ".4g"), _num(r["p99_ms"], ".4g"), _num(r["min_ms"], ".4g"),
                     _num(r["max_ms"], ".4g"), _num(r["std_ms"], ".3g"), _num(r["throughput_per_s"], ".4g"),
                     "; ".join(flags)])
    lines = [f"\nlatency (ms) on {bench.get('backend')}: {bench.get('timing')}",
             tabulate(body, headers=["batch", "runs", "median", "mean", "p90", "p95", "p99", "min", "max", "std",
                                     "samples/s", "flags"], tablefmt=fmt, disable_numparse=True)]
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


def preprocess_lines(report: dict[str, Any], fmt: str) -> list[str]:
    """mode=compare_preprocess: one table, a row per image and one for all: tensors a vs b, then the model's
    outputs (top-1 of each and agreement, probability difference with seed 000's grade; max abs otherwise)."""
    comparison = report.get("preprocess_comparison")
    if not comparison:
        return []
    outputs = list(comparison["overall"]["outputs"])
    headers = ["image", "tensor max abs", "mean abs", "% differ"]
    for name in outputs:
        if "top1_agreement" in comparison["overall"]["outputs"][name]:
            headers += [f"{name} top-1 a/b", "agree", "Δp max pp"]
        else:
            headers += [f"{name} max abs"]
    body = []
    for row in [*comparison["images"], comparison["overall"]]:
        cells = [row["image"], _num(row["max_abs"]), _num(row["mean_abs"]), _num(row["pct_differ"], ".3g")]
        for name in outputs:
            stats = row["outputs"][name]
            if "top1_agreement" in stats:
                tops = f"{stats['top1_a']}/{stats['top1_b']}" if "top1_a" in stats else "—"
                cells += [tops, _num(stats["top1_agreement"], ".0%"),
                          f"{_num(stats['prob_diff_max_pp'])} ({stats['grade']})"]
            else:
                cells += [_num(stats["max_abs"])]
        body.append(cells)
    return [f"preprocessing a: {_pipeline(comparison['a'])}", f"preprocessing b: {_pipeline(comparison['b'])}",
            tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True),
            f"{comparison['verdict']}: {comparison['message']}"]


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
    return f"{report['verdict']}  {where}"


def sweep_table(rows: list[dict[str, Any]], fmt: str = "github") -> str:
    """The multirun table: rows = jobs x outputs."""
    headers = ["job", "model", "exporter", "backend", "check", "batch", "output", "max abs", "mean abs", "L2 rel",
               "cosine", "top-1", "Δp max pp", "verdict"]
    body = [[r["job"], r["model"] or "—", r["exporter"] or "—",
             (r["backend"] or "—") + (f" [{r['variant']}]" if r.get("variant") else ""),
             r["check"] or "—", _num(r["batch_size"], "d"), r["output"] or "—", _num(r["max_abs"]),
             _num(r["mean_abs"]), _num(r.get("l2_rel")), _num(r["cosine"], ".6f"),
             "—" if r["top1_agreement"] is None else f"{r['top1_agreement']:.0%}", _num(r.get("prob_diff_max_pp")),
             r["verdict"]] for r in rows]
    return tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)


def pivot_table(pivot: dict[str, Any], fmt: str = "github") -> str:
    """Seed 001's table: rows = outputs x batch sizes, columns = exporter x backend, cells = max abs (verdict)."""
    columns = pivot["columns"]
    body = []
    for row in pivot["rows"]:
        cells = [row["cells"].get(c) for c in columns]
        body.append([row["model"], row["output"], _num(row["batch_size"], "d"),
                     *("—" if c is None else f"{_num(c['max_abs'])} {c['verdict']}" for c in cells)])
    return tabulate(body, headers=["model", "output", "batch", *columns], tablefmt=fmt, disable_numparse=True)


def pairwise_tables(matrices: list[dict[str, Any]], fmt: str = "github") -> list[str]:
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
        texts.append(tabulate(body, headers=["", *labels], tablefmt=fmt, disable_numparse=True))
    return texts


def comparison_table(tables: list[dict[str, Any]], fmt: str = "github") -> str:
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
        texts.append(tabulate(body, headers=["batch", *heads, "winner"], tablefmt=fmt, disable_numparse=True))
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
