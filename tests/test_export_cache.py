"""The export cache (parity/export_cache.py): hits, misses, what the key covers, damaged entries, the size limit,
the clean command, and concurrent writers in real processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from parity.export_cache import ExportCache

from .conftest import GOLDEN, REPO


def _exports(report: dict) -> list[dict]:
    return report["exports"]


def test_second_job_hits_and_runs_the_same_artifact(run_parity, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, code = run_parity(["model=mlp", f"export_cache.dir={cache}"])
    assert code == 0
    (made,) = _exports(first)
    assert made["cache"]["status"] == "miss" and made["cache"]["stored"] and made["cache"]["dir"] == str(cache)
    second, code = run_parity(["model=mlp", f"export_cache.dir={cache}", "backend=openvino_cpu",
                               "tolerance=classification"])
    (taken,) = _exports(second)
    assert taken["cache"]["status"] == "hit" and taken["cache"]["key"] == made["cache"]["key"]
    assert taken["cache"]["saved_s"] == pytest.approx(made["seconds"], abs=1e-3)
    # the record as stored, its paths in this job's run directory, the very bytes the first job exported
    assert taken["sha256"] == made["sha256"] and taken["files"] == made["files"] and taken["opset"] == made["opset"]
    assert taken["path"] == str(tmp_path / "run" / "artifacts" / "dynamo" / "model.onnx")
    assert Path(taken["path"]).is_file() and Path(taken["path"]).stat().st_nlink == 1  # a copy, never a link
    assert code == 0 and second["verdict"] == "PASS"
    assert [e["label"] for e in ExportCache(cache).entries()] == ["mlp dynamo"]


def test_the_key_covers_exporter_settings_weights_and_transforms(run_parity, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    base = ["model=mlp", f"export_cache.dir={cache}", "exporter=torchscript"]
    statuses = {}
    for name, extra in [("base", []), ("again", []), ("opset", ["exporter.opset=16"]), ("seed", ["model.seed=1"]),
                        ("fp16", ["transform=fp16"]), ("fp16 again", ["transform=fp16"])]:
        report, code = run_parity([*base, *extra, "mode=bench", "bench.runs=1", "bench.warmup_runs=0",
                                   "bench.min_seconds=0", "bench.plot=false", "bench.batch_sizes=[2]"])
        assert code == 0, report["error"]
        (export,) = _exports(report)
        statuses[name] = (export["cache"]["status"], (export.get("transform") or {}).get("cache", {}).get("status"))
    assert statuses == {"base": ("miss", None), "again": ("hit", None), "opset": ("miss", None),
                        "seed": ("miss", None), "fp16": ("hit", "miss"), "fp16 again": ("hit", "hit")}
    assert len(ExportCache(cache).entries()) == 4  # three exports, one transform


def test_disabled_cache_records_none(run_parity, tmp_path: Path) -> None:
    report, code = run_parity(["model=mlp", "export_cache.enabled=false", f"export_cache.dir={tmp_path / 'c'}"])
    assert code == 0 and _exports(report)[0]["cache"] is None and not (tmp_path / "c").exists()


def test_damaged_entry_is_removed_and_exported_again(run_parity, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, _ = run_parity(["model=mlp", f"export_cache.dir={cache}"])
    (entry,) = ExportCache(cache).entries()
    data = Path(entry["dir"]) / "files" / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\1")  # one weight changed on the cache's disk
    second, code = run_parity(["model=mlp", f"export_cache.dir={cache}"])
    assert code == 0 and _exports(second)[0]["cache"]["status"] == "miss" and _exports(second)[0]["cache"]["stored"]
    assert _exports(second)[0]["sha256"] == _exports(first)[0]["sha256"]
    (again,) = ExportCache(cache).entries()  # the damaged entry is gone, a sound one in its place
    stored = Path(again["dir"]) / "files" / "model.onnx.data"
    assert stored.read_bytes() == (tmp_path / "run" / "artifacts" / "dynamo" / "model.onnx.data").read_bytes()


def _entry_maker(root: str, key: str, delay: float, log: str, barrier: Any) -> tuple[str, float]:
    """One job's share of the concurrent test: make an entry (slowly) unless the cache has it."""
    cache = ExportCache(Path(root))
    target = Path(root).parent / f"job-{multiprocessing.current_process().pid}"

    def make():
        with open(log, "a") as handle:
            handle.write("made\n")
        time.sleep(delay)
        target.mkdir(parents=True, exist_ok=True)
        (target / "model.bin").write_bytes(b"x" * 100_000)
        return True, {"path": str(target / "model.bin"), "ok": True}, delay

    barrier.wait()  # all four ask at once
    record, outcome = cache.get_or_make(key, target, make, "concurrent")
    assert (target / "model.bin").read_bytes() == b"x" * 100_000
    return outcome.status, outcome.waited_s


def test_concurrent_writers_make_one_entry(tmp_path: Path) -> None:
    root, log = tmp_path / "cache", tmp_path / "made.log"
    key = "ab" * 32
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        barrier = manager.Barrier(4)
        results = pool.starmap(_entry_maker, [(str(root), key, 1.0, str(log), barrier)] * 4)
    assert sorted(status for status, _ in results) == ["hit", "hit", "hit", "miss"]
    assert log.read_text() == "made\n"  # the others waited for the lock, then took the entry
    assert all(waited > 0.5 for status, waited in results if status == "hit")  # they did wait, for the maker
    (entry,) = ExportCache(root).entries()
    assert entry["size_bytes"] == 100_000
    assert not list(root.glob(".tmp-*")) and not list(root.glob(".trash-*"))


def test_store_without_a_lock_keeps_the_first_entry(tmp_path: Path) -> None:
    """Where flock is not available, two jobs may both make an entry: the rename keeps one, the other's copy is
    dropped, and neither job fails."""
    cache = ExportCache(tmp_path / "cache")
    for n in (1, 2):
        made = tmp_path / f"made{n}"
        made.mkdir()
        (made / "model.bin").write_bytes(bytes([n]) * 10)
        cache._store("cd" * 32, made, {"path": str(made / "model.bin")}, 0.1, f"writer {n}")
    target = tmp_path / "taken"
    record, outcome = cache.get_or_make("cd" * 32, target, lambda: pytest.fail("not a hit"), "")
    assert outcome.status == "hit" and (target / "model.bin").read_bytes() == b"\1" * 10
    assert record["path"] == str(target / "model.bin")


def _entry(cache: ExportCache, key: str, size: int, tmp_path: Path) -> None:
    made = tmp_path / f"made-{key[:4]}"
    made.mkdir()
    (made / "f").write_bytes(b"y" * size)
    cache.get_or_make(key, made, lambda: (True, {}, 0.0), key[:4])


def _used(cache: ExportCache, key: str, when: float) -> None:
    """Set an entry's last use (what eviction orders by) to `when`, instead of relying on the clock's resolution."""
    os.utime(cache.entry_dir(key) / "entry.json", (when, when))


def test_size_limit_removes_least_recently_used(tmp_path: Path) -> None:
    cache = ExportCache(tmp_path / "cache", max_bytes=250)
    _entry(cache, "11" * 32, 100, tmp_path)
    _entry(cache, "22" * 32, 100, tmp_path)
    _used(cache, "11" * 32, 1000.0)
    _used(cache, "22" * 32, 2000.0)
    cache.get_or_make("11" * 32, tmp_path / "use", lambda: pytest.fail("a hit"), "")  # 11 is now the newest use
    _entry(cache, "33" * 32, 100, tmp_path)
    assert sorted(e["key"][:2] for e in cache.entries()) == ["11", "33"]  # 22, least recently used, went


def test_clean_command_lists_and_cleans(tmp_path: Path) -> None:
    cache = ExportCache(tmp_path / "cache")
    _entry(cache, "44" * 32, 2_000_000, tmp_path)
    _entry(cache, "55" * 32, 1_000_000, tmp_path)
    _used(cache, "44" * 32, 1000.0)
    _used(cache, "55" * 32, 2000.0)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "parity.export_cache", *args, "--dir", str(cache.root)],
                              capture_output=True, text=True, cwd=REPO, timeout=60)

    listed = run("list")
    assert listed.returncode == 0 and "2 entries, 3.0 MB" in listed.stdout and "4444" in listed.stdout
    kept = run("clean", "--keep-gb", "0.0015")
    assert kept.returncode == 0 and "freed 2.0 MB, 1.0 MB left" in kept.stdout
    assert [e["key"][:2] for e in cache.entries()] == ["55"]
    gone = run("clean")
    assert gone.returncode == 0 and "freed 1.0 MB, 0.0 MB left" in gone.stdout and cache.entries() == []
    bad = run("list", "--keep-gb", "1")
    assert bad.returncode == 2 and "--keep-gb" in bad.stderr


def test_an_entry_naming_files_outside_itself_is_ignored(tmp_path: Path) -> None:
    """A shared cache is written by other users' jobs: names in entry.json must stay inside the entry."""
    cache = ExportCache(tmp_path / "cache")
    _entry(cache, "66" * 32, 10, tmp_path)
    meta_path = cache.entry_dir("66" * 32) / "entry.json"
    meta = json.loads(meta_path.read_text())
    for files, record in [({"../../escape": "0" * 64}, {}), ({"f": meta["files"]["f"]}, {"path": "/etc/passwd"})]:
        meta_path.write_text(json.dumps({**meta, "files": files, "record": record}))
        made = []
        cache.get_or_make("66" * 32, tmp_path / "job", lambda: (made.append(1), (False, {}, 0.0))[1], "")
        assert made == [1] and not (tmp_path / "escape").exists()  # no hit: exported afresh
    assert cache.entries() == []


def test_bad_limit_is_a_configuration_error(cli) -> None:
    proc = cli("model=mlp", "export_cache.max_gb=0", f"golden.root={GOLDEN}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        "parity: configuration error: export_cache.max_gb must be > 0 (null: no limit), got 0.0"


def test_the_table_says_hit_or_miss(cli, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = cli("model=mlp", f"golden.root={GOLDEN}", f"export_cache.dir={cache}")
    assert first.returncode == 0 and "export cache: dynamo miss (" in first.stdout and ", stored)" in first.stdout
    second = cli("model=mlp", f"golden.root={GOLDEN}", f"export_cache.dir={cache}")
    assert "export cache: dynamo hit (" in second.stdout and "saved " in second.stdout
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["exports"][0]["cache"]["status"] == "hit"
