"""Typed errors that users cause, each turned into one clear line and an exit code."""

from __future__ import annotations

import re


class ParityError(Exception):
    """Base of every error parity reports as a verdict or a one-line message."""

    exit_code = 2


class ConfigError(ParityError):
    """The composed configuration is invalid (bad value, unknown name, missing field)."""


class GoldenError(ParityError):
    """A golden is missing, corrupt, stale or protected."""


class GoldenMissingError(GoldenError):
    """No golden exists for this model and input set."""


class GoldenCorruptError(GoldenError):
    """A golden file fails its integrity check (hash, truncation, pickled content)."""


class GoldenStaleError(GoldenError):
    """The golden was made from different model weights than the ones built now."""


class GoldenExistsError(GoldenError):
    """A golden already exists and overwriting was not asked for."""


class GoldenBusyError(GoldenError):
    """Another process holds the golden directory's lock (a write is under way)."""


class ExportError(ParityError):
    """The exporter raised while converting the model."""


class BackendError(ParityError):
    """The backend failed to load the artifact or to run it."""


class ProviderFallbackError(BackendError):
    """A requested execution provider is not among those that actually ran."""


class UnavailableError(ParityError):
    """A framework, exporter or transform the job needs is not installed here: the job is a SKIP with the reason."""


class DataError(ParityError):
    """An input or golden data file cannot be used: unreadable, pickled, or holding other names, dtypes, shapes or
    sample counts than the model declares."""


class ModelError(ParityError):
    """The model builder or the reference forward pass failed."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: BaseException) -> str:
    """`Type: first line of message`, for verdict messages and stderr."""
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    if isinstance(exc, ParityError):
        return text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def config_error_line(exc: BaseException) -> str:
    """Hydra/OmegaConf errors are multi-line; keep the message and the key it concerns, on one line (for an
    unknown group option, with the options Hydra lists and the nearest one)."""
    options = _available_options(str(exc))
    if options is not None:
        return options
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


_MISSING_OPTION = re.compile(r"Could not find '([^'/]+)/([^']+)'")


def _available_options(text: str) -> str | None:
    """`Could not find 'model/resnet'` + Hydra's "Available options in 'model':" list -> one line with the
    options (schemas named base_* left out) and the nearest name; None for any other message."""
    import difflib

    found = _MISSING_OPTION.search(text)
    marker = f"Available options in '{found.group(1)}':" if found else None
    if found is None or marker not in text:
        return None
    group, wanted = found.groups()
    options = []
    for line in text.split(marker, 1)[1].splitlines()[1:]:
        if not line.startswith(("\t", " ")) or not line.strip():
            break
        if not line.strip().startswith("base_"):
            options.append(line.strip())
    near = difflib.get_close_matches(wanted, options, n=1, cutoff=0.5)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    return f"no {group} option '{wanted}' (available: {', '.join(options)}){hint}"
