"""What the nox session installed must be importable here: a broken install fails, naming it, instead of skipping.

noxfile.py sets PARITY_REQUIRE to the extras (and profile packages) it installed; outside nox it is unset and there
is nothing to check. Each name's modules are looked up the way the skip markers of tests/extras.py look them up, so
a package these tests accept is one whose tests really run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.extras import EXTRA_MODULES

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = [name for name in os.environ.get("PARITY_REQUIRE", "").split(",") if name]


def test_every_required_name_is_known() -> None:
    unknown = [name for name in REQUIRED if name not in EXTRA_MODULES]
    assert not unknown, f"PARITY_REQUIRE names {unknown}; known: {', '.join(EXTRA_MODULES)}"


@pytest.mark.parametrize("name", REQUIRED or [pytest.param(None, marks=pytest.mark.skip(
    reason="PARITY_REQUIRE is unset (not under nox): nothing was required"))])
def test_required_extra_is_installed(name: str) -> None:
    missing = [m for m in EXTRA_MODULES.get(name, ()) if importlib.util.find_spec(m) is None]
    assert not missing, f"the session installed the `{name}` extra, but {', '.join(missing)} does not import here"
    if name == "onnxruntime-gpu":
        import onnxruntime as ort

        providers = ort.get_available_providers()
        assert "CUDAExecutionProvider" in providers, (
            f"onnxruntime-gpu was installed, but this onnxruntime lists only {providers}: the CPU wheel overwrote it")


TOOLS = [name for name in os.environ.get("PARITY_REQUIRE_TOOLS", "").split(",") if name]


@pytest.mark.parametrize("tool", TOOLS or [pytest.param(None, marks=pytest.mark.skip(
    reason="PARITY_REQUIRE_TOOLS is unset (set by .ci/run): no program was required"))])
def test_required_program_is_on_the_path(tool: str) -> None:
    assert shutil.which(tool), f"CI requires `{tool}` (PARITY_REQUIRE_TOOLS), but it is not on the PATH here"


# a noxfile that runs the real noxfile's extras step on one extra whose package does not exist
PROBE_NOXFILE = """
import sys
sys.path.insert(0, {root!r})
import nox
import noxfile as real

real.EXTRAS = {{"broken": ["parity-test-no-such-distribution==0.0.1"], "fine": []}}


@nox.session(venv_backend="virtualenv")
def probe(session):
    real._install_extras(session)
"""


def test_an_extra_that_fails_to_install_fails_the_nox_session_naming_it(tmp_path: Path) -> None:
    noxfile = tmp_path / "noxfile.py"
    noxfile.write_text(PROBE_NOXFILE.format(root=str(ROOT)))
    env = {**os.environ, "PARITY_EXTRAS": "broken"}
    proc = subprocess.run([sys.executable, "-m", "nox", "-f", str(noxfile), "-s", "probe",
                           "--envdir", str(tmp_path / "envs")], capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "extra 'broken' failed to install (parity-test-no-such-distribution==0.0.1)" in out, out
    assert "Session probe aborted" in out, out
