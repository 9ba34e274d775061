"""GPU paths: run where a CUDA device is present (nox -s tests_gpu), skipped with the reason elsewhere."""

from __future__ import annotations

import pytest

from tests.conftest import cuda_reason

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(cuda_reason() is not None, reason=str(cuda_reason()))]


def test_torch_cuda_matches_the_cpu_golden(run_parity) -> None:
    report, code = run_parity(["model=mlp", "backend=torch_cuda"])
    assert code == 0, report
    runtime = report["backend"]["runtime"]
    assert runtime["device"] == "cuda:0" and runtime["device_name"] and runtime["cuda"]


def test_torch_cuda_leaves_the_cpu_reference_on_cpu(run_parity) -> None:
    """The reference check runs the source model on the CPU even where the backend moved a copy to the GPU: its
    numbers are bit for bit those of a torch_cpu job, batch by batch, while the backend's ran on cuda:0."""
    on_cpu, _ = run_parity(["model=mlp", "backend=torch_cpu", "inputs.batch_sizes=[2,4]"])
    report, code = run_parity(["model=mlp", "backend=torch_cuda", "inputs.batch_sizes=[2,4]"])
    assert code == 0 and [c["verdict"] for c in report["checks"]] == ["PASS"] * 4
    assert [(c["check"], c["batch_size"]) for c in report["checks"]] == \
        [("reference", 2), ("backend", 2), ("reference", 4), ("backend", 4)]

    def reference_metrics(r: dict) -> list[dict]:
        return [c["outputs"][0]["metrics"] for c in r["checks"] if c["check"] == "reference"]

    assert reference_metrics(report) == reference_metrics(on_cpu)
    assert report["backend"]["runtime"]["device_name"] and "device_name" not in on_cpu["backend"]["runtime"]
