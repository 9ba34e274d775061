"""ONNX Runtime Web for the ort_web (Node) and ort_web_browser (headless Chromium) backends.

The npm package is pinned by the package.json and package-lock.json shipped here (or a directory of your own
holding both: `backend.package_dir`) and installed once with `npm ci` into a cache directory keyed by the
lockfile's SHA-256 (default ~/.cache/parity/ort-web, or $PARITY_CACHE/ort-web). Ahead of time:

    python -m parity.web install [--cache-dir DIR] [--package-dir DIR]

The JavaScript that runs the model ships here too: runner.mjs (Node), page.html (the browser) and tensors.mjs,
which both share (parity's raw tensor files in, the same out).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from parity.errors import BackendError, ConfigError, one_line
from parity.paths import cache_dir

log = logging.getLogger("parity")

ASSETS = Path(__file__).resolve().parent
PACKAGE = "onnxruntime-web"
MARKER = ".parity-installed"
INSTALL_TIMEOUT_S = 900


def default_cache_dir() -> Path:
    return cache_dir("ort-web")


def package_files(package_dir: str | Path | None = None) -> tuple[Path, Path]:
    """package.json and package-lock.json of `package_dir` (None: the ones shipped with parity); ConfigError when
    either is missing or the package does not name onnxruntime-web."""
    where = Path(package_dir).expanduser() if package_dir else ASSETS
    manifest, lock = where / "package.json", where / "package-lock.json"
    for path in (manifest, lock):
        if not path.is_file():
            raise ConfigError(f"{where} holds no {path.name}; ONNX Runtime Web is installed with npm ci from a "
                              f"package.json and its package-lock.json")
    try:
        declared = json.loads(manifest.read_text()).get("dependencies", {})
    except ValueError as exc:
        raise ConfigError(f"{manifest} is not JSON: {one_line(exc)}") from None
    if PACKAGE not in declared:
        raise ConfigError(f"{manifest} does not depend on {PACKAGE}")
    return manifest, lock


def pinned_version(package_dir: str | Path | None = None) -> str:
    """The onnxruntime-web version the lockfile pins."""
    _, lock = package_files(package_dir)
    try:
        packages = json.loads(lock.read_text()).get("packages", {})
        return str(packages[f"node_modules/{PACKAGE}"]["version"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{lock} pins no {PACKAGE} version (a lockfile of npm 7 or later)") from None


def install_dir(package_dir: str | Path | None = None, cache_dir: str | Path | None = None) -> Path:
    """Where this lockfile's install lives (it may not exist yet)."""
    _, lock = package_files(package_dir)
    key = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return root / f"{pinned_version(package_dir)}-{key}"


def installed(package_dir: str | Path | None = None, cache_dir: str | Path | None = None) -> Path | None:
    """The onnxruntime-web package directory of a finished install, or None."""
    target = install_dir(package_dir, cache_dir)
    ort = target / "node_modules" / PACKAGE
    return ort if (target / MARKER).is_file() and (ort / "package.json").is_file() else None


def install(package_dir: str | Path | None = None, cache_dir: str | Path | None = None, npm: str = "npm") -> Path:
    """The onnxruntime-web package directory, installed with `npm ci` (from the lockfile, scripts off) if it is
    not yet: into a temporary directory renamed into place, under a lock, so concurrent jobs install it once and
    an interrupted install leaves nothing half-made. BackendError with npm's stderr when npm fails."""
    done = installed(package_dir, cache_dir)
    if done is not None:
        return done
    program = shutil.which(npm)
    if program is None:
        raise BackendError(f"npm ('{npm}') is not on PATH; it installs {PACKAGE} once (Debian: apt-get install npm)")
    manifest, lock = package_files(package_dir)
    target = install_dir(package_dir, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / ".lock"):
        done = installed(package_dir, cache_dir)
        if done is not None:
            return done
        version = pinned_version(package_dir)
        log.info("installing %s %s with npm ci into %s (once; later runs reuse it)", PACKAGE, version, target)
        work = Path(tempfile.mkdtemp(prefix=".install-", dir=target.parent))
        try:
            shutil.copyfile(manifest, work / "package.json")
            shutil.copyfile(lock, work / "package-lock.json")
            try:
                proc = subprocess.run(
                    [program, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], cwd=work,
                    capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise BackendError(f"npm ci of {PACKAGE} {version} did not finish in {INSTALL_TIMEOUT_S} s") from None
            if proc.returncode != 0:
                from parity.backends.command import stderr_tail

                raise BackendError(f"npm ci of {PACKAGE} {version} failed (exit {proc.returncode}): "
                                   f"{stderr_tail(proc.stderr) or stderr_tail(proc.stdout) or 'no output'}")
            (work / MARKER).write_text(json.dumps({"package": PACKAGE, "version": version}) + "\n")
            if target.exists():  # a leftover without its marker
                shutil.rmtree(target)
            work.rename(target)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    return target / "node_modules" / PACKAGE


@contextlib.contextmanager
def _locked(path: Path):
    import fcntl

    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m parity.web",
                                     description=f"Install {PACKAGE} for the ort_web and ort_web_browser backends.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("install", "install it (npm ci from the pinned lockfile) unless it is already"),
                       ("where", "print where the install is, or would be")):
        command = sub.add_parser(name, help=text)
        command.add_argument("--cache-dir", default=None, help=f"default: {default_cache_dir()}")
        command.add_argument("--package-dir", default=None,
                             help="a directory with your own package.json and package-lock.json (default: parity's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[parity] %(message)s")
    try:
        if args.command == "where":
            print(install_dir(args.package_dir, args.cache_dir))
            return 0
        path = install(args.package_dir, args.cache_dir)
    except (BackendError, ConfigError) as exc:
        print(f"parity: {one_line(exc)}", file=sys.stderr)
        return 2
    print(f"{PACKAGE} {pinned_version(args.package_dir)}: {path}")
    return 0
