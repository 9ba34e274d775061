"""The export cache: exported (and transformed) artifacts kept by what made them, shared by every job that sees
the same directory (the jobs of one sweep, later sweeps, other hosts on a shared disk).

An entry is found by its key, the SHA-256 of everything that decides the files (parity.conversion builds it: the
source model's weights and code, the export example, the exporter's settings, code and library versions, for a
transform also the calibration samples). Each entry is a directory `<root>/<key[:2]>/<key>/` holding the files
and `entry.json` (the record to restore, every file's SHA-256). Entries are written to a temporary directory and
renamed into place, so a reader never sees half an entry; a per-key lock (an advisory `flock` on
`<root>/locks/<key>.lock`) makes concurrent jobs wanting the same artifact export it once, the others waiting
and then taking it. A hit is checked file by file against the SHA-256s stored with it before use: a damaged entry
is removed and exported again. Files are copied into the job's run directory, never hard-linked: onnx refuses
external data with several links (a "hardlink attack"), and a job must not be able to change an entry. Beyond
`max_bytes` the least recently used entries are removed; `python -m parity.export_cache` lists or cleans the
cache.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from parity.paths import cache_dir, sha256_file

log = logging.getLogger("parity")

ENTRY = "entry.json"
FORMAT = 1  # entry.json's layout; an entry of another format is ignored (and cleaned like any other)
STALE_TMP_S = 24 * 3600  # temporary directories older than this belong to a job that died while storing


def default_root() -> Path:
    """$PARITY_EXPORT_CACHE, else $PARITY_CACHE/exports, else ~/.cache/parity/exports."""
    own = os.environ.get("PARITY_EXPORT_CACHE")
    if own:
        return Path(own).expanduser()
    return cache_dir("exports")


def digest(value: Any) -> str:
    """The SHA-256 of a JSON-able value, canonically (sorted keys, no whitespace)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


@dataclass
class Outcome:
    """What the cache did for one artifact: `status` hit | miss, the key, and on a miss whether the new entry
    was stored (an error storing it leaves the job's own files in place and says why)."""

    status: str
    key: str
    root: str
    stored: bool = False
    error: str | None = None
    waited_s: float = 0.0  # time spent waiting for another job making the same entry
    saved_s: float | None = None  # on a hit: how long making it took when it was stored

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "key": self.key, "dir": self.root, "stored": self.stored,
                "error": self.error, "waited_s": round(self.waited_s, 3),
                "saved_s": None if self.saved_s is None else round(self.saved_s, 3)}


class ExportCache:
    """Entries under `root`; `max_bytes` (None: no limit) bounds the total size after every store."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def entry_dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def _lock_path(self, key: str) -> Path:
        return self.root / "locks" / f"{key}.lock"

    def get_or_make(self, key: str, target: Path, make: Callable[[], tuple[bool, dict[str, Any], float]],
                    label: str = "") -> tuple[dict[str, Any] | None, Outcome]:
        """The entry's record with its files placed in `target` (a hit), or `make()`'s (a miss).

        `make` writes the files into `target` and returns (worth storing, record, seconds it took); the record
        is stored with the files (paths inside it relative to `target`, see `_relative`) and returned on later
        hits with those paths under that job's `target`. On a hit this returns (record, outcome) without calling
        `make`; on a miss (None, outcome) after storing, and the caller keeps what `make` returned.
        """
        started = time.monotonic()
        with self._lock(key, label) as waited:
            meta = self._take(key, target)
            if meta is not None:
                return meta["record"], Outcome("hit", key, str(self.root), waited_s=waited, saved_s=meta.get("seconds"))
            worth, made, seconds = make()
            outcome = Outcome("miss", key, str(self.root), waited_s=waited)
            if worth:
                try:
                    outcome.stored = self._store(key, target, made, seconds, label)
                except OSError as exc:  # a full or read-only cache disk: the job goes on with its own files
                    outcome.error = f"could not store the entry: {exc}"
                    log.warning("export cache: %s", outcome.error)
        if outcome.stored and self.max_bytes is not None:
            self.prune(self.max_bytes, keep={key})
        log.debug("export cache %s %s in %.2fs", outcome.status, key[:12], time.monotonic() - started)
        return None, outcome

    # -- one entry

    def _take(self, key: str, target: Path) -> dict[str, Any] | None:
        """The entry (its record's paths under `target`), its files copied into `target` and checked; None if there
        is no usable entry: none, another format, damaged (then it is removed), or one this job cannot copy (its
        own disk full, say: then the entry stays for the others)."""
        entry = self.entry_dir(key)
        meta = _read_entry(entry)
        if meta is None:
            return None
        try:
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for name, expected in meta["files"].items():
                source, dest = entry / "files" / name, target / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                if not source.is_file():
                    raise _Damaged(f"{name} is missing")
                shutil.copyfile(source, dest)
                if sha256_file(dest) != expected:
                    raise _Damaged(f"{name} does not match its SHA-256")
        except _Damaged as exc:
            log.warning("export cache: entry %s is damaged (%s); removed, exporting again", key[:12], exc)
            shutil.rmtree(target, ignore_errors=True)
            self._remove(entry)
            return None
        except OSError as exc:
            log.warning("export cache: could not take entry %s (%s); exporting without it", key[:12], exc)
            shutil.rmtree(target, ignore_errors=True)
            return None
        with contextlib.suppress(OSError):
            os.utime(entry / ENTRY)  # last use: what the size limit evicts by
        return {**meta, "record": _absolute(meta["record"], target)}

    def _store(self, key: str, source: Path, record: dict[str, Any], seconds: float, label: str) -> bool:
        """Copy `source`'s files into a new entry: written aside, then renamed into place in one step. False when
        a sound entry is there already (made meanwhile by a job that held no lock)."""
        final = self.entry_dir(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            files = {}
            for path in sorted(p for p in source.rglob("*") if p.is_file()):
                name = str(path.relative_to(source))
                dest = tmp / "files" / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)  # a copy: the job's own files may be removed or changed later
                files[name] = sha256_file(dest)
            meta = {"format": FORMAT, "key": key, "label": label, "created": time.time(), "seconds": seconds,
                    "size_bytes": sum((tmp / "files" / n).stat().st_size for n in files), "files": files,
                    "record": _relative(record, source)}
            (tmp / ENTRY).write_text(json.dumps(meta, indent=1, default=str))
            if _read_entry(final) is not None:  # made meanwhile by a job that held no lock (no flock here)
                return False
            if final.exists():  # an unusable leftover (another format, a damaged entry): replaced
                self._remove(final)
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                return False
            return True
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _remove(self, entry: Path) -> None:
        """Remove an entry: renamed out of the way first, so no reader sees it half removed."""
        trash = self.root / f".trash-{uuid.uuid4().hex}"
        try:
            os.rename(entry, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def _lock(self, key: str, label: str) -> Iterator[float]:
        """Hold the key's lock (waiting, with a line saying so, while another job holds it); yields the seconds
        waited. Without locks (another OS, a file system without flock, a lock file this user cannot open)
        entries are still written atomically, and two jobs may then both export."""
        started = time.monotonic()

        def waiting() -> None:
            log.info("export cache: another job is making %s (key %s…); waiting for it", label or "this artifact",
                     key[:12])

        with _locked(self._lock_path(key), waiting):
            yield time.monotonic() - started

    # -- the whole cache

    def entries(self) -> list[dict[str, Any]]:
        """Every usable entry: key, label, size, created, last used, directory; least recently used first."""
        found = []
        for entry in self.root.glob("??/*"):
            meta = _read_entry(entry)
            if meta is None:
                continue
            with contextlib.suppress(OSError):
                found.append({"key": meta["key"], "label": meta.get("label", ""), "size_bytes": meta["size_bytes"],
                              "created": meta["created"], "used": (entry / ENTRY).stat().st_mtime, "dir": str(entry)})
        return sorted(found, key=lambda e: (e["used"], e["created"]))

    def size(self) -> int:
        return sum(e["size_bytes"] for e in self.entries())

    def prune(self, max_bytes: int, keep: set[str] = frozenset()) -> list[dict[str, Any]]:
        """Remove least recently used entries until the rest fit in `max_bytes` (entries in `keep`, and entries
        a job holds the lock of, stay); also leftovers of jobs that died while storing. The removed entries."""
        self._sweep_leftovers()
        entries = self.entries()
        total = sum(e["size_bytes"] for e in entries)
        removed = []
        for entry in entries:
            if total <= max_bytes:
                break
            if entry["key"] in keep:
                continue
            with _locked(self._lock_path(entry["key"]), None) as held:
                if held is False:  # a job is using it
                    continue
                self._remove(Path(entry["dir"]))
            total -= entry["size_bytes"]
            removed.append(entry)
        if removed:
            log.info("export cache: removed %d least recently used entr%s (%.1f MB) to stay under %.1f GB",
                     len(removed), "y" if len(removed) == 1 else "ies", sum(e["size_bytes"] for e in removed) / 1e6,
                     max_bytes / 1e9)
        return removed

    def clean(self) -> int:
        """Remove every entry and leftover; the bytes freed. Entries a job holds the lock of stay; lock files stay
        too (removing one while a job waits on it would let a second job take a new lock beside it)."""
        return sum(e["size_bytes"] for e in self.prune(0))

    def _sweep_leftovers(self) -> None:
        now = time.time()
        for leftover in [*self.root.glob(".tmp-*"), *self.root.glob(".trash-*")]:
            with contextlib.suppress(OSError):
                if leftover.name.startswith(".trash-") or now - leftover.stat().st_mtime > STALE_TMP_S:
                    shutil.rmtree(leftover, ignore_errors=True)


class _Damaged(Exception):
    """An entry whose files are missing or do not match their SHA-256."""


@contextlib.contextmanager
def _locked(path: Path, on_wait: Callable[[], None] | None) -> Iterator[bool | None]:
    """An exclusive flock on `path` (created if missing), released on exit. Yields True when held; False when
    another process holds it and `on_wait` is None (no waiting); None where there are no locks to take (no fcntl,
    a file system without flock, a lock file that cannot be opened). With `on_wait`, it is called, then waits."""
    try:
        import fcntl
    except ImportError:
        yield None
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held: bool | None = True
        except BlockingIOError:
            if on_wait is None:
                held = False
            else:
                on_wait()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    held = True
                except OSError:
                    held = None
        except OSError:  # ENOLCK and the like: no locks here
            held = None
        yield held
    finally:
        os.close(fd)  # releases the lock


def _safe_name(name: Any) -> bool:
    """A relative path inside an entry: no absolute path, no `..`, nothing to normalise away."""
    if not isinstance(name, str) or not name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and str(path) == name and "\\" not in name


def _read_entry(entry: Path) -> dict[str, Any] | None:
    """entry.json, when it is one this version wrote and every name in it stays inside the entry (a shared cache
    is written by other users' jobs too); None otherwise."""
    try:
        meta = json.loads((entry / ENTRY).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None
    files, record = meta.get("files"), meta.get("record")
    if not isinstance(files, dict) or not all(_safe_name(n) and isinstance(h, str) for n, h in files.items()):
        return None
    if not isinstance(record, dict) or any(record.get(k) and not _safe_name(record[k]) for k in PATH_KEYS):
        return None
    if not isinstance(meta.get("key"), str) or not isinstance(meta.get("size_bytes"), int) or \
            not isinstance(meta.get("created"), (int, float)):
        return None
    return meta


PATH_KEYS = ("path",)  # record keys holding a file path inside the artifact directory


def _relative(record: dict[str, Any], base: Path) -> dict[str, Any]:
    """The record with its paths (`path`, and a transform's) relative to the artifact directory `base`."""
    out = dict(record)
    for key in PATH_KEYS:
        if out.get(key):
            out[key] = os.path.relpath(out[key], base)
    return out


def _absolute(record: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(record)
    for key in PATH_KEYS:
        if out.get(key):
            out[key] = str(base / out[key])
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m parity.export_cache [list | clean [--keep-gb N]] [--dir D]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m parity.export_cache",
                                     description="List or clean parity's export cache.")
    parser.add_argument("command", nargs="?", choices=["list", "clean"], default="list")
    parser.add_argument("--dir", help=f"the cache directory (default: {default_root()})")
    parser.add_argument("--keep-gb", type=float, default=None,
                        help="clean: remove least recently used entries until at most this many GB remain "
                             "(default: remove every entry)")
    args = parser.parse_args(argv)
    if args.keep_gb is not None and (args.command != "clean" or args.keep_gb < 0):
        parser.error("--keep-gb takes a number >= 0, with clean")
    cache = ExportCache(Path(args.dir).expanduser() if args.dir else default_root())
    if not cache.root.is_dir():
        print(f"export cache {cache.root}: empty (no such directory)")
        return 0
    if args.command == "clean":
        before = cache.size()
        if args.keep_gb is None:
            freed = cache.clean()
        else:
            freed = sum(e["size_bytes"] for e in cache.prune(int(args.keep_gb * 1e9)))
        print(f"export cache {cache.root}: freed {freed / 1e6:.1f} MB, {(before - freed) / 1e6:.1f} MB left")
        return 0
    entries = cache.entries()
    from tabulate import tabulate

    rows = [(e["key"][:12], e["label"], f"{e['size_bytes'] / 1e6:.1f}", time.strftime("%Y-%m-%d %H:%M",
             time.localtime(e["used"]))) for e in reversed(entries)]
    print(f"export cache {cache.root}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, "
          f"{sum(e['size_bytes'] for e in entries) / 1e6:.1f} MB")
    if rows:
        print(tabulate(rows, headers=["key", "artifact", "MB", "last used"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
