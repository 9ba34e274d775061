"""parity inside your own pytest suite (registered as a `pytest11` plugin: installing parity enables it).

Two ways in:

- The `parity` fixture runs a composed config in-process and returns the job's result:

      def test_my_export(parity):
          result = parity.run("model=my_model", "exporter=dynamo", "backend=ort_cpu")
          result.assert_pass()          # fails the test with the verdict table

- Check files: every `parity_*.yaml` under the test paths is collected; each job it lists (sweep syntax such as
  `exporter=dynamo,torchscript` expands like `-m`) becomes one test item per model output, carrying that output's
  verdict over every check and batch size:

      # tests/parity_mlp.yaml
      config_dir: conf               # optional: your own configs, relative to this file (like --config-dir)
      overrides: [model=mlp]         # optional: common to every job
      jobs:
        - [exporter=dynamo, "backend=ort_cpu,torch_cpu"]
        - [exporter=torchscript]

Goldens are never written unless asked: `--parity-update-goldens` makes each job's golden first
(mode=golden golden.overwrite=true), once per model and input set in the session; without it a missing golden is
an ERROR naming the option. Relative golden roots resolve against pytest's rootdir, as `python -m parity` run
there would. A SKIP is a skipped test (a failure under report.skip_is=fail); FAIL and ERROR fail the test with
parity's message and metrics. Run directories go under pytest's temporary directory (`--parity-output` keeps them
somewhere else).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PATTERN = re.compile(r"^parity_.*\.ya?ml$")
WRITES_GOLDENS = ("golden", "import")  # the modes that write a golden
READS_GOLDENS = ("verify", "bench", "verify+bench", "export")  # the modes that need one (bench: to verify first)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "parity model-conversion checks")
    group.addoption("--parity-update-goldens", action="store_true", default=False,
                    help="write (replace) each job's golden before verifying against it; never done otherwise")
    group.addoption("--parity-output", default=None, metavar="DIR",
                    help="where run directories go (default: pytest's temporary directory)")
    group.addoption("--parity-config-dir", default=None, metavar="DIR",
                    help="your own configs for the parity fixture (like python -m parity --config-dir)")


@dataclass
class ParityResult:
    """One job's outcome: its report in JSON form, its verdict, exit code and run directory."""

    report: dict[str, Any]
    exit_code: int
    output_dir: Path
    overrides: tuple[str, ...]

    @property
    def verdict(self) -> str:
        return self.report["verdict"]

    def table(self) -> str:
        from parity.report.formats.table import job_table

        return job_table(self.report)

    def outputs(self, name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(check, output) pairs of one model output over every check and batch size."""
        return [(c, o) for c in self.report["checks"] for o in c["outputs"] if o["name"] == name]

    def assert_pass(self) -> None:
        """Fail (pytest.fail, no traceback) unless the job PASSed; its table says why."""
        if self.verdict != "PASS" or self.exit_code != 0:
            pytest.fail(f"parity {self.verdict} ({' '.join(self.overrides)}):\n{self.table()}", pytrace=False)


@dataclass
class Session:
    """What the runners of one pytest session share: where runs go, their count, the goldens made."""

    output_root: Path
    count: int = 0
    made: set[tuple[str, str, str]] = field(default_factory=set)


@dataclass
class Runner:
    """Composes and runs parity jobs in this process (the `parity` fixture)."""

    start_dir: Path
    session: Session
    update_goldens: bool
    config_dir: Path | None = None

    def compose(self, overrides: list[str]) -> Any:
        from hydra import compose, initialize_config_dir

        from parity.config import register_configs

        register_configs()
        conf = Path(__file__).resolve().parent / "conf"
        extra = [f"hydra.searchpath=[file://{self.config_dir.resolve()}]"] if self.config_dir else []
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            return compose(config_name="config", overrides=[*extra, *overrides])

    def run(self, *overrides: str) -> ParityResult:
        """Run one job on `python -m parity <overrides>`'s config; goldens first under --parity-update-goldens."""
        from omegaconf import OmegaConf

        words = list(overrides)
        cfg = self.compose(words)
        from parity.config import value_of

        mode = value_of(OmegaConf.select(cfg, "mode"))
        if not self.update_goldens and mode in WRITES_GOLDENS:
            raise pytest.UsageError(f"{' '.join(words)} writes goldens (mode={mode}): run pytest with "
                                    f"--parity-update-goldens")
        if self.update_goldens and mode in READS_GOLDENS:
            # the golden a job verifies against: its model and inputs as composed (the same name with other
            # model.* or inputs.* settings is another golden), under its root
            key = (str(OmegaConf.select(cfg, "golden.root")), OmegaConf.to_yaml(cfg.model),
                   OmegaConf.to_yaml(cfg.inputs))
            if key not in self.session.made:
                made = self._job(self.compose([*words, "mode=golden", "golden.overwrite=true"]), words, "golden")
                if made.exit_code != 0:
                    return made
                self.session.made.add(key)
        return self._job(cfg, words, "job")

    def _job(self, cfg: Any, words: list[str], kind: str) -> ParityResult:
        from parity.pipeline import run_job
        from parity.plan import JobContext

        self.session.count += 1
        out = self.session.output_root / f"{self.session.count:03d}-{kind}"
        selectors = (f"--config-dir={self.config_dir}",) if self.config_dir else ()
        report = run_job(cfg, JobContext(output_dir=out, start_dir=self.start_dir, overrides=tuple(words),
                                         selectors=selectors))
        document = report.to_dict()
        if kind == "job" and not self.update_goldens and document["error"] and "no golden" in document["error"]:
            document["error"] += " (pytest: pass --parity-update-goldens to create it)"
        return ParityResult(document, report.exit_code, out, tuple(words))


def _output_root(config: pytest.Config, factory: pytest.TempPathFactory) -> Path:
    """pytest's temporary directory, or a new folder of this session's own under --parity-output (never one an
    earlier session wrote)."""
    chosen = config.getoption("--parity-output")
    if not chosen:
        return factory.mktemp("parity", numbered=True)
    import datetime
    import os

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(chosen).resolve() / f"{stamp}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def _runner(config: pytest.Config, config_dir: Path | None = None) -> Runner:
    """One runner per config directory for the session, so goldens are made once each."""
    runners = config.stash.setdefault(_RUNNERS, {})
    if config_dir not in runners:
        if _SESSION not in config.stash:
            factory = getattr(config, "_tmp_path_factory", None) or \
                pytest.TempPathFactory.from_config(config, _ispytest=True)
            config.stash[_SESSION] = Session(output_root=_output_root(config, factory))
        runners[config_dir] = Runner(start_dir=config.rootpath, session=config.stash[_SESSION],
                                     update_goldens=config.getoption("--parity-update-goldens"),
                                     config_dir=config_dir)
    return runners[config_dir]


_RUNNERS = pytest.StashKey[dict]()
_SESSION = pytest.StashKey[Session]()


def pytest_configure(config: pytest.Config) -> None:
    """Inside pytest, jobs do not append to $GITHUB_STEP_SUMMARY (pytest's own report is the CI page there)."""
    from parity.report.formats import summary

    summary.APPEND = False


@pytest.fixture
def parity(request: pytest.FixtureRequest) -> Runner:
    """Run parity jobs: `parity.run("model=...", ...)` returns a ParityResult."""
    chosen = request.config.getoption("--parity-config-dir")
    return _runner(request.config, Path(chosen).resolve() if chosen else None)


# -- check files ------------------------------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if PATTERN.match(file_path.name):
        return CheckFile.from_parent(parent, path=file_path)
    return None


def expand(words: list[str]) -> list[list[str]]:
    """A job's overrides with sweep syntax expanded like `python -m parity -m` (Hydra's override grammar)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(words)
    choices = []
    for word, override in zip(words, parsed):
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([word])
    return [list(combination) for combination in itertools.product(*choices)]


class CheckFile(pytest.File):
    """A parity_*.yaml: its jobs, each a collector of one item per model output."""

    def collect(self) -> Any:
        from omegaconf import OmegaConf

        spec = OmegaConf.to_container(OmegaConf.load(self.path), resolve=False) or {}
        if not isinstance(spec, dict) or not isinstance(spec.get("jobs"), list) or not spec["jobs"]:
            raise self.CollectError(f"{self.path.name}: needs a non-empty `jobs:` list of override lists")
        unknown = sorted(set(spec) - {"jobs", "overrides", "config_dir"})
        if unknown:
            raise self.CollectError(f"{self.path.name}: unknown keys {unknown} (known: config_dir, overrides, jobs)")
        common = [str(w) for w in spec.get("overrides") or []]
        config_dir = (self.path.parent / spec["config_dir"]).resolve() if spec.get("config_dir") else None
        for entry in spec["jobs"]:
            words = entry.split() if isinstance(entry, str) else [str(w) for w in entry]
            try:
                jobs = expand([*common, *words])
            except Exception as exc:
                raise self.CollectError(f"{self.path.name}: {' '.join(words)}: {exc}") from exc
            for job in jobs:
                yield CheckJob.from_parent(self, name=" ".join(job), overrides=job, config_dir=config_dir)


class CheckJob(pytest.Collector):
    """One job of a check file; its items share one run."""

    def __init__(self, *, overrides: list[str], config_dir: Path | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.overrides, self.config_dir = overrides, config_dir
        self.result: ParityResult | None = None

    def collect(self) -> Any:
        runner = _runner(self.config, self.config_dir)
        try:
            from parity.plan import build_plan

            plan = build_plan(runner.compose(self.overrides), runner.start_dir)
            outputs = list(plan.output_names)
        except Exception as exc:  # a configuration error is this job's one failing item
            yield CheckItem.from_parent(self, name="config", output=None, problem=str(exc))
            return
        for output in outputs or ["job"]:
            yield CheckItem.from_parent(self, name=output, output=output if outputs else None, problem=None)

    def run(self) -> ParityResult:
        if self.result is None:
            self.result = _runner(self.config, self.config_dir).run(*self.overrides)
        return self.result


class ParityCheckFailed(Exception):
    """An output that did not PASS: shown as parity's message, without a Python traceback."""


class CheckItem(pytest.Item):
    """One model output of one job: its verdict over every check and batch size."""

    def __init__(self, *, output: str | None, problem: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output, self.problem = output, problem

    def runtest(self) -> None:
        if self.problem is not None:
            raise ParityCheckFailed(f"ERROR: configuration error: {self.problem}")
        result = self.parent.run()
        report = result.report
        strict = ((report.get("config") or {}).get("report") or {}).get("skip_is") == "fail"
        pairs = result.outputs(self.output) if self.output else []
        lines = [f"{c['check']} b={c['batch_size']} {o['name']}: {o['verdict']}: {o['message']}" for c, o in pairs
                 if o["verdict"] != "PASS"]
        lines += [f"{c['check']} b={c['batch_size']}: {c['verdict']}: {c['message']}" for c in report["checks"]
                  if not c["outputs"] and c["verdict"] != "PASS"]
        verdicts = {o["verdict"] for _, o in pairs} | {c["verdict"] for c in report["checks"] if not c["outputs"]}
        if report["error"]:
            verdicts.add("ERROR")
            lines.append(f"error: {report['error']}")
        for section in ("probes", "localization"):  # the job's own faults outside the outputs fail every item
            if (report.get(section) or {}).get("error"):
                verdicts.add("ERROR")
                lines.append(f"{section}: ERROR: {report[section]['error']}")
        for result_ in (report.get("bench") or {}).get("results", []):
            if result_.get("error"):
                verdicts.add("ERROR")
                lines.append(f"bench b={result_['batch_size']}: ERROR: {result_['error']}")
        from parity.results import overall

        verdict = overall(verdicts).value if verdicts else report["verdict"]
        backend = [o["verdict"] for c, o in pairs if c["check"] == "backend"] + \
            [c["verdict"] for c in report["checks"] if not c["outputs"] and c["check"] == "backend"]
        if verdict == "PASS" and backend and all(v == "SKIP" for v in backend):
            verdict = "SKIP"  # the backend never ran: a passing reference alone is no PASS (as for the job)
        self.user_properties.append(("parity_verdict", verdict))
        self.user_properties.append(("parity_report", str(result.output_dir / "report.json")))
        if verdict == "PASS":
            return
        if verdict == "SKIP" and not strict:
            pytest.skip("; ".join(lines) or f"parity SKIP: {report['backend'].get('skip_reason')}")
        detail = "\n".join(lines) or f"parity {report['verdict']}"
        raise ParityCheckFailed(f"{verdict}: {' '.join(self.parent.overrides)}\n{detail}\n"
                                f"report: {result.output_dir / 'report.json'}")

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, ParityCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, f"parity: {self.parent.name} :: {self.name}"
