"""`python -m parity`: the Hydra entry point; heavy frameworks are imported only inside a job."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from parity.cli_help import render_help, wants_parity_help
from parity.config import register_configs

register_configs()

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
_EXIT_CODES: list[int] = []


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _job(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    from parity.runner import run_job

    hc = HydraConfig.get()
    num = hc.job.get("num") if hc.mode is not None and str(hc.mode).endswith("MULTIRUN") else None
    _, code = run_job(
        cfg,
        output_dir=Path(hc.runtime.output_dir),
        start_dir=Path(get_original_cwd()),
        overrides=list(hc.overrides.task),
        job_num=num,
    )
    _EXIT_CODES.append(code)


def record_exit_code(code: int) -> None:
    """Lets the multirun callback fold its aggregate verdict into the process exit code."""
    _EXIT_CODES.append(code)


def main() -> None:
    """Run Hydra; configuration errors become one line on stderr and exit code 2."""
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
        if user_full_error:
            raise
        sys.stderr.write(f"parity: configuration error: {config_error_line(exc)}\n")
        sys.exit(2)
    sys.exit(max(_EXIT_CODES, default=0))


def config_error_line(exc: BaseException) -> str:
    """Hydra/OmegaConf errors are multi-line; keep the message and the key it concerns, on one line."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 3:
        lines = [ln.strip() for ln in str(current).strip().splitlines() if ln.strip()]
        head = lines[0] if lines else type(current).__name__
        key = next((ln for ln in lines[1:] if ln.startswith("full_key:")), None)
        text = head + (f" ({key})" if key and key.split(":", 1)[1].strip() else "")
        if "$VALUE" not in head and not any(head in earlier for earlier in parts):
            parts.append(text)
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)


if __name__ == "__main__":
    main()
