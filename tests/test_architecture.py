"""The architecture's promises: one typed plan, plugins owning their config, derived compatibility, one artifact
cache, writers by name, the sweep's exit code, aggregation through the golden store."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from parity import plugins
from parity.config import Check
from parity.errors import ConfigError
from parity.plan import JobContext, build_plan
from tests.conftest import GOLDEN, REPO, SEARCHPATH, compose_cfg

# -- the plan ---------------------------------------------------------------------------------------------------


def test_the_plan_is_typed_frozen_and_leaves_the_config_as_composed() -> None:
    cfg = compose_cfg(["model=mlp", "+tolerance.per_output.logits.atol=0.5", "inputs.batch_sizes=[1,2]"])
    before = OmegaConf.to_yaml(cfg)
    plan = build_plan(cfg)
    assert OmegaConf.to_yaml(cfg) == before  # validated and typed, never written
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.mode = "golden"  # type: ignore[misc]
    assert plan.batch_sizes == (1, 2) and plan.bench_batch_sizes == (1, 2)
    assert dict(plan.input_axes) == {"x": 0} and dict(plan.output_axes) == {"logits": 0}
    assert plan.backend_tolerance("logits").atol == 0.5 and plan.backend_tolerance("other").atol == 1e-4
    assert plan.reference_tolerance is plan.backend_tolerance  # the default tolerance judges both checks
    assert type(plan.exporter).__name__ == "DynamoExporterConfig" and plan.exporter.opset == 18


def test_the_reference_tolerance_is_explicit_in_the_transform_presets() -> None:
    plan = build_plan(compose_cfg(["model=mlp", "transform=int8_dynamic", "+tolerance.per_output.logits.rtol=0.5"]))
    assert (plan.backend_tolerance.default.check, plan.backend_tolerance.default.rtol) == (Check.l2_rel, 0.1)
    reference = plan.reference_tolerance
    assert (reference.default.check, reference.default.atol, reference.default.rtol) == (Check.elementwise, 1e-4,
                                                                                        1e-3)
    assert reference("logits").rtol == 0.5  # per_output entries apply to the reference check too


def test_numerics_reach_each_plugin_through_its_own_hook() -> None:
    strict = {b: build_plan(compose_cfg(["model=mlp", f"backend={b}", "numerics=strict"]))
              for b in ("ort_cpu", "openvino_cpu", "tensorrt", "torch_cpu")}
    assert strict["ort_cpu"].backend.graph_optimization_level == "disable_all"
    assert strict["openvino_cpu"].backend.inference_precision == "f32"
    assert strict["tensorrt"].backend.tf32 is False
    assert strict["torch_cpu"].exporter.constant_folding is False
    default = build_plan(compose_cfg(["model=mlp", "backend=tensorrt"]))
    assert default.backend.tf32 is True and default.exporter.constant_folding is True


def test_builtin_plugins_declare_their_schema_and_kinds() -> None:
    from parity.frameworks import framework_names

    for group in plugins.GROUPS:
        classes = plugins.registered(group)
        assert classes, group
        for cls in classes:
            assert cls.schema and dataclasses.is_dataclass(cls.Config), cls
            assert cls.Config._target_ == f"{cls.__module__}.{cls.__qualname__}", cls  # its own default target
    for cls in plugins.registered("exporter"):
        taken = [f for f in framework_names() if cls.takes(f)]
        assert taken == ([cls.source] if cls.source != "any" else framework_names()) and cls.produces == "onnx", cls
    for cls in plugins.registered("backend"):
        assert cls.accepts and cls.accepts <= {"onnx", *framework_names()}


def test_a_target_that_is_not_a_plugin_of_its_group_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="is not a parity exporter"):
        build_plan(compose_cfg(["model=mlp", "exporter._target_=parity.backends.onnxruntime.OrtBackend"]))
    with pytest.raises(ConfigError, match="cannot be imported"):
        build_plan(compose_cfg(["model=mlp", "backend._target_=no.such.Backend"]))


def test_frameworks_and_models_do_not_import_each_other() -> None:
    code = ("import sys\n"
            "import parity.frameworks.torch, parity.frameworks.keras\n"
            "assert not [m for m in sys.modules if m.startswith('parity.models')], 'frameworks import models'\n"
            "import parity.models.mlp\n"
            "print('OK')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr


# -- plugins outside the repository ---------------------------------------------------------------------------


def test_an_outside_plugin_composes_and_its_own_option_is_typed(cli, tmp_path: Path) -> None:
    proc = cli(SEARCHPATH, "model=mlp", "exporter=perturbing", f"golden.root={GOLDEN}")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]  # its planted fault: a FAIL
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["exports"][0]["exporter"] == "perturbing" and report["exports"][0]["options"]["delta"] == 0.5
    proc = cli(SEARCHPATH, "model=mlp", "exporter=perturbing", "exporter.delta=2.5", f"golden.root={GOLDEN}")
    assert proc.returncode == 1 and json.loads((tmp_path / "run" / "report.json").read_text())[
        "exports"][0]["options"]["delta"] == 2.5


@pytest.mark.parametrize("override, needle", [
    ("exporter.delta=abc", "exporter.delta: Value 'abc' of type 'str' could not be converted to Float"),
    ("+exporter.detla=1.0", "exporter.detla: Key 'detla' not in 'PerturbingExporterConfig'"),
])
def test_an_outside_plugin_rejects_a_bad_value_and_a_typo_in_one_line(cli, override: str, needle: str) -> None:
    proc = cli(SEARCHPATH, "model=mlp", "exporter=perturbing", override)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and proc.stdout == "", proc.stderr
    assert lines[0].startswith("parity: configuration error:") and needle in lines[0], lines


# -- one artifact cache -------------------------------------------------------------------------------------------


def test_verify_plus_bench_times_the_artifact_it_verified(run_parity) -> None:
    bench = ["bench.runs=3", "bench.min_seconds=0", "bench.warmup_runs=0", "bench.plot=false"]
    report, code = run_parity(["model=mlp", "mode=verify+bench", "inputs.batch_sizes=[2,4]",
                               "bench.batch_sizes=[1,4,16]", *bench])
    (export,) = report["exports"]  # one dynamic-batch export for every verify and bench size
    assert code == 0 and [r["artifact_sha256"] for r in report["bench"]["results"]] == [export["sha256"]] * 3
    static, code = run_parity(["model=mlp", "mode=verify+bench", "exporter=torchscript", "exporter.dynamic_batch=false",
                               "inputs.batch_sizes=[2]", "bench.batch_sizes=[2,8]", *bench])
    exports = {e["batch_size"]: e["sha256"] for e in static["exports"]}
    assert code == 0 and list(exports) == [2, 8]  # batch 2 verified then timed; batch 8 exported for the bench
    assert [r["artifact_sha256"] for r in static["bench"]["results"]] == [exports[2], exports[8]]


# -- report writers by name ----------------------------------------------------------------------------------------


def test_report_formats_pick_writers_by_name(run_parity, tmp_path: Path, capsys) -> None:
    import tests.plugins  # noqa: F401  (registers the verdict_line writer, as a user's module would)

    report, code = run_parity(["model=mlp", "backend=torch_cpu", "report.formats=[verdict_line]"])
    assert code == 0 and (tmp_path / "run" / "verdict.txt").read_text() == "PASS mlp\n"
    assert not (tmp_path / "run" / "report.json").exists() and capsys.readouterr().out == ""
    report, code = run_parity(["model=mlp", "report.formats=[json,bogus]"])
    assert code == 2 and "report.formats names unknown formats ['bogus']" in report["error"]


# -- sweeps ----------------------------------------------------------------------------------------------------------


def test_sweep_aggregation_reads_goldens_through_the_store_and_only_listed_candidates(tmp_path: Path,
                                                                                      golden_copy: Path) -> None:
    from parity.pipeline import run_job
    from parity.report.aggregate import aggregate

    jobs = []
    for num, backend in enumerate(["ort_cpu", "torch_cpu"]):
        out = tmp_path / "sweep" / str(num)
        cfg = compose_cfg([f"golden.root={golden_copy}", "model=mlp", f"backend={backend}", "report.formats=[json]"])
        report = run_job(cfg, JobContext(output_dir=out, start_dir=tmp_path, overrides=(f"backend={backend}",),
                                         num=num))
        jobs.append({"output_dir": str(out), "num": num, "overrides": [f"backend={backend}"], "error": None,
                     "report_data": report.to_dict()})
    np.savez_compressed(tmp_path / "sweep" / "0" / "candidates_b2.npz", logits=np.zeros((2, 8), np.float32))
    (matrix,) = aggregate(tmp_path / "sweep", "report.json", jobs).pairwise  # batch 4 only: b2 is no listed file
    assert matrix["batch_size"] == 4 and matrix["labels"] == ["golden", "dynamo×ort_cpu", "torch_cpu"]
    # a well-formed npz with other values in place of the golden's outputs: its SHA-256 no longer matches, so
    # the store refuses it and the matrix goes without the golden rather than compare against tampered data
    outputs = golden_copy / "mlp" / "default" / "outputs.npz"
    with np.load(outputs) as data:
        np.savez_compressed(outputs, **{k: data[k] + 1.0 for k in data.files})
    (matrix,) = aggregate(tmp_path / "sweep", "report.json", jobs).pairwise
    assert matrix["labels"] == ["dynamo×ort_cpu", "torch_cpu"]


def test_the_exit_code_is_the_sweeps_aggregate_when_one_ran() -> None:
    from parity.report import outcome

    outcome.reset()
    try:
        outcome.record_job(0)
        assert outcome.exit_code() == 0
        outcome.record_sweep(2)  # e.g. a job that left no report: an ERROR only the aggregate knows of
        assert outcome.exit_code() == 2
    finally:
        outcome.reset()


def test_localisation_judges_each_tensor_with_the_tolerances_own_check() -> None:
    """One element off by 0.01 in 100: outside elementwise's 1e-4 + 1e-3·|g|, inside a 1 % relative L2."""
    from parity.compare import Tolerance
    from parity.diagnostics.localize import Marked, _diverges

    node = Marked(tensor="t", node="Conv_3", op_type="Conv", index=3)
    ref = np.ones(100, np.float32)
    cand = ref.copy()
    cand[7] += 0.01
    elementwise = _diverges(node, ref, cand, Tolerance(atol=1e-4, rtol=1e-3, check=Check.elementwise))
    assert elementwise is not None and elementwise.node == "Conv_3" and "outside" in elementwise.reason
    assert _diverges(node, ref, cand, Tolerance(atol=0.0, rtol=0.01, check=Check.l2_rel)) is None
    assert _diverges(node, ref, cand, Tolerance(atol=0.02, rtol=0.0, check=Check.max)) is None


def test_a_backend_is_told_every_batch_size_of_verify_and_bench(run_parity) -> None:
    """TensorRT builds its optimisation profile from these: the bench's sizes must be inside it too."""
    report, code = run_parity(["model=mlp", "mode=verify+bench", "inputs.batch_sizes=[2,4]", "bench.batch_sizes=[1,16]",
                               "backend._target_=tests.plugins.ShapeRecordingBackend", "bench.runs=2",
                               "bench.min_seconds=0", "bench.warmup_runs=0", "bench.plot=false"])
    assert code == 0, report["error"]
    assert report["backend"]["runtime"]["expected_batch_sizes"] == [1, 2, 4, 16]
    plan = build_plan(compose_cfg(["model=mlp", "inputs.batch_sizes=[2,4]", "bench.batch_sizes=[1,16]"]))
    assert plan.backend_sizes((2, 4)) == (2, 4)  # verify alone: its own sizes


def test_a_repeat_that_fails_is_that_sizes_error_and_the_job_goes_on(run_parity) -> None:
    report, code = run_parity(["model=mlp", "checks.repeats=2", "inputs.batch_sizes=[2,4]",
                               "backend._target_=tests.plugins.RepeatFailingBackend"])
    backend = [(c["batch_size"], c["verdict"]) for c in report["checks"] if c["check"] == "backend"]
    assert code == 2 and report["error"] is None and backend == [(2, "PASS"), (2, "ERROR"), (4, "PASS"), (4, "ERROR")]
    assert "device lost on a repeated run" in report["checks"][2]["message"]
    assert [c["batch_size"] for c in report["candidates"]] == [2, 4]


def test_the_pairwise_matrix_has_no_distance_to_a_nan_candidate(tmp_path: Path) -> None:
    from parity.pipeline import run_job
    from parity.report.aggregate import aggregate

    jobs = []
    for num, extra in enumerate([["backend=torch_cpu"], ["backend._target_=tests.plugins.NaNBackend",
                                                         "backend.name=ort_nan"]]):
        out = tmp_path / "sweep" / str(num)
        cfg = compose_cfg([f"golden.root={GOLDEN}", "model=mlp", "report.formats=[json]", *extra])
        report = run_job(cfg, JobContext(output_dir=out, start_dir=tmp_path, overrides=tuple(extra), num=num))
        jobs.append({"output_dir": str(out), "num": num, "overrides": [], "error": None,
                     "report_data": report.to_dict()})
    (matrix,) = aggregate(tmp_path / "sweep", "report.json", jobs).pairwise
    pairs = {(p["a"], p["b"]): p for p in matrix["pairs"]}
    assert matrix["labels"] == ["golden", "torch_cpu", "dynamo×ort_nan"], matrix
    assert pairs[("golden", "torch_cpu")]["max_abs"] is not None
    assert pairs[("golden", "dynamo×ort_nan")]["max_abs"] is None and pairs[("torch_cpu", "dynamo×ort_nan")][
        "mean_abs"] is None


def test_the_sweep_table_prints_a_job_that_left_no_report() -> None:
    from parity.report.formats.table import sweep_table
    from parity.report.model import SweepRow
    from parity.results import Verdict

    row = SweepRow(job=3, model=None, exporter=None, backend=None, verdict=Verdict.ERROR, message="job raised")
    assert "ERROR" in sweep_table([row.to_dict()])
