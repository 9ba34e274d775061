"""Sweeps through Hydra's launchers (conf/hydra/launcher/parity_*.yaml): each config composes, and real sweeps on
joblib's processes, Submitit's local executor and a Ray head started on 127.0.0.1 aggregate the reports their jobs
wrote; a job killed without a report is an ERROR row; a sweep over settings of one export exports once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from parity.export_cache import ExportCache

from .conftest import CONF, GOLDEN, SEARCHPATH


def _plugin(module: str, package: str) -> None:
    pytest.importorskip(f"hydra_plugins.{module}", reason=f"{package} is not installed (pip install {package})")


def _sweep(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "sweep" / "sweep_report.json").read_text())


def _jobs(sweep: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {job["num"]: job for job in sweep["jobs"]}


def _report(job: dict[str, Any]) -> dict[str, Any]:
    return json.loads(Path(job["report"]).read_text())


@pytest.mark.parametrize("option, plugin, target, settings", [
    ("parity_joblib", ("hydra_joblib_launcher", "hydra-joblib-launcher"), "JoblibLauncher",
     {"n_jobs": 2, "backend": "loky"}),
    ("parity_submitit_local", ("hydra_submitit_launcher", "hydra-submitit-launcher"), "LocalLauncher",
     {"timeout_min": 60, "gpus_per_node": 0}),
    ("parity_slurm", ("hydra_submitit_launcher", "hydra-submitit-launcher"), "SlurmLauncher",
     {"cpus_per_task": 4, "mem_gb": 16, "partition": None}),
    ("parity_ray", ("hydra_ray_launcher", "hydra-ray-launcher"), "RayLauncher",
     {"ray": {"init": {"address": None, "object_store_memory": None}, "remote": {"num_cpus": 1, "num_gpus": 0}}}),
])
def test_launcher_configs_compose(option: str, plugin: tuple[str, str], target: str, settings: dict[str, Any]) -> None:
    _plugin(*plugin)
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"hydra/launcher={option}"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith(target)
    assert {k: launcher[k] for k in settings} == settings
    if "submitit_folder" in launcher:  # submitit's pickles and logs beside the reports
        assert launcher["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"
    assert Path(cfg.hydra.sweep.dir).is_absolute()  # for jobs that run in another working directory (Ray's)


def test_joblib_sweep_exports_once(cli, tmp_path: Path) -> None:
    """Two jobs at once in joblib's processes, one export between them: one job makes it, the other takes it."""
    _plugin("hydra_joblib_launcher", "hydra-joblib-launcher")
    cache = tmp_path / "cache"
    proc = cli("-m", "hydra/launcher=parity_joblib", "model=mlp", "tolerance=default,classification",
               f"golden.root={GOLDEN}", f"export_cache.dir={cache}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = _sweep(tmp_path)
    assert sweep["verdict"] == "PASS" and sorted(_jobs(sweep)) == [0, 1]
    reports = [_report(job) for job in sweep["jobs"]]
    assert sorted(r["exports"][0]["cache"]["status"] for r in reports) == ["hit", "miss"]
    assert len({r["exports"][0]["sha256"] for r in reports}) == 1
    assert [e["label"] for e in ExportCache(cache).entries()] == ["mlp dynamo"]
    assert [r["job"]["overrides"][1] for r in reports] == ["tolerance=default", "tolerance=classification"]


def test_a_killed_job_is_an_error_row(cli, tmp_path: Path) -> None:
    """A job whose process is killed (as by the OOM killer) leaves no report: the sweep still aggregates the
    others, the lost job is an ERROR row saying so, and the exit code is 2."""
    _plugin("hydra_joblib_launcher", "hydra-joblib-launcher")
    proc = cli("-m", "hydra/launcher=parity_joblib", SEARCHPATH, "mode=golden", "model=mlp,killed",
               f"golden.root={tmp_path / 'golden'}",
               env={"PARITY_TEST_KILL_AFTER": str(tmp_path / "sweep" / "0-*" / "report.json")})
    assert proc.returncode == 2, proc.stderr[-2000:]
    jobs = _jobs(_sweep(tmp_path))
    assert jobs[0]["verdict"] == "PASS" and (tmp_path / "golden" / "mlp" / "default").is_dir()
    assert jobs[1]["verdict"] == "ERROR" and jobs[1]["report"] is None
    assert jobs[1]["error"].startswith("no report: job 1 ended without writing ")
    assert "the launcher stopped the sweep: TerminatedWorkerError" in jobs[1]["error"]
    assert jobs[1]["overrides"] == ["mode=golden", "model=killed", f"golden.root={tmp_path / 'golden'}"]
    assert "job 1: ERROR: no report: job 1" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith("ERROR  sweep of 2 job(s)")


def test_submitit_local_sweep(cli, tmp_path: Path) -> None:
    _plugin("hydra_submitit_launcher", "hydra-submitit-launcher")
    proc = cli("-m", "hydra/launcher=parity_submitit_local", "model=mlp", "backend=ort_cpu,torch_cpu",
               f"golden.root={GOLDEN}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = _sweep(tmp_path)
    assert [(j["num"], j["verdict"]) for j in sweep["jobs"]] == [(0, "PASS"), (1, "PASS")]
    assert {r["backend"] for r in sweep["rows"]} == {"ort_cpu", "torch_cpu"}
    assert list((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))  # the jobs ran through submitit


@pytest.fixture
def ray_head():
    """A Ray head on 127.0.0.1 (a port of its own, a short temp dir for its sockets), stopped afterwards."""
    _plugin("hydra_ray_launcher", "hydra-ray-launcher")
    ray = Path(sys.executable).with_name("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run([str(ray), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                              "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                              f"--temp-dir={temp}"], capture_output=True, text=True, env=env, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_ray_sweep_on_a_local_head(cli, tmp_path: Path, ray_head: str) -> None:
    env = {"RAY_USAGE_STATS_ENABLED": "0"}
    # the plugin's own config joins no running cluster: it adds object_store_memory, which Ray refuses there
    refused = cli("-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={ray_head}", "model=mlp",
                  f"golden.root={GOLDEN}", env=env)
    assert refused.returncode == 2
    assert "object_store_memory must not be provided" in _jobs(_sweep(tmp_path))[0]["error"]
    proc = cli("-m", "hydra/launcher=parity_ray", f"hydra.launcher.ray.init.address={ray_head}", "model=mlp",
               "backend=ort_cpu,torch_cpu", f"golden.root={GOLDEN}", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = _sweep(tmp_path)
    assert [(j["num"], j["verdict"]) for j in sweep["jobs"]] == [(0, "PASS"), (1, "PASS")]
    assert all(Path(j["report"]).is_relative_to(tmp_path / "sweep") for j in sweep["jobs"])


def test_jobs_are_numbered_as_the_sweeper_numbers_them_and_stale_reports_are_left_out(cli, tmp_path: Path) -> None:
    """The job list the aggregate expects follows BasicSweeper (hydra.sweeper.params first, then the command
    line), read back from a real sweep; a report older than the sweep (an earlier sweep's, in the same directory)
    does not count, and a job whose report is gone is "no report"."""
    import shutil

    from omegaconf import OmegaConf

    from parity.report.aggregate import aggregate, expected_jobs

    proc = cli("-m", SEARCHPATH, "hydra/sweeper=seeds", "mode=golden", "model=mlp", "golden.overwrite=true",
               f"golden.root={tmp_path / 'golden'}", "inputs.num_samples=2,3")  # seeds: inputs.seed=1,2
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep_dir = tmp_path / "sweep"
    expected = expected_jobs(OmegaConf.load(sweep_dir / "multirun.yaml"))
    reports = {r["job"]["num"]: r for r in (json.loads(p.read_text()) for p in sweep_dir.glob("*/report.json"))}
    assert len(expected) == 4 and {n: r["job"]["overrides"] for n, r in reports.items()} == dict(enumerate(expected))
    assert expected[1] == ["inputs.seed=1", "mode=golden", "model=mlp", "golden.overwrite=True",
                           f"golden.root={tmp_path / 'golden'}", "inputs.num_samples=3"]
    stale = sweep_dir / "1-from-an-earlier-sweep"
    shutil.copytree(next(sweep_dir.glob("1-*")), stale)
    os.utime(stale / "report.json", (1000.0, 1000.0))
    next(sweep_dir.glob("1-mlp*/report.json")).unlink()
    jobs = {j.num: j for j in aggregate(sweep_dir, "report.json", [], expected).jobs}
    assert sorted(jobs) == [0, 1, 2, 3] and [jobs[n].verdict.value for n in (0, 2, 3)] == ["PASS"] * 3
    assert jobs[1].verdict.value == "ERROR" and jobs[1].error.startswith("no report: job 1 ended without writing")
    assert jobs[1].overrides == tuple(expected[1])


def test_a_bad_option_in_a_launched_sweep_stays_a_configuration_error(cli, tmp_path: Path) -> None:
    """The sweeper validates every job's config before launching: that failure is the user's config, one line,
    never "no report" rows for a launcher that did not fail."""
    _plugin("hydra_joblib_launcher", "hydra-joblib-launcher")
    proc = cli("-m", "hydra/launcher=parity_joblib", "model=mlp", "backend=ort_cpu,nope")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("parity: configuration error: no backend option 'nope'")
    assert not (tmp_path / "sweep" / "sweep_report.json").exists()
