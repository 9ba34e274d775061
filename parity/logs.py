"""Quiet by default: the terminal gets parity's own lines, everything else goes to parity.log.

- `OnlyParity`: the console handler's filter. Other libraries' log records (TensorFlow, onnxscript, torch.onnx,
  Hydra's launch lines) reach the log file only.
- `ConsoleFormatter`: `[parity] message`, one line; a traceback goes to parity.log, never to the terminal.
- `LazyFileHandler`: a log file opened on its first record, only once its directory exists (the sweep's
  multirun.log: Hydra creates the sweep directory just before it launches the jobs).
- `native_output_to(path)`: what C and C++ libraries write straight to the process's stderr (TensorFlow's oneDNN
  and absl lines, ONNX Runtime's own logger, Python warnings) goes to the job's parity.log; parity's console
  handler keeps writing to the terminal through a copy of the original stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def is_parity(name: str) -> bool:
    return name == "parity" or name.startswith("parity.")


class OnlyParity(logging.Filter):
    """Pass parity's own records only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return is_parity(record.name)


class ConsoleFormatter(logging.Formatter):
    """`[parity] message` for parity's loggers, `[library.logger] message` for the rest (where a console shows
    them), always one line: a traceback is noted, and written to parity.log by the file handler."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        more = " (traceback in parity.log)" if record.exc_info else ""
        if is_parity(record.name):
            return f"[parity] {message}{more}"
        first = (message.strip().splitlines() or [""])[0]
        return f"[{record.name}] {first}{more}"


class LazyFileHandler(logging.FileHandler):
    """A FileHandler that opens its file on the first record, and drops records until the file's directory
    exists (it never creates directories of its own)."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = "utf-8") -> None:
        super().__init__(filename, mode=mode, encoding=encoding, delay=True)

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None and not Path(self.baseFilename).parent.is_dir():
            return
        super().emit(record)


_TERMINAL: list[Any] = []  # the terminal's stream while native_output_to redirects stderr


def terminal() -> Any:
    """Where progress for the person at the terminal goes: the real stderr, also while it is redirected."""
    return _TERMINAL[-1] if _TERMINAL else sys.stderr


def console_handlers() -> list[logging.StreamHandler]:
    """The handlers writing parity's lines to the terminal (stderr) in the logging configuration now active."""
    found = []
    for logger in (logging.getLogger(), logging.getLogger("parity")):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) \
                    and getattr(handler, "stream", None) in (sys.stderr, sys.__stderr__, *_TERMINAL):
                found.append(handler)
    return found


@contextlib.contextmanager
def native_output_to(path: Path) -> Iterator[Any]:
    """Send the process's stderr (file descriptor 2, and sys.stderr with it) to `path`, appending, for the
    duration; parity's console handlers write to the terminal meanwhile. Yields the terminal's stream. Where
    stderr has no file descriptor (an embedding host), nothing is redirected."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield sys.stderr
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # first: a failure here leaks nothing
    sys.stderr.flush()
    saved = os.dup(fd)
    stream = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    handlers = console_handlers()
    previous = [h.setStream(stream) for h in handlers]
    os.dup2(target, fd)
    os.close(target)
    _TERMINAL.append(stream)
    try:
        yield stream
    finally:
        _TERMINAL.pop()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
        for handler, old in zip(handlers, previous):
            handler.setStream(old)
        stream.close()
