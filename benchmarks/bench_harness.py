"""Accuracy of parity's own benchmark harness (issue: latency benchmarks).

For each (model, batch size): parity's `mode=bench` median for ORT CPU vs a bare `session.run` loop
(benchmarks/bare_ort_loop.py) on the same ONNX file, the same inputs, the same thread settings, warm-up and
run count; each side run `--repeats` times, interleaved. Reports the difference of the mean medians
(target within 5 %) and the repeat-to-repeat coefficient of variation of each side's median (target <= 5 %).
Results: benchmarks/results/harness.json; the printed table goes into BENCHMARKS.md.

    python benchmarks/bench_harness.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "harness.json"
CASES = [("dcnv2", 32), ("dcnv2", 512), ("resnet18", 1), ("resnet18", 8)]
THREADS = (2, 1)  # intra-op, inter-op
WARMUP, RUNS = 20, 200


def parity_median(model: str, batch: int, run_dir: Path) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "parity", "mode=bench", f"model={model}", f"bench.batch_sizes=[{batch}]",
           f"bench.warmup_runs={WARMUP}", f"bench.runs={RUNS}", "bench.min_seconds=0", "bench.plot=false",
           f"backend.intra_op_num_threads={THREADS[0]}", f"backend.inter_op_num_threads={THREADS[1]}",
           "report.formats=[json]", f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    report = json.loads((run_dir / "report.json").read_text())
    return report["bench"]["results"][0]["median_ms"], report


def bare_median(onnx_path: str, inputs: Path) -> float:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bare_ort_loop.py"), onnx_path, str(inputs),
                          str(WARMUP), str(RUNS), *map(str, THREADS)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from parity import inputs as inputs_mod
    from tests.conftest import compose_cfg

    tmp = Path(tempfile.mkdtemp(prefix="parity-harness-"))
    rows = []
    for model, batch in CASES:
        cfg = compose_cfg([f"model={model}"])
        feeds = inputs_mod.generate(cfg.model.inputs, batch, int(cfg.bench.seed))  # what parity's bench feeds
        inputs = tmp / f"{model}-{batch}.npz"
        np.savez(inputs, **feeds)
        ours, bare = [], []
        for i in range(args.repeats):
            median, report = parity_median(model, batch, tmp / f"{model}-{batch}-{i}")
            ours.append(median)
            bare.append(bare_median(report["exports"][0]["path"], inputs))
            print(f"{model} b={batch} repeat {i + 1}: parity {ours[-1]:.4f} ms, bare {bare[-1]:.4f} ms",
                  file=sys.stderr, flush=True)
        mean_ours, mean_bare = statistics.mean(ours), statistics.mean(bare)
        rows.append({
            "model": model, "batch_size": batch, "parity_ms": ours, "bare_ms": bare,
            "parity_mean_median_ms": mean_ours, "bare_mean_median_ms": mean_bare,
            "difference_pct": 100 * (mean_ours - mean_bare) / mean_bare,
            "parity_cv_pct": 100 * statistics.stdev(ours) / mean_ours,
            "bare_cv_pct": 100 * statistics.stdev(bare) / mean_bare,
        })
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.platform(), "threads": THREADS, "warmup": WARMUP,
                                   "runs": RUNS, "repeats": args.repeats, "rows": rows}, indent=2) + "\n")
    print("| model | batch | parity median (ms) | bare loop median (ms) | difference | parity CV over repeats | bare CV |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch_size']} | {r['parity_mean_median_ms']:.4f} | {r['bare_mean_median_ms']:.4f} "
              f"| {r['difference_pct']:+.1f} % | {r['parity_cv_pct']:.1f} % | {r['bare_cv_pct']:.1f} % |")
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
