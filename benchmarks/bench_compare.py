"""The comparison's speed and memory: parity.compare.compare_output against `np.abs(a - b).max()`, Polygraphy's
comparator and the plain numpy implementation parity used before the compiled pass (tests/test_compare_chunked.py's
`plain`, the reference the pass is tested against), on the same arrays.

Each contender runs in its own child process pinned to one CPU (os.sched_setaffinity), on two float32 arrays of
`--mib` MiB each (default 128: 32 Mi elements, golden and candidate = golden + 1e-5-scale noise), after one
unrecorded warm-up call on 2 × SAMPLE elements (numba's compilation or cache load, which outputs above
COMPILED_ABOVE elements take; Polygraphy's imports). Throughput is the input bytes (both arrays)
over the median of `--repeats` calls; extra memory is the child's peak RSS minus its RSS with the arrays made and
warmed up (ru_maxrss, so at most what the call added at its peak). `--large-gib` (default 2) also compares one
pair of outputs of that size with parity only: that it fits, and its wall time and extra memory. Targets
(issue: scale): at least 10 GB/s, extra memory at most 1× one output. Results go to benchmarks/results/compare.json.

    python benchmarks/bench_compare.py [--mib 128] [--repeats 5] [--large-gib 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "compare.json"
TARGETS = {"gb_per_s": 10.0, "extra_per_output": 1.0}
WARM_UP = 1 << 16  # parity.compare.SAMPLE and COMPILED_ABOVE: twice this many elements take the compiled pass
CONTENDERS = ("parity", "parity_atol0", "numpy_abs_max", "polygraphy", "plain_numpy")


def _arrays(elements: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    golden = rng.standard_normal(elements, dtype=np.float32)
    candidate = golden + rng.standard_normal(elements, dtype=np.float32) * np.float32(1e-5)
    return golden, candidate


def _contender(name: str) -> Callable[[np.ndarray, np.ndarray], Any]:
    if name in ("parity", "parity_atol0"):
        from parity.compare import Tolerance, compare_output
        # atol=0: some |d| exceeds atol in every block, so every block's elements outside are counted again
        tol = Tolerance(atol=1e-4 if name == "parity" else 0.0, rtol=1e-3)
        return lambda a, b: compare_output("y", a, b, tol)
    if name == "numpy_abs_max":
        return lambda a, b: np.abs(a - b).max()
    if name == "polygraphy":
        from polygraphy.comparator import CompareFunc, IterationResult
        compare = CompareFunc.simple(atol=1e-4, rtol=1e-3)
        return lambda a, b: compare(IterationResult({"y": a}, runner_name="golden"),
                                    IterationResult({"y": b}, runner_name="candidate"))
    if name == "plain_numpy":
        sys.path.insert(0, str(ROOT))
        from parity.compare import Tolerance
        from tests.test_compare_chunked import plain
        tol = Tolerance(atol=1e-4, rtol=1e-3)
        return lambda a, b: plain(a, b, tol)
    raise ValueError(name)


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(name: str, elements: int, repeats: int) -> dict[str, Any]:
    """One contender in this process: warm-up on small arrays, then `repeats` timed calls on the full ones."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    fn = _contender(name)
    small_a, small_b = _arrays(2 * WARM_UP)
    fn(small_a, small_b)
    golden, candidate = _arrays(elements)
    before = _rss_mib()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(golden, candidate)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    output_mib = golden.nbytes / 2**20
    wall = statistics.median(times)
    return {"wall_s": wall, "times_s": times, "gb_per_s": 2 * golden.nbytes / wall / 1e9,
            "extra_mib": max(0.0, peak - before), "output_mib": output_mib,
            "extra_per_output": max(0.0, peak - before) / output_mib}


def run_child(name: str, elements: int, repeats: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", name, "--elements", str(elements),
                          "--repeats", str(repeats)], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large-gib", type=float, default=2.0)
    parser.add_argument("--child")
    parser.add_argument("--elements", type=int)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.elements, args.repeats)))
        return
    elements = args.mib * 2**20 // 4
    results = {}
    for name in CONTENDERS:
        print(f"{name}: {args.repeats} calls on 2 × {args.mib} MiB float32", file=sys.stderr, flush=True)
        results[name] = run_child(name, elements, args.repeats if name != "plain_numpy" else 1)
    large = None
    if args.large_gib:
        print(f"parity: one call on 2 × {args.large_gib:g} GiB float32", file=sys.stderr, flush=True)
        large = run_child("parity", int(args.large_gib * 2**30) // 4, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor(), "numpy": np.__version__},
        "mib_per_output": args.mib, "repeats": args.repeats, "targets": TARGETS, "results": results,
        "large": large}, indent=2) + "\n")
    print(f"| on 2 × {args.mib} MiB float32, one core | median wall (ms) | GB/s of input | extra memory (MiB) | "
          "× one output |\n|---|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['wall_s'] * 1e3:.1f} | {row['gb_per_s']:.2f} | {row['extra_mib']:.0f} | "
              f"{row['extra_per_output']:.2f} |")
    if large:
        print(f"| parity, 2 × {args.large_gib:g} GiB | {large['wall_s'] * 1e3:.0f} | {large['gb_per_s']:.2f} | "
              f"{large['extra_mib']:.0f} | {large['extra_per_output']:.3f} |")


if __name__ == "__main__":
    main()
