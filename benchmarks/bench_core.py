"""Core overhead benchmark: parity's default job and --help against hand-written equivalents.

Each command runs `--repeats` times (default 5), interleaved so drift hits both sides alike;
the median wall time and the median peak RSS are compared. Results go to
benchmarks/results/core.json; paste the printed table into BENCHMARKS.md.

    python benchmarks/bench_core.py [--repeats N]      (or: nox -s benchmark)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "core.json"
TARGETS = {"default_job": 1.25, "help": 1.5}


def measure(cmd: list[str]) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "_measure.py"), *cmd], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"benchmark command failed ({result['rc']}): {' '.join(cmd)}\n{result['stderr_tail']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="parity-bench-"))
    py = sys.executable
    pairs = {
        "default_job": (
            [py, "-m", "parity", f"hydra.run.dir={tmp}/run"],
            [py, str(ROOT / "benchmarks" / "minimal_default.py")],
        ),
        "help": (
            [py, "-m", "parity", "--help"],
            [py, str(ROOT / "benchmarks" / "bare_hydra_app.py"), "--help"],
        ),
    }
    samples: dict[str, dict[str, list[dict]]] = {k: {"parity": [], "baseline": []} for k in pairs}
    for name, (ours, baseline) in pairs.items():
        measure(ours), measure(baseline)  # warm the file cache once, unrecorded
        for i in range(args.repeats):
            samples[name]["parity"].append(measure(ours))
            samples[name]["baseline"].append(measure(baseline))
            print(f"{name}: repeat {i + 1}/{args.repeats}", file=sys.stderr, flush=True)
    summary = {}
    for name, sides in samples.items():
        med = {side: {"wall_s": statistics.median(r["wall_s"] for r in runs),
                      "peak_mib": statistics.median(r["peak_mib"] for r in runs)} for side, runs in sides.items()}
        summary[name] = {
            **med,
            "wall_ratio": med["parity"]["wall_s"] / med["baseline"]["wall_s"],
            "peak_ratio": med["parity"]["peak_mib"] / med["baseline"]["peak_mib"],
            "target_ratio": TARGETS[name],
            "raw": sides,
        }
    import numpy
    import torch

    document = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "numpy": numpy.__version__},
        "repeats": args.repeats,
        "results": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print("| measurement | parity | hand-written | ratio | target |")
    print("|---|---|---|---|---|")
    for name, r in summary.items():
        print(f"| {name} wall (median s) | {r['parity']['wall_s']:.2f} | {r['baseline']['wall_s']:.2f} | "
              f"{r['wall_ratio']:.2f}× | ≤ {r['target_ratio']}× |")
        print(f"| {name} peak RSS (median MiB) | {r['parity']['peak_mib']:.0f} | {r['baseline']['peak_mib']:.0f} | "
              f"{r['peak_ratio']:.2f}× | ≤ {r['target_ratio']}× |")
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
