"""Latency benchmark of one backend over batch sizes: warm-up, timed runs, cold numbers, the plot."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from parity import inputs as inputs_mod
from parity import progress
from parity.errors import ExportError, one_line
from parity.results import BenchReport, BenchResult, ColdStart
from parity.timing import latency_stats, stability

log = logging.getLogger("parity")


def measure(run: Callable[[], float], cfg: Any) -> list[float]:
    """Warm up (count and/or time), then time runs until both `runs` and `min_seconds` are reached,
    never more than `max_runs` runs nor `max_seconds`."""
    started = time.perf_counter()
    done = 0
    while done < cfg.warmup_runs or time.perf_counter() - started < cfg.warmup_seconds:
        run()
        done += 1
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < cfg.max_runs:
        samples.append(run())
        elapsed = time.perf_counter() - started
        if (len(samples) >= cfg.runs and elapsed >= cfg.min_seconds) or elapsed >= cfg.max_seconds:
            break
    return samples


def threads(backend: Any) -> dict[str, Any]:
    """CPU thread settings in force, for the record."""
    record: dict[str, Any] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    record["cpu_count"] = os.cpu_count()
    for attr in ("intra_op_num_threads", "inter_op_num_threads", "num_threads"):
        if hasattr(backend.config, attr):
            record[attr] = getattr(backend.config, attr)
    try:
        import torch

        record["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return record


def run_bench(settings: Any, cache: Any, sizes: Sequence[int], input_specs: Sequence[Any]) -> BenchReport:
    """Benchmark the cache's backend at each batch size on the artifact the cache holds for it (in verify+bench,
    the very artifact the verify checked). One session per artifact; its load time and first inference are the
    cold numbers. An error at one size is recorded and the others still run."""
    backend = cache.conversion.backend
    timing, thread_record = None, threads(backend)
    cold: list[ColdStart] = []
    results: list[BenchResult] = []
    with progress.steps(len(sizes), f"bench {backend.name}") as bar:
        for _, same_artifact in itertools.groupby(sizes, key=cache.key):
            group = list(same_artifact)
            artifact = cache.get(group[0])
            try:
                if artifact.failure():
                    raise ExportError(artifact.failure())
                start = time.perf_counter()
                with backend.prepare(artifact) as session:
                    load_s = time.perf_counter() - start
                    thread_record = threads(backend)  # as in force once loaded (a backend may set its own)
                    for b in group:
                        result, timing, first_ms = _one_size(settings, session, b, input_specs, artifact.sha256,
                                                             timing, first=b == group[0])
                        if first_ms is not None:
                            cold.append(ColdStart(b, load_s, first_ms))
                        results.append(result)
                        bar.update(1, f"b={b}")
            except Exception as exc:  # the artifact could not be made, loaded or let go: each size it serves left
                done = {r.batch_size for r in results}
                for b in group:
                    if b not in done:
                        results.append(BenchResult(batch_size=b, error=one_line(exc),
                                                   artifact_sha256=artifact.sha256))
                        log.error("bench b=%d: %s", b, results[-1].error)
    return BenchReport(settings=_settings(settings, sizes), timing=timing,
                       include_transfers=bool(settings.include_transfers), threads=thread_record, cold=tuple(cold),
                       results=tuple(results))


def _one_size(settings: Any, session: Any, b: int, input_specs: Sequence[Any], sha256: str | None,
              timing: str | None, first: bool) -> tuple[BenchResult, str | None, float | None]:
    """(result, what the timer covers, the first inference in ms when `first`) for one batch size."""
    try:
        feeds = inputs_mod.generate(input_specs, b, int(settings.seed))  # outside any timed region
        run, timing = session.timed(feeds, bool(settings.include_transfers))
        first_ms = run() * 1e3 if first else None
        stats = latency_stats(measure(run, settings), b)
    except Exception as exc:  # a runtime failing at one size (seed 004's batch 1) must not stop the others
        log.error("bench b=%d: %s", b, one_line(exc))
        return BenchResult(batch_size=b, error=one_line(exc), artifact_sha256=sha256), timing, None
    unstable, why = stability(stats, settings.unstable_p99_ratio, settings.unstable_cv)
    log.info("bench b=%d: median %.3f ms over %d runs%s", b, stats["median_ms"], stats["runs"],
             f" (unstable: {why})" if unstable else "")
    return BenchResult(batch_size=b, stats=stats, unstable=unstable, unstable_reason=why,
                       artifact_sha256=sha256), timing, first_ms


def _settings(settings: Any, sizes: Sequence[int]) -> dict[str, Any]:
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "batch_sizes"}
    return {**values, "batch_sizes": list(sizes)}


def with_plot(measured: BenchReport, conversion: Any, path: Path, title: str) -> BenchReport:
    """The benchmark with its latency plot written to `path` (or, without matplotlib, the reason there is none)."""
    from parity.report.model import artifact_label, column

    if not any(r.error is None for r in measured.results):
        return measured
    exporter = artifact_label(conversion.exporter.name, conversion.transform.name) if conversion.exporter else None
    label = column(exporter, conversion.backend.name)
    try:
        plot = plot_latency({label: [r.to_dict() for r in measured.results]}, path, title)
    except Exception as exc:  # matplotlib missing or broken: the numbers still stand
        log.warning("no latency plot: %s", one_line(exc))
        return dataclasses.replace(measured, plot_error=one_line(exc))
    return dataclasses.replace(measured, plot=str(plot))


def plot_latency(series: dict[str, list[dict[str, Any]]], path: Path, title: str) -> Path:
    """Log-log latency vs batch size per backend: the median line with a band up to p95."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, results in series.items():
        ok = [r for r in results if r.get("error") is None and "median_ms" in r]
        if not ok:
            continue
        xs = [r["batch_size"] for r in ok]
        medians = [r["median_ms"] for r in ok]
        line = ax.plot(xs, medians, marker="o", label=label)[0]
        ax.fill_between(xs, medians, [r["p95_ms"] for r in ok], color=line.get_color(), alpha=0.2)
    from matplotlib.ticker import ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
    ax.set_xticks(sorted({r["batch_size"] for results in series.values() for r in results}))
    ax.set_xlabel("batch size")
    ax.set_ylabel("latency per inference (ms): median, band to p95")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
