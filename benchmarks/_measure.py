"""Run one command as the only child; print its wall time (s) and peak RSS (MiB) as JSON."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB, of the one child
print(json.dumps({"wall_s": wall, "peak_mib": peak_kib / 1024, "rc": proc.returncode,
                  "stderr_tail": proc.stderr[-500:] if proc.returncode else ""}))
