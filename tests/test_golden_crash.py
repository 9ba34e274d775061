"""A golden write killed (SIGKILL) at every step, and the lock that keeps readers and writers apart.

Each case runs a real writer process that kills itself at one named step (PARITY_TEST_CRASH_AT, a test-only
hook in parity.golden), then reads the golden back: it must be the complete old golden or the complete new one,
exactly the one the step implies. Readers write nothing; the next write (GoldenStore.tidy, which every write
runs first) moves a completed generation into place and removes the leftovers.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from parity import golden as golden_mod
from parity.errors import GoldenBusyError, GoldenCorruptError, GoldenMissingError
from parity.golden import CRASH_ENV, CRASH_STEPS, GoldenStore
from tests.conftest import REPO, tree_bytes

MANIFEST = {"num_samples": 4, "weights_sha256": "0" * 64, "created": "now"}

# Which golden a kill at each step leaves, once recovered: before the new generation is complete the old one
# stands; once the old one has been moved aside, the new (complete, verified) one is restored.
EXPECTED = {"staged-inputs": "old", "staged-outputs": "old", "staged-manifest": "old", "moved-aside": "new",
            "moved-in": "new", "removing-backup": "new"}


def _arrays(value: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return ({"x": np.full((4, 3), value, dtype=np.float32)}, {"y": np.full((4, 2), value * 2, dtype=np.float32)})


def _writer(root: Path, value: float, crash_at: str | None, overwrite: bool = True) -> subprocess.CompletedProcess:
    """A separate process writing golden m/default with `value`, killed at `crash_at`."""
    script = textwrap.dedent(f"""
        import numpy as np
        from parity.golden import GoldenStore
        inputs = {{"x": np.full((4, 3), {value}, dtype=np.float32)}}
        outputs = {{"y": np.full((4, 2), {value * 2}, dtype=np.float32)}}
        GoldenStore({str(root)!r}).write("m", "default", inputs, outputs, {MANIFEST!r}, overwrite={overwrite})
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)


def _which(store: GoldenStore) -> str:
    """'old' (value 1) or 'new' (value 2): the loaded golden must be one of them, whole."""
    golden = store.load("m", "default")
    for name, value in (("old", 1.0), ("new", 2.0)):
        inputs, outputs = _arrays(value)
        if np.array_equal(golden.inputs["x"], inputs["x"]) and np.array_equal(golden.outputs["y"], outputs["y"]):
            return name
    raise AssertionError(f"golden is neither the old nor the new one: {golden.inputs}, {golden.outputs}")


def test_every_write_step_has_a_crash_point() -> None:
    assert set(EXPECTED) | {"recovering"} == set(CRASH_STEPS)


@pytest.mark.parametrize("step", list(EXPECTED))
def test_a_writer_killed_at_each_step_leaves_the_old_or_the_new_golden(tmp_path: Path, step: str) -> None:
    store = GoldenStore(tmp_path / "golden")
    store.write("m", "default", *_arrays(1.0), MANIFEST)
    done = _writer(store.root, 2.0, step)
    assert done.returncode == -signal.SIGKILL, done.stderr
    before = tree_bytes(store.root)
    assert _which(store) == EXPECTED[step]
    assert tree_bytes(store.root) == before  # reading wrote nothing
    store.tidy("m", "default")
    assert sorted(p.name for p in (store.root / "m").iterdir()) == ["default"]  # leftovers gone once verified
    assert _which(store) == EXPECTED[step]  # and the same golden


@pytest.mark.parametrize("step, expected", [("staged-inputs", None), ("staged-outputs", None),
                                            ("staged-manifest", "new"), ("moved-in", "new")])
def test_a_first_write_killed_leaves_no_golden_or_the_whole_new_one(tmp_path: Path, step: str,
                                                                   expected: str | None) -> None:
    """No golden before: a kill before the new one is complete leaves none (and no leftovers); after, the new one."""
    store = GoldenStore(tmp_path / "golden")
    assert _writer(store.root, 2.0, step).returncode == -signal.SIGKILL
    if expected is None:
        with pytest.raises(GoldenCorruptError, match="only the incomplete leftovers of an interrupted write"):
            store.load("m", "default")
        store.tidy("m", "default")
        assert list((store.root / "m").iterdir()) == []
        with pytest.raises(GoldenMissingError):
            store.load("m", "default")
    else:
        assert _which(store) == "new"


def test_a_recovery_killed_midway_leaves_a_recoverable_state(tmp_path: Path) -> None:
    store = GoldenStore(tmp_path / "golden")
    store.write("m", "default", *_arrays(1.0), MANIFEST)
    assert _writer(store.root, 2.0, "moved-aside").returncode == -signal.SIGKILL
    tidier = subprocess.run(
        [sys.executable, "-c", f"from parity.golden import GoldenStore; GoldenStore({str(store.root)!r}).tidy('m', "
                               f"'default')"],
        env={**os.environ, "PYTHONPATH": str(REPO), CRASH_ENV: "recovering"}, capture_output=True, timeout=120)
    assert tidier.returncode == -signal.SIGKILL
    assert _which(store) == "new"
    assert _writer(store.root, 3.0, None).returncode == 0  # the next write recovers, then writes
    np.testing.assert_array_equal(store.load("m", "default").inputs["x"], _arrays(3.0)[0]["x"])
    assert sorted(p.name for p in (store.root / "m").iterdir()) == ["default"]


def test_repeated_killed_writes_always_restore_the_newest_complete_golden(tmp_path: Path) -> None:
    """The old recovery took the alphabetically last backup: after several killed writes it restored a superseded
    golden. Every write here dies after moving the live golden aside; the last one's golden must win."""
    store = GoldenStore(tmp_path / "golden")
    store.write("m", "default", *_arrays(0.0), MANIFEST)
    for value in (1.0, 2.0, 3.0, 4.0):
        assert _writer(store.root, value, "moved-aside").returncode == -signal.SIGKILL
    np.testing.assert_array_equal(store.load("m", "default").inputs["x"], _arrays(4.0)[0]["x"])
    store.tidy("m", "default")
    np.testing.assert_array_equal(store.load("m", "default").inputs["x"], _arrays(4.0)[0]["x"])
    assert sorted(p.name for p in (store.root / "m").iterdir()) == ["default"]


def test_a_broken_backup_is_never_restored(tmp_path: Path) -> None:
    """A leftover whose files do not match its manifest (a backup half removed) is skipped for an older whole one."""
    store = GoldenStore(tmp_path / "golden")
    store.write("m", "default", *_arrays(1.0), MANIFEST)
    assert _writer(store.root, 2.0, "moved-aside").returncode == -signal.SIGKILL
    staged = next((store.root / "m").glob(".default.tmp-*"))
    (staged / "inputs.npz").unlink()  # the newer generation is incomplete: the old golden must come back
    assert _which(store) == "old"


@pytest.fixture
def lock_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Golden m/default, and its model directory locked exclusively (as a live writer holds it)."""
    store = GoldenStore(tmp_path / "golden")
    store.write("m", "default", *_arrays(1.0), MANIFEST)
    monkeypatch.setenv(golden_mod.LOCK_TIMEOUT_ENV, "0.3")
    fd = os.open(store.root / "m", os.O_RDONLY)  # a second open file description: flock treats it as another holder
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield store
    os.close(fd)


def test_a_reader_waits_for_a_live_writer_and_touches_nothing(lock_held: GoldenStore) -> None:
    store = lock_held
    final = store.path("m", "default")
    final.rename(final.parent / ".default.old-g000001")  # mid-swap, as the live writer has it
    before = tree_bytes(store.root)
    with pytest.raises(GoldenBusyError, match="locked by another process"):
        store.load("m", "default")
    assert tree_bytes(store.root) == before  # the writer's backup was not "recovered" under it


def test_a_second_writer_does_not_write_while_the_lock_is_held(lock_held: GoldenStore) -> None:
    before = tree_bytes(lock_held.root)
    with pytest.raises(GoldenBusyError):
        lock_held.write("m", "default", *_arrays(2.0), MANIFEST, overwrite=True)
    assert tree_bytes(lock_held.root) == before


def test_a_verify_finding_a_write_under_way_says_so_in_one_line(lock_held: GoldenStore, cli) -> None:
    done = cli("model=mlp", f"golden.root={lock_held.root}", "model.name=m",
               env={golden_mod.LOCK_TIMEOUT_ENV: "0.3"})
    assert done.returncode == 2
    assert "locked by another process" in done.stderr and "Traceback" not in done.stderr


def test_a_superseded_generation_never_comes_back(tmp_path: Path) -> None:
    """Backups of older generations, kept while no live golden verified, are never restored in place of a newer
    generation, even when that one is incomplete."""
    scratch = GoldenStore(tmp_path / "scratch")
    scratch.write("m", "default", *_arrays(0.5), MANIFEST)
    store = GoldenStore(tmp_path / "golden")
    store.write("m", "default", *_arrays(1.0), MANIFEST)
    final = store.path("m", "default")
    shutil.copytree(scratch.path("m", "default"), final.parent / ".default.old-g000000")  # complete, superseded
    (final / "inputs.npz").write_bytes(b"damaged")  # the live golden no longer verifies: leftovers are kept
    assert _writer(store.root, 2.0, "moved-aside").returncode == -signal.SIGKILL  # writes generation 1
    (final.parent / ".default.tmp-g000001" / "outputs.npz").unlink()  # ... which is now incomplete as well
    for _ in range(2):
        with pytest.raises(GoldenCorruptError, match="only the incomplete leftovers"):
            store.load("m", "default")
        store.tidy("m", "default")
    assert not final.exists()  # generation 0 (value 0.5) was never put back


def test_the_cli_killed_mid_write_leaves_a_golden_that_verifies(tmp_path: Path, cli) -> None:
    root = tmp_path / "golden"
    assert cli("mode=golden", "model=mlp", f"golden.root={root}").returncode == 0
    killed = cli("mode=golden", "model=mlp", f"golden.root={root}", "golden.overwrite=true", "model.seed=1",
                 env={CRASH_ENV: "moved-aside"})
    assert killed.returncode == -signal.SIGKILL
    before = tree_bytes(root)
    done = cli("model=mlp", f"golden.root={root}", "model.seed=1")  # the new golden (seed 1) is read whole
    assert done.returncode == 0, done.stderr
    assert tree_bytes(root) == before  # by a verify that writes nothing
    again = cli("mode=golden", "model=mlp", f"golden.root={root}", "golden.overwrite=true", "model.seed=2")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (root / "mlp").iterdir()) == ["default"]  # the next write tidied up
