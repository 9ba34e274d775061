"""Latency statistics, stability, and crossover detection (numpy only).

Percentiles use numpy's default "linear" method (Hyndman & Fan type 7): for n sorted samples x_0..x_{n-1},
the q-th percentile is x at fractional rank (n - 1) * q / 100, linearly interpolated between neighbours.
`std` is the sample standard deviation (ddof=1); `cv` = std / mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PERCENTILES = (90, 95, 99)


def latency_stats(seconds: Sequence[float], batch_size: int) -> dict[str, Any]:
    """Summary of per-inference latencies, in milliseconds, plus throughput in samples per second."""
    x = np.asarray(seconds, dtype=np.float64) * 1e3
    if x.size == 0:
        raise ValueError("no timings")
    median = float(np.median(x))
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    mean = float(x.mean())
    stats = {
        "runs": int(x.size),
        "min_ms": float(x.min()),
        "mean_ms": mean,
        "median_ms": median,
        **{f"p{q}_ms": float(np.percentile(x, q)) for q in PERCENTILES},
        "max_ms": float(x.max()),
        "std_ms": std,
        "cv": std / mean if mean > 0 else 0.0,
        "throughput_per_s": batch_size / (median / 1e3) if median > 0 else float("inf"),
    }
    return stats


def stability(stats: Mapping[str, Any], max_p99_ratio: float, max_cv: float) -> tuple[bool, str]:
    """(unstable, why): a wide spread means the median is not a number to decide on."""
    reasons = []
    ratio = stats["p99_ms"] / stats["median_ms"] if stats["median_ms"] > 0 else float("inf")
    if ratio > max_p99_ratio:
        reasons.append(f"p99/median {beyond(ratio, max_p99_ratio)} > {max_p99_ratio:g}")
    if stats["cv"] > max_cv:
        reasons.append(f"CV {beyond(stats['cv'], max_cv)} > {max_cv:g}")
    return bool(reasons), "; ".join(reasons)


def beyond(value: float, limit: float) -> str:
    """`value` with as many digits as it takes to read differently from `limit` (0.1503 against 0.15, not 0.15)."""
    for digits in range(2, 10):
        text = f"{value:.{digits}f}"
        if text != f"{limit:.{digits}f}":
            return text
    return f"{value:.10g}"


def median_error(stats: Mapping[str, Any]) -> float:
    """The standard error of a median in ms, sqrt(pi/2) * std / sqrt(runs) (its large-sample value): the noise
    that two medians must differ by more than before one backend is called faster."""
    runs = max(int(stats.get("runs") or 1), 1)
    return float(np.sqrt(np.pi / 2) * float(stats.get("std_ms") or 0.0) / np.sqrt(runs))


SIGNIFICANCE = 2.0  # a winner's median must beat the next one by this many combined standard errors (~95 %)


def comparison(medians: Mapping[str, Mapping[int, float]], excluded: Sequence[str] = (),
               errors: Mapping[str, Mapping[int, float]] | None = None) -> dict[str, Any]:
    """Seed 004's table: per batch size, each backend's median, the winner, and where the winner changes.

    `medians` maps backend -> {batch size: median ms}; `errors` the same -> the medians' standard errors
    (median_error). A backend wins a batch size only when its median beats every other one by more than
    SIGNIFICANCE combined standard errors, sqrt(e1² + e2²); otherwise the row has no winner, `tied` lists the
    backends inside the noise of the fastest ("no significant difference"), and no crossover is drawn through it.
    Backends in `excluded` (those failing parity) are shown but never win: a fast wrong answer is not a result.
    A batch size is compared only among the backends that measured it.
    """
    errors = errors or {}
    sizes = sorted({b for per in medians.values() for b in per})
    rows, winners = [], []
    for b in sizes:
        candidates = {k: v[b] for k, v in medians.items() if b in v and k not in excluded}
        fastest = min(candidates, key=candidates.get) if candidates else None
        tied = []
        if fastest is not None:
            noise = {k: errors.get(k, {}).get(b, 0.0) for k in candidates}
            tied = [k for k, m in candidates.items() if k != fastest and
                    m - candidates[fastest] <= SIGNIFICANCE * float(np.hypot(noise[k], noise[fastest]))]
        winner = fastest if not tied else None
        rows.append({"batch_size": b, "medians_ms": {k: v.get(b) for k, v in medians.items()}, "winner": winner,
                     "tied": sorted([fastest, *tied]) if tied else []})
        winners.append((b, winner))
    crossovers = []
    previous: tuple[int, str | None] | None = None
    for b, winner in winners:
        if winner is None:
            continue
        if previous is not None and winner != previous[1]:
            crossovers.append({"batch_size": b, "from": previous[1], "to": winner, "after_batch_size": previous[0]})
        previous = (b, winner)
    return {"rows": rows, "crossovers": crossovers, "excluded": list(excluded)}
