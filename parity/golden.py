"""Golden store: golden/<model>/<input_set>/{inputs,outputs}.npz + manifest.json, atomic and hash-checked."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shlex
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.errors import GoldenCorruptError, GoldenExistsError, GoldenMissingError

FORMAT = "parity.golden/v1"
INPUTS = "inputs.npz"
OUTPUTS = "outputs.npz"
MANIFEST = "manifest.json"
# os.pathsep-separated golden roots that must never be written (CI protects the committed goldens)
READONLY_ENV = "PARITY_READONLY_GOLDENS"
log = logging.getLogger("parity")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_NOT_FOR_GOLDEN = ("mode", "golden.overwrite", "hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")


def create_command(
    model: str, input_set: str, root: str | None = None, overwrite: bool = False, overrides: list[str] | None = None
) -> str:
    """The command line that (re)creates a golden: the job's own overrides when known, with mode=golden."""
    if overrides is not None:
        kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in _NOT_FOR_GOLDEN]
        parts = ["python -m parity", "mode=golden", *(shlex.quote(o) for o in kept)]
        if overwrite:
            parts.append("golden.overwrite=true")
        return " ".join(parts)
    parts = ["python -m parity mode=golden", f"model={model}"]
    if input_set != "default":
        parts.append(f"inputs.name={input_set}")
    if root and root != "golden":
        parts.append(f"golden.root={root}")
    if overwrite:
        parts.append("golden.overwrite=true")
    return " ".join(parts)


def reference_manifest(num_samples: int, weights_sha256: str | None, input_batch_axes: dict[str, int],
                       reference: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The manifest fields a golden made by parity records (the store adds its files, arrays and hashes)."""
    from parity.environment import environment, now

    return {"num_samples": num_samples, "weights_sha256": weights_sha256, "input_batch_axes": input_batch_axes,
            "reference": reference, "config": config, "environment": environment(), "created": now()}


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
        return self.root / model / input_set

    def exists(self, model: str, input_set: str) -> bool:
        return (self.path(model, input_set) / MANIFEST).is_file()

    # -- reading -------------------------------------------------------------------------------

    def load(self, model: str, input_set: str) -> Golden:
        """Load and verify a golden; raises GoldenMissingError or GoldenCorruptError, never modifies it.

        (The one exception: a previous golden left aside by a write killed mid-swap is moved back first.)
        """
        path = self.path(model, input_set)
        _recover_swap(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise GoldenMissingError(
                f"no golden for model '{model}', input set '{input_set}' at {path}; "
                f"create it with: {self.command(model, input_set)}"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise GoldenCorruptError(f"golden manifest {manifest_path} is unreadable: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise GoldenCorruptError(f"golden manifest {manifest_path} is not a {FORMAT} manifest")
        arrays = {}
        for filename in (INPUTS, OUTPUTS):
            arrays[filename] = self._load_npz(path / filename, manifest)
        for filename, section in ((INPUTS, "inputs"), (OUTPUTS, "outputs")):
            declared = manifest.get(section, {})
            if set(arrays[filename]) != set(declared):
                raise GoldenCorruptError(
                    f"{path / filename} holds {sorted(arrays[filename])}, manifest declares {sorted(declared)}"
                )
            for name, info in declared.items():
                array = arrays[filename][name]
                if str(array.dtype) != info["dtype"] or list(array.shape) != list(info["shape"]):
                    raise GoldenCorruptError(
                        f"{path / filename}:{name} is {array.dtype}{list(array.shape)}, "
                        f"manifest says {info['dtype']}{info['shape']}"
                    )
        return Golden(path=path, inputs=arrays[INPUTS], outputs=arrays[OUTPUTS], manifest=manifest)

    @staticmethod
    def _load_npz(path: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
        expected = manifest.get("files", {}).get(path.name, {}).get("sha256")
        if not path.is_file():
            raise GoldenCorruptError(f"golden file {path} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise GoldenCorruptError(
                f"golden file {path} fails its SHA-256 check (changed or truncated): "
                f"manifest {str(expected)[:12]}…, file {actual[:12]}…"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: np.array(data[name]) for name in data.files}
        except ValueError as exc:  # object arrays need pickle: refused
            raise GoldenCorruptError(f"golden file {path} holds pickled data, refused: {exc}") from exc
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise GoldenCorruptError(f"golden file {path} is not a readable npz: {exc}") from exc

    # -- writing -------------------------------------------------------------------------------

    def check_writable(self, model: str, input_set: str, overwrite: bool) -> None:
        """Raise before any work if the write would be refused."""
        protected = [Path(p).resolve() for p in os.environ.get(READONLY_ENV, "").split(os.pathsep) if p]
        target = self.root.resolve()
        if any(target == p or p in target.parents for p in protected):
            raise GoldenExistsError(f"golden writes under {self.root} are disabled here ({READONLY_ENV})")
        if self.exists(model, input_set) and not overwrite:
            raise GoldenExistsError(
                f"golden for model '{model}', input set '{input_set}' already exists at "
                f"{self.path(model, input_set)}; refusing to overwrite it. To replace it run: "
                f"{self.command(model, input_set, overwrite=True)}"
            )

    def write(
        self,
        model: str,
        input_set: str,
        inputs: dict[str, np.ndarray],
        outputs: dict[str, np.ndarray],
        manifest: dict[str, Any],
        overwrite: bool = False,
    ) -> Path:
        """Write a golden atomically: build it in a temporary directory, then rename it into place.

        An interrupted write leaves the previous golden (if any) intact.
        """
        self.check_writable(model, input_set, overwrite)
        final = self.path(model, input_set)
        _recover_swap(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{input_set}.tmp-", dir=final.parent))
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700; a golden is a normal directory
            files = {}
            for filename, arrays in ((INPUTS, inputs), (OUTPUTS, outputs)):
                buffer = io.BytesIO()
                np.savez_compressed(buffer, **arrays)
                _write_synced(staging / filename, buffer.getvalue())
                files[filename] = {"sha256": sha256_file(staging / filename), "size": (staging / filename).stat().st_size}
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
            _replace_dir(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _backup_prefix(final: Path) -> str:
    return f".{final.name}.old-"


def _recover_swap(final: Path) -> None:
    """If a write died between moving the old golden aside and moving the new one in, move the old one back."""
    if final.exists() or not final.parent.is_dir():
        return
    leftovers = sorted(p for p in final.parent.glob(_backup_prefix(final) + "*") if (p / MANIFEST).is_file())
    if leftovers:
        os.replace(leftovers[-1], final)
        log.warning("restored %s from %s, left by an interrupted golden write", final, leftovers[-1])


def _replace_dir(staging: Path, final: Path) -> None:
    """Move staging to final; an existing final is moved aside first and restored if the swap fails."""
    if not final.exists():
        os.replace(staging, final)
        return
    backup = Path(tempfile.mkdtemp(prefix=_backup_prefix(final), dir=final.parent))
    os.rmdir(backup)
    os.replace(final, backup)
    try:
        os.replace(staging, final)
    except BaseException:
        os.replace(backup, final)
        raise
    shutil.rmtree(backup, ignore_errors=True)
