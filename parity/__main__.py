"""`python -m parity`: the command line only. Compose (Hydra) -> plan -> pipeline -> exit code.

Nothing imports this module; heavy frameworks are imported only inside a job.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from parity.cli_help import render_help, wants_parity_help
from parity.config import register_configs
from parity.errors import ConfigError, ParityError, config_error_line, one_line
from parity.report import outcome

register_configs()

CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")  # a symlink to conf/ in a checkout; real in a wheel
_CONFIG_ERRORS: list[ConfigError] = []


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _job(cfg: DictConfig) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    from parity.logs import native_output_to
    from parity.pipeline import run_job
    from parity.plan import JobContext, build_plan

    hc = HydraConfig.get()
    multirun = hc.mode is not None and str(hc.mode).endswith("MULTIRUN")
    context = JobContext(output_dir=Path(hc.runtime.output_dir), start_dir=Path(get_original_cwd()),
                         overrides=tuple(hc.overrides.task), num=hc.job.get("num") if multirun else None,
                         selectors=_selectors(list(hc.overrides.hydra), sys.argv[1:]))
    plan = None
    if not multirun:  # a single run's config error is one line on stderr; in a sweep it is that job's ERROR
        try:
            plan = build_plan(cfg, context.start_dir)
        except ConfigError as exc:
            _CONFIG_ERRORS.append(exc)  # raised here, Hydra would print its own "Error executing job" line
            return {}
    with native_output_to(context.output_dir / "parity.log"):  # C/C++ libraries' stderr: the log, not the terminal
        report = run_job(cfg, context, plan)
    outcome.record_job(report.exit_code)
    return report.to_dict()


_CONFIG_FLAGS = {"-cd": "--config-dir", "--config-dir": "--config-dir", "-cp": "--config-path",
                 "--config-path": "--config-path", "-cn": "--config-name", "--config-name": "--config-name"}


def _selectors(hydra_overrides: list[str], argv: list[str]) -> tuple[str, ...]:
    """The arguments besides the task overrides that decide which configs compose (a search path, another config
    directory or primary config), as `--flag=value` / `key=value` words, for the commands parity suggests."""
    words = []
    for i, arg in enumerate(argv):
        flag, sep, value = arg.partition("=")
        if flag in _CONFIG_FLAGS:
            if not sep and i + 1 < len(argv):
                value = argv[i + 1]
            words.append(f"{_CONFIG_FLAGS[flag]}={value}")
    words += [o for o in hydra_overrides if o.split("=", 1)[0].lstrip("+~") == "hydra.searchpath"]
    return tuple(words)


def main() -> None:
    """Run Hydra; configuration errors become one line on stderr and exit code 2."""
    sys.argv[0] = "python -m parity"  # argparse's usage line names the command the user typed
    user_full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # make Hydra raise, so the message can be reduced to one line
    try:
        if wants_parity_help(sys.argv[1:]):
            print(render_help(CONFIG_DIR, sys.argv[1:]))
            sys.exit(0)
        _job()
    except SystemExit:
        raise
    except BrokenPipeError:  # stdout closed early (`| head`): not an error of the config
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("parity: interrupted\n")
        sys.exit(130)
    except Exception as exc:
        from parity.report.aggregate import finish_failed_sweep

        config_fault = isinstance(exc, (HydraException, OmegaConfBaseException, ConfigError))
        lost_jobs = not config_fault and finish_failed_sweep(exc)  # a launcher's: the table still says which
        if user_full_error:
            raise
        if lost_jobs:
            sys.exit(outcome.exit_code())
        if config_fault:
            sys.stderr.write(f"parity: configuration error: {config_error_line(exc)}\n")
        elif isinstance(exc, ParityError):
            sys.stderr.write(f"parity: {one_line(exc)}\n")
        else:  # a bug in parity: show where
            traceback.print_exc()
            sys.stderr.write(f"parity: internal error: {one_line(exc)}\n")
        sys.exit(2)
    if _CONFIG_ERRORS:
        sys.stderr.write(f"parity: configuration error: {one_line(_CONFIG_ERRORS[0])}\n")
        sys.exit(2)
    sys.exit(outcome.exit_code())


if __name__ == "__main__":
    main()
