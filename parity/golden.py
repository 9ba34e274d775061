"""Golden store: golden/<model>/<input_set>/{inputs,outputs}.npz + manifest.json, atomic, locked, hash-checked.

Nothing here may lose or corrupt a golden:
- names are single path segments (parity.paths.check_segment) and every target is checked with symlinks
  resolved, against the root and the read-only roots (PARITY_READONLY_GOLDENS);
- a write replaces only the golden of the same model and input set, and only with `overwrite`;
- a writer holds an exclusive lock (flock on the model's directory, so no lock file is ever written), readers a
  shared one; either waits for the other's, and says so in one line when that takes too long;
- a write goes through numbered generations: `.<set>.tmp-gN` is built and synced (manifest last), the live
  golden is renamed to `.<set>.old-gN`, the new one renamed into place, the backup removed. A process killed at
  any step leaves a state that is read correctly and that the next write recovers: the live golden if there is
  one, else the newest generation's leftover whose every file matches its manifest's SHA-256; leftovers are
  removed once the live golden verifies;
- a reader never writes: with no live golden it reads the newest complete generation where it lies.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import re
import shlex
import shutil
import signal
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.errors import (
    GoldenBusyError,
    GoldenCorruptError,
    GoldenError,
    GoldenExistsError,
    GoldenMissingError,
    one_line,
)
from parity.inputs import bfloat16_bits, floating, with_dtype
from parity.paths import check_segment, is_within, protected_roots, sha256_file, under_any

FORMAT = "parity.golden/v1"
INPUTS = "inputs.npz"
OUTPUTS = "outputs.npz"
MANIFEST = "manifest.json"
# os.pathsep-separated golden roots that must never be written (CI protects the committed goldens)
READONLY_ENV = "PARITY_READONLY_GOLDENS"
# seconds a reader or writer waits for another process's lock on a model's goldens
LOCK_TIMEOUT_ENV = "PARITY_GOLDEN_LOCK_TIMEOUT"
# test-only: the name of a write step at which the writing process kills itself with SIGKILL (tests/test_golden_crash)
CRASH_ENV = "PARITY_TEST_CRASH_AT"
CRASH_STEPS = ("staged-inputs", "staged-outputs", "staged-manifest", "moved-aside", "moved-in", "removing-backup",
               "recovering")
log = logging.getLogger("parity")

_SHA = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_ARRAYS = {"type": "object", "minProperties": 1, "additionalProperties": {
    "type": "object", "required": ["dtype", "shape"], "properties": {
        "dtype": {"type": "string", "minLength": 1},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}}}}}
MANIFEST_SCHEMA = {  # what load() requires of a manifest before it trusts any field
    "type": "object",
    "required": ["format", "model", "input_set", "num_samples", "files", "inputs", "outputs"],
    "properties": {
        "format": {"const": FORMAT},
        "model": {"type": "string"},
        "input_set": {"type": "string"},
        "num_samples": {"type": "integer", "minimum": 1},
        "weights_sha256": {"type": ["string", "null"]},
        "input_batch_axes": {"type": "object", "additionalProperties": {"type": ["integer", "null"], "minimum": 0}},
        "files": {"type": "object", "required": [INPUTS, OUTPUTS], "properties": {
            name: {"type": "object", "required": ["sha256"], "properties": {"sha256": _SHA}}
            for name in (INPUTS, OUTPUTS)}},
        "inputs": _ARRAYS,
        "outputs": _ARRAYS,
    },
}


_NOT_FOR_GOLDEN = ("mode", "golden.overwrite", "hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")


def create_command(
    model: str, input_set: str, root: str | None = None, overwrite: bool = False, overrides: list[str] | None = None
) -> str:
    """The command line that (re)creates a golden: the job's own overrides when known (with the search path and
    config flags that selected its configs), with mode=golden, or mode=import for a job that imports one."""
    if overrides is not None:
        mode = "import" if "mode=import" in [o.lstrip("+~") for o in overrides] else "golden"
        kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in _NOT_FOR_GOLDEN]
        parts = ["python -m parity", f"mode={mode}", *(shlex.quote(o) for o in kept)]
        if overwrite:
            parts.append("golden.overwrite=true")
        return " ".join(parts)
    parts = ["python -m parity mode=golden", f"model={model}"]
    if input_set != "default":
        parts.append(f"inputs.name={input_set}")
    if root and root != "golden":
        parts.append(f"golden.root={shlex.quote(root)}")
    if overwrite:
        parts.append("golden.overwrite=true")
    return " ".join(parts)


def reference_manifest(num_samples: int, weights_sha256: str | None, input_batch_axes: dict[str, int],
                       reference: dict[str, Any], config: dict[str, Any],
                       weights_file: dict[str, Any] | None = None, inputs_source: dict[str, Any] | None = None,
                       imported: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest fields a golden made by parity records (the store adds its files, arrays and hashes);
    `weights_file`: the trained-weights file the model loaded (path, sha256, size_bytes), when it took one;
    `inputs_source`: the files the inputs were read from (parity.sources), when they were not drawn;
    `imported`: the tool and files an imported golden came from (parity.transfer)."""
    from parity.environment import environment, now

    manifest = {"num_samples": num_samples, "weights_sha256": weights_sha256, "input_batch_axes": input_batch_axes,
                "reference": reference, "config": config, "environment": environment(), "created": now()}
    for key, value in (("weights_file", weights_file), ("inputs_source", inputs_source), ("imported", imported)):
        if value is not None:
            manifest[key] = value
    return manifest


def root_path(root: str, start_dir: Path) -> Path:
    """golden.root as a directory: relative roots resolve against the directory parity was started in."""
    return Path(root) if Path(root).is_absolute() else start_dir / root


def output_dir_problem(output_dir: Path, golden_root: Any, start_dir: Path) -> str | None:
    """Why `output_dir` may not hold a job's files (it lies in the golden root or a read-only root), or None."""
    roots = protected_roots(os.environ.get(READONLY_ENV))
    if isinstance(golden_root, str) and golden_root.strip():
        roots.append(root_path(golden_root, start_dir).resolve())
    hit = under_any(output_dir if output_dir.is_absolute() else start_dir / output_dir, roots)
    if hit is None:
        return None
    return (f"the output directory {output_dir} lies inside the golden root {hit}; reports and artifacts are "
            f"never written among goldens: choose another hydra.run.dir / hydra.sweep.dir")


@dataclass(frozen=True)
class Golden:
    """A loaded, integrity-checked golden."""

    path: Path
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    manifest: dict[str, Any]

    @property
    def num_samples(self) -> int:
        return int(self.manifest["num_samples"])


class GoldenStore:
    """Reads and writes goldens below one root directory."""

    def __init__(
        self, root: str | os.PathLike[str], display_root: str | None = None, command_overrides: list[str] | None = None
    ) -> None:
        self.root = Path(root)
        self.display_root = display_root if display_root is not None else str(root)
        self.command_overrides = command_overrides  # the job's overrides, for the commands the errors suggest

    def command(self, model: str, input_set: str, overwrite: bool = False) -> str:
        """The command that (re)creates this golden, as the user would type it."""
        return create_command(model, input_set, self.display_root, overwrite, self.command_overrides)

    def path(self, model: str, input_set: str) -> Path:
        """<root>/<model>/<input_set>; both names must be plain path segments (ConfigError otherwise)."""
        return self.root / check_segment(model, "model name") / check_segment(input_set, "input set name")

    # -- reading -------------------------------------------------------------------------------

    def load(self, model: str, input_set: str) -> Golden:
        """Load and verify a golden; GoldenMissingError / GoldenCorruptError / GoldenBusyError, one line each.

        Writes nothing, ever. Waits (shared lock) while a write is under way. Where a killed writer left no live
        golden, the newest generation it completed is read where it lies (the next write moves it into place).
        """
        path = self.path(model, input_set)
        self._inside_root(path)
        _refuse_linked_dirs(path)
        if not path.parent.is_dir():
            raise self._missing(model, input_set, path)
        with _locked(path.parent, exclusive=False):
            source = path
            if not path.exists():
                source = _newest_complete(path)
                if source is None:
                    if _leftovers(path):
                        raise GoldenCorruptError(
                            f"no golden at {path}, only the incomplete leftovers of an interrupted write "
                            f"({_names(_leftovers(path))}); create it again with: {self.command(model, input_set)}")
                    raise self._missing(model, input_set, path)
                log.warning("no golden at %s: a write was killed there; reading the generation it completed, %s "
                            "(the next write of this golden puts it in place)", path, source.name)
            return self._read(model, input_set, source)

    def tidy(self, model: str, input_set: str) -> None:
        """Finish what a killed writer left (exclusive lock; see recover()). Every write does this first."""
        path = self.path(model, input_set)
        self._inside_root(path)
        if path.parent.is_dir():
            with _locked(path.parent, exclusive=True):
                recover(path)

    def _missing(self, model: str, input_set: str, path: Path) -> GoldenMissingError:
        return GoldenMissingError(f"no golden for model '{model}', input set '{input_set}' at {path}; "
                                  f"create it with: {self.command(model, input_set)}")

    def _read(self, model: str, input_set: str, path: Path) -> Golden:
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise self._missing(model, input_set, path)
        manifest = _manifest(manifest_path, self.root)
        if (manifest["model"], manifest["input_set"]) != (model, input_set):
            raise GoldenCorruptError(f"golden manifest {manifest_path} belongs to model '{manifest['model']}', input "
                                     f"set '{manifest['input_set']}', not model '{model}', input set '{input_set}'")
        arrays = {filename: _load_npz(path / filename, manifest, self.root) for filename in (INPUTS, OUTPUTS)}
        for filename, section in ((INPUTS, "inputs"), (OUTPUTS, "outputs")):
            declared = manifest[section]
            if set(arrays[filename]) != set(declared):
                raise GoldenCorruptError(
                    f"{path / filename} holds {sorted(arrays[filename])}, manifest declares {sorted(declared)}")
            for name, info in declared.items():
                array = arrays[filename][name] = with_dtype(arrays[filename][name], info["dtype"])
                if str(array.dtype) != info["dtype"] or list(array.shape) != list(info["shape"]):
                    raise GoldenCorruptError(f"{path / filename}:{name} is {array.dtype}{list(array.shape)}, "
                                             f"manifest says {info['dtype']}{info['shape']}")
                bad = int(array.size - np.count_nonzero(np.isfinite(array))) if floating(array.dtype) else 0
                if bad:
                    raise GoldenCorruptError(f"{path / filename}:{name} holds {bad} NaN/Inf value(s); a golden "
                                             f"must be finite (regenerate it: {self.command(model, input_set, True)})")
        num = manifest["num_samples"]
        for name, axis in manifest.get("input_batch_axes", {}).items():
            if axis is None:  # an input without a batch axis: a fixed shape, the same for every sample
                continue
            array = arrays[INPUTS].get(name)
            if array is None or array.ndim <= axis or array.shape[axis] != num:
                shape = None if array is None else list(array.shape)
                raise GoldenCorruptError(f"{path / INPUTS}:{name} has shape {shape}: axis {axis} does not hold the "
                                         f"manifest's {num} samples")
        return Golden(path=path, inputs=arrays[INPUTS], outputs=arrays[OUTPUTS], manifest=manifest)

    # -- writing -------------------------------------------------------------------------------

    def _protected(self, path: Path) -> Path | None:
        return under_any(path, protected_roots(os.environ.get(READONLY_ENV)))

    def _inside_root(self, path: Path) -> None:
        """Refuse a golden directory that, with symlinks resolved, leaves the root (a symlinked model directory)."""
        if not is_within(path, self.root):
            raise GoldenError(f"golden directory {path} resolves to {path.resolve()}, outside the golden root "
                              f"{self.root.resolve()}; refused")

    def check_writable(self, model: str, input_set: str, overwrite: bool) -> None:
        """Raise before any work if the write would be refused (protected, escaping, not ours, or existing)."""
        final = self.path(model, input_set)
        protected = self._protected(final) or self._protected(self.root)
        if protected is not None:
            raise GoldenExistsError(f"golden writes under {protected} are disabled here ({READONLY_ENV})")
        self._inside_root(final)
        _refuse_linked_dirs(final)
        for directory in (self.root, final.parent):
            if directory.exists() and not directory.is_dir():
                raise GoldenError(f"cannot write goldens below {directory}: it is a file, not a directory")
        if final.is_symlink() or (final.exists() and not final.is_dir()):
            raise GoldenExistsError(f"{final} is not a golden directory (a file or a symlink); refusing to replace it")
        if final.exists():
            owner = _owner(final)
            if owner != (model, input_set):
                what = "holds no readable golden manifest" if owner is None else \
                    f"is the golden of model '{owner[0]}', input set '{owner[1]}'"
                raise GoldenExistsError(f"{final} {what}, not of model '{model}', input set '{input_set}'; "
                                        f"refusing to replace it")
            if not overwrite:
                raise GoldenExistsError(
                    f"golden for model '{model}', input set '{input_set}' already exists at {final}; refusing to "
                    f"overwrite it. To replace it run: {self.command(model, input_set, overwrite=True)}")

    def write(
        self,
        model: str,
        input_set: str,
        inputs: dict[str, np.ndarray],
        outputs: dict[str, np.ndarray],
        manifest: dict[str, Any],
        overwrite: bool = False,
    ) -> Path:
        """Write a golden under the exclusive lock, through a new generation (see the module's docstring).

        An interrupted or failed write leaves the previous golden (if any) intact, or recoverable when the
        process was killed; GoldenBusyError when another process is writing goldens of this model.
        """
        self.check_writable(model, input_set, overwrite)
        final = self.path(model, input_set)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GoldenError(f"cannot create the golden directory {final.parent}: {_os_reason(exc)}") from exc
        with _locked(final.parent, exclusive=True):
            try:
                recover(final)
                self.check_writable(model, input_set, overwrite)  # again, now that no one else can write
                written = _write_generation(final, model, input_set, inputs, outputs, manifest)
            except OSError as exc:
                raise GoldenError(f"cannot write the golden at {final}: {_os_reason(exc)}") from exc
            try:
                recover(final)  # the new golden verifies: older leftovers (kept while none did) go now
            except OSError as exc:
                log.warning("golden written; leftovers beside it could not be removed: %s", _os_reason(exc))
            return written


def _os_reason(exc: OSError) -> str:
    return f"{exc.strerror} ({exc.filename})" if exc.strerror and exc.filename else one_line(exc)


def _write_generation(final: Path, model: str, input_set: str, inputs: dict[str, np.ndarray],
                      outputs: dict[str, np.ndarray], manifest: dict[str, Any]) -> Path:
    generation = 1 + max((g for g, _, _ in _leftovers(final) if g is not None), default=0)
    staging = final.parent / f".{final.name}.tmp-g{generation:06d}"
    backup = final.parent / f".{final.name}.old-g{generation:06d}"
    staging.mkdir()
    try:
        files = {}
        for filename, arrays, step in ((INPUTS, inputs, "staged-inputs"), (OUTPUTS, outputs, "staged-outputs")):
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **{k: bfloat16_bits(v) for k, v in arrays.items()})  # bfloat16: its bits
            _write_synced(staging / filename, buffer.getvalue())
            files[filename] = {"sha256": sha256_file(staging / filename), "size": (staging / filename).stat().st_size}
            _crash_point(step)
        full = {
            "format": FORMAT,
            "model": model,
            "input_set": input_set,
            **manifest,
            "files": files,
            "inputs": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in inputs.items()},
            "outputs": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in outputs.items()},
        }
        _write_synced(staging / MANIFEST, (json.dumps(full, indent=2, sort_keys=True) + "\n").encode())
        _sync_dir(staging)
        _crash_point("staged-manifest")
        had_golden = final.exists()
        if had_golden:
            os.replace(final, backup)
            _sync_dir(final.parent)
            _crash_point("moved-aside")
        try:
            os.replace(staging, final)
        except BaseException:
            if had_golden:
                os.replace(backup, final)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:  # the new golden is in place: what follows only makes that durable and tidies up
        _sync_dir(final.parent)
        _crash_point("moved-in")
        if had_golden:
            _remove_tree(backup)
    except OSError as exc:
        log.warning("golden written to %s; the previous one could not be removed (%s): it is removed by the next "
                    "write", final, _os_reason(exc))
    return final


def recover(final: Path) -> None:
    """Bring a golden directory to a consistent state after a killed write (the caller holds the exclusive lock):
    keep the live golden if there is one, else restore the newest generation's complete leftover; then remove
    every unfinished staging directory and, once the live golden verifies, every leftover. (While no live golden
    verifies, backups are kept for inspection.)"""
    leftovers = _leftovers(final)
    if not leftovers:
        return
    if not final.exists():
        candidate = _newest_complete(final)
        if candidate is not None:
            _crash_point("recovering")
            os.replace(candidate, final)
            _sync_dir(final.parent)
            log.warning("restored %s from %s, left by an interrupted golden write", final, candidate.name)
    live = final.exists() and _complete(final)
    for _, kind, leftover in _leftovers(final):
        if live or (kind == "tmp" and not _complete(leftover)):  # an unfinished staging is never restorable
            _remove_tree(leftover)


def _newest_complete(final: Path) -> Path | None:
    """The leftover a killed write of `final` completed last: of the newest generation only (its staging, which
    holds the new golden, before its backup, which holds the one before), whose every file matches its manifest.
    Older generations are superseded and never come back; an older parity's randomly named leftovers count only
    where there are no numbered ones (newest first)."""
    leftovers = _leftovers(final)
    numbered = [item for item in leftovers if item[0] is not None]
    if numbered:
        newest = max(item[0] for item in numbered)
        ordered = sorted((item for item in numbered if item[0] == newest), key=lambda item: item[1] != "tmp")
    else:
        ordered = sorted(leftovers, key=lambda item: item[2].stat().st_mtime, reverse=True)
    return next((path for _, _, path in ordered if _complete(path)), None)


_LEFTOVER = re.compile(r"\.(?P<set>.+)\.(?P<kind>tmp|old)-(?P<suffix>g(?P<gen>\d+)|[^.]+)")


def _leftovers(final: Path) -> list[tuple[int | None, str, Path]]:
    """(generation, or None for an older parity's random suffix; 'tmp' | 'old'; path) of every staging or backup
    directory of `final`."""
    found = []
    try:
        entries = list(final.parent.iterdir()) if final.parent.is_dir() else []
    except OSError:
        return []
    for entry in entries:
        match = _LEFTOVER.fullmatch(entry.name)
        if match and match["set"] == final.name and entry.is_dir() and not entry.is_symlink():
            found.append((int(match["gen"]) if match["gen"] else None, match["kind"], entry))
    return found


def _names(leftovers: list[tuple[int | None, str, Path]]) -> str:
    return ", ".join(sorted(p.name for _, _, p in leftovers))


def _complete(directory: Path) -> bool:
    """Whether a directory holds a whole golden: a manifest of this format whose files all match its hashes."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        files = manifest["files"]
        return manifest.get("format") == FORMAT and all(
            (directory / name).is_file() and sha256_file(directory / name) == files[name]["sha256"]
            for name in (INPUTS, OUTPUTS))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _owner(directory: Path) -> tuple[str, str] | None:
    """(model, input set) a golden directory's manifest names, or None when it has no readable manifest."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        return str(manifest["model"]), str(manifest["input_set"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _manifest(path: Path, root: Path) -> dict[str, Any]:
    import jsonschema

    _refuse_escaping_link(path, root)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GoldenCorruptError(f"golden manifest {path} is unreadable: {one_line(exc)}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GoldenCorruptError(f"golden manifest {path} is not a {FORMAT} manifest")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(MANIFEST_SCHEMA).iter_errors(manifest))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise GoldenCorruptError(f"golden manifest {path} is invalid at {where}: {error.message}")
    return manifest


def _refuse_linked_dirs(final: Path) -> None:
    """A golden's model or input-set directory that is a symlink (even within the root) is refused: another
    golden would be read, or written, under this one's name. (The root itself may be a symlink.)"""
    for directory in (final.parent, final):
        if directory.is_symlink():
            raise GoldenError(f"golden directory {directory} is a symlink to {directory.resolve()}; goldens live "
                              f"in real directories (refused)")


def _refuse_escaping_link(path: Path, root: Path) -> None:
    if path.is_symlink() and not is_within(path, root):
        raise GoldenCorruptError(f"golden file {path} is a symlink to {path.resolve()}, outside the golden root "
                                 f"{root.resolve()}; refused")


def _load_npz(path: Path, manifest: dict[str, Any], root: Path) -> dict[str, np.ndarray]:
    expected = manifest["files"][path.name]["sha256"]
    _refuse_escaping_link(path, root)
    if not path.is_file():
        raise GoldenCorruptError(f"golden file {path} is missing")
    actual = sha256_file(path)
    if actual != expected:
        raise GoldenCorruptError(
            f"golden file {path} fails its SHA-256 check (changed or truncated): "
            f"manifest {str(expected)[:12]}…, file {actual[:12]}…"
        )
    if not zipfile.is_zipfile(path):
        raise GoldenCorruptError(f"golden file {path} is not an npz archive (not a zip file)")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for name in data.files:
                try:
                    arrays[name] = np.array(data[name])
                except ValueError as exc:
                    if "pickle" in str(exc):  # object arrays need pickle: refused
                        raise GoldenCorruptError(f"golden file {path}: member '{name}' holds pickled (object) "
                                                 f"data, refused") from exc
                    raise
    except GoldenError:
        raise
    except Exception as exc:  # a broken zip member (zlib), a broken .npy header (tokenize), a bad shape ...
        raise GoldenCorruptError(f"golden file {path} is not a readable npz: {one_line(exc)}") from exc
    return arrays


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_dir(path: Path) -> None:
    """Make renames and new entries in `path` durable (a crash after this keeps them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    """Remove a leftover directory file by file (a kill part-way leaves a directory that fails to verify)."""
    for index, entry in enumerate(sorted(path.iterdir()) if path.is_dir() else []):
        if index == 1:
            _crash_point("removing-backup")
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.rmdir()


def _crash_point(step: str) -> None:
    """Test-only: kill this process at `step` when PARITY_TEST_CRASH_AT names it (a real SIGKILL: nothing runs
    after it, exactly like a power cut or the OOM killer)."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


# -- locking ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(directory: Path, exclusive: bool) -> Iterator[None]:
    """flock on the model directory itself (no lock file: a reader writes nothing): exclusive for a write or a
    recovery, shared for a read. Waits up to PARITY_GOLDEN_LOCK_TIMEOUT seconds (default 60) for another
    process's lock, then a one-line GoldenBusyError."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        raise GoldenError(f"cannot open the golden directory {directory}: {_os_reason(exc)}") from exc
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + _lock_timeout()
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if not isinstance(exc, BlockingIOError):  # e.g. a file system without flock on directories
                    raise GoldenError(f"cannot lock the golden directory {directory}: {_os_reason(exc)}") from exc
                if time.monotonic() >= deadline:
                    raise GoldenBusyError(
                        f"goldens in {directory} are locked by another process (a golden write under way); "
                        f"waited {_lock_timeout():g} s for it ({LOCK_TIMEOUT_ENV} sets how long)") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _lock_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get(LOCK_TIMEOUT_ENV, "60")))
    except ValueError:
        return 60.0
