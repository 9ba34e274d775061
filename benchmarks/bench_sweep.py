"""A 4-job sweep (resnet18 over 4 backends), as it ran before (jobs one after another, every job exporting) and on
joblib's processes with the export cache, side by side on this machine. Writes benchmarks/results/sweep.json.

    python benchmarks/bench_sweep.py [--repeats N] [--jobs 2] [--backends ort_cpu,openvino_cpu,torch_cpu,ort_web]

Each variant is the real `python -m parity -m ...` command in a fresh process, timed from start to exit:
  serial         the basic launcher, export_cache.enabled=false (what a sweep did before the cache)
  serial+cache   the basic launcher, a fresh (empty) export cache
  joblib+cache   hydra/launcher=parity_joblib with --jobs workers, a fresh export cache
  joblib+warm    the same, on the cache the previous variant filled (a re-run of an unchanged sweep)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "sweep.json"


def run(args: list[str], env: dict[str, str]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "parity", "-m", *args, f"hydra.sweep.dir={tmp}/sweep"],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode not in (0, 1):  # a FAIL is a result; an ERROR means the numbers mean nothing
            sys.exit(f"sweep failed ({proc.returncode}): {' '.join(args)}\n{proc.stdout[-3000:]}\n"
                     f"{proc.stderr[-3000:]}")
        sweep = json.loads((Path(tmp) / "sweep" / "sweep_report.json").read_text())
        statuses = []
        for job in sweep["jobs"]:
            report = json.loads(Path(job["report"]).read_text())
            statuses += [(e.get("cache") or {}).get("status", "off") for e in report["exports"]]
        return wall, {"verdicts": [j["verdict"] for j in sweep["jobs"]], "exports": statuses}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--backends", default="ort_cpu,openvino_cpu,torch_cpu,ort_web")
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args()
    base = [f"model={args.model}", f"backend={args.backends}"]
    env = {**os.environ, "PARITY_READONLY_GOLDENS": str(ROOT / "golden")}
    cache_dir = Path(tempfile.mkdtemp(prefix="bench-sweep-cache-"))
    variants = {
        "serial": [*base, "export_cache.enabled=false"],
        "serial+cache": [*base, f"export_cache.dir={cache_dir}/serial"],
        "joblib+cache": ["hydra/launcher=parity_joblib", f"hydra.launcher.n_jobs={args.jobs}", *base,
                         f"export_cache.dir={cache_dir}/joblib"],
        "joblib+warm": ["hydra/launcher=parity_joblib", f"hydra.launcher.n_jobs={args.jobs}", *base,
                        f"export_cache.dir={cache_dir}/joblib"],
    }
    results: dict[str, dict] = {}
    try:
        for repeat in range(args.repeats):
            for name, words in variants.items():
                if name != "joblib+warm":  # cold: every repeat starts from an empty cache
                    shutil.rmtree(cache_dir / name.split("+")[0], ignore_errors=True)
                wall, detail = run(words, env)
                entry = results.setdefault(name, {"command": "python -m parity -m " + " ".join(words), "wall_s": [],
                                                  **detail})
                entry["wall_s"].append(round(wall, 2))
                print(f"{name:14s} run {repeat + 1}: {wall:6.1f} s  exports {detail['exports']}", flush=True)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    serial = min(results["serial"]["wall_s"])
    for entry in results.values():
        entry["best_s"] = min(entry["wall_s"])
        entry["speedup"] = round(serial / entry["best_s"], 2)
    document = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()},
                "model": args.model, "backends": args.backends.split(","), "jobs": args.jobs,
                "repeats": args.repeats, "variants": results}
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print("\n| variant | best wall (s) | speed-up vs serial | exports (per job) |\n|---|---|---|---|")
    for name, entry in results.items():
        print(f"| {name} | {entry['best_s']:.1f} | {entry['speedup']:.2f}x | {', '.join(entry['exports'])} |")
    print(f"\nwritten: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
