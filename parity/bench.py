"""Latency benchmark of one backend over batch sizes: warm-up, timed runs, cold numbers, the plot."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parity import inputs as inputs_mod
from parity.errors import ParityError, one_line
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
        if hasattr(backend, attr):
            record[attr] = getattr(backend, attr)
    try:
        import torch

        record["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return record


def run_bench(cfg: Any, backend: Any, artifact_for: Callable[[int], Any], sizes: list[int]) -> dict[str, Any]:
    """Benchmark `backend` at each batch size; an error at one size is recorded and the others still run.

    `artifact_for(b)` returns the artifact serving batch size b (the same object for a dynamic-batch export).
    """
    bench = cfg.bench
    record: dict[str, Any] = {
        "settings": {k: bench[k] for k in bench if k != "batch_sizes"} | {"batch_sizes": list(sizes)},
        "timing": None,
        "include_transfers": bool(bench.include_transfers),
        "threads": threads(backend),
        "cold": [],
        "results": [],
        "parity_verdict": None,
        "plot": None,
        "plot_error": None,
    }
    loaded = None
    for b in sizes:
        entry: dict[str, Any] = {"batch_size": b, "error": None}
        try:
            feeds = inputs_mod.generate(cfg.model.inputs, b, int(bench.seed))  # outside any timed region
            artifact = artifact_for(b)
            if artifact is not loaded:
                backend.close()
                start = time.perf_counter()
                backend.load(artifact)
                load_s = time.perf_counter() - start
                loaded = artifact
                record["threads"] = threads(backend)  # as in force once loaded (a backend may set its own)
                run, record["timing"] = backend.timer(feeds, bool(bench.include_transfers))
                first_ms = run() * 1e3
                record["cold"].append({"batch_size": b, "load_s": load_s, "first_inference_ms": first_ms})
            else:
                run, record["timing"] = backend.timer(feeds, bool(bench.include_transfers))
            samples = measure(run, bench)
            stats = latency_stats(samples, b)
            unstable, why = stability(stats, bench.unstable_p99_ratio, bench.unstable_cv)
            entry.update(stats, unstable=unstable, unstable_reason=why)
            log.info("bench b=%d: median %.3f ms over %d runs%s", b, stats["median_ms"], stats["runs"],
                     f" (unstable: {why})" if unstable else "")
        except ParityError as exc:
            loaded = None
            entry["error"] = one_line(exc)
            log.error("bench b=%d: %s", b, entry["error"])
        except Exception as exc:  # a runtime failing at one size (seed 004's batch 1) must not stop the others
            loaded = None
            entry["error"] = one_line(exc)
            log.error("bench b=%d: %s", b, entry["error"])
        record["results"].append(entry)
    backend.close()
    return record


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
