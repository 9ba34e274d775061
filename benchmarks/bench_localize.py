"""localize=source's cost: a verify job with it against the same plain verify job, on resnet18 and centerpoint.

Each command runs `--repeats` times (default 3) after one unrecorded warm-up, interleaved with its baseline, each
as the only child of benchmarks/_measure.py (wall clock, peak RSS). Targets (issue: localisation): peak memory at
most 2x and wall time at most 3x a plain verify. Results go to benchmarks/results/localize.json.

    python benchmarks/bench_localize.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import measure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "localize.json"
TARGETS = {"wall_s": 3.0, "peak_mib": 2.0}
MODELS = {"resnet18": ["model=resnet18", "exporter=torchscript"],
          "centerpoint": ["model=centerpoint", "exporter=torchscript"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="parity-bench-localize-"))
    py = sys.executable
    samples: dict[str, dict[str, list[dict]]] = {}
    for name, overrides in MODELS.items():
        plain = [py, "-m", "parity", *overrides, f"hydra.run.dir={tmp}/{name}-plain"]
        located = [py, "-m", "parity", *overrides, "localize=source", f"hydra.run.dir={tmp}/{name}-source"]
        measure(plain), measure(located)
        samples[name] = {"verify": [], "localize_source": []}
        for i in range(args.repeats):
            samples[name]["verify"].append(measure(plain))
            samples[name]["localize_source"].append(measure(located))
            print(f"{name}: repeat {i + 1}/{args.repeats}", file=sys.stderr, flush=True)
    summary = {}
    for name, sides in samples.items():
        for key in TARGETS:
            ours = statistics.median(s[key] for s in sides["localize_source"])
            base = statistics.median(s[key] for s in sides["verify"])
            summary[f"{name} {key}"] = {"localize_source": ours, "verify": base, "ratio": ours / base,
                                        "target": TARGETS[key]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": {"platform": platform.platform(), "python": platform.python_version(),
                                               "processor": platform.processor()},
                                   "repeats": args.repeats, "summary": summary, "samples": samples}, indent=2))
    print("| measurement | verify | verify + localize=source | ratio | target |\n|---|---|---|---|---|")
    for key, row in summary.items():
        print(f"| {key} (median) | {row['verify']:.2f} | {row['localize_source']:.2f} | {row['ratio']:.2f}× | "
              f"≤ {row['target']:g}× |")


if __name__ == "__main__":
    main()
