"""A bare ONNX Runtime timing loop: the baseline parity's bench mode is checked against.

    python benchmarks/bare_ort_loop.py MODEL.onnx INPUTS.npz WARMUP RUNS INTRA INTER  -> prints the median ms
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, inputs, warmup, runs, intra, inter = sys.argv[1:7]
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(intra)
    options.inter_op_num_threads = int(inter)
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    with np.load(inputs) as data:
        feeds = {name: np.ascontiguousarray(data[name]) for name in data.files}
    for _ in range(int(warmup)):
        session.run(None, feeds)
    times = []
    for _ in range(int(runs)):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    print(statistics.median(times) * 1e3)


if __name__ == "__main__":
    main()
