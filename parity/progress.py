"""Progress for the person at the terminal: tqdm bars when stderr is a terminal, plain log lines otherwise.

- `steps(total, what)`: work in counted steps (a benchmark's batch sizes). A bar on a terminal; elsewhere the
  steps' own log lines say where it is.
- `working(what)`: work of unknown length (an export): a bar counting the seconds on a terminal, cleared when
  done; elsewhere nothing beyond the log lines around it.
- `job_line(done, total, started, overrides)`: a sweep's "job i/N" line, with a bar and the time left when stderr
  is a terminal.

Bars go to the terminal's own stream (parity.logs.terminal), also while a job's native stderr goes to its log.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from parity.logs import console_handlers, terminal


def on_terminal() -> bool:
    stream = terminal()
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _tqdm() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # no bars without tqdm: the log lines remain
        return None
    return tqdm


class _Steps:
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def update(self, n: int = 1, note: str | None = None) -> None:
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)


class _AroundBar:
    """A console handler's stream while a bar shows: the bar is cleared, the line written, the bar redrawn."""

    def __init__(self, bar: Any, stream: Any) -> None:
        self.bar, self.stream = bar, stream

    def write(self, text: str) -> int:
        self.bar.clear()
        written = self.stream.write(text)
        self.stream.flush()
        self.bar.refresh()
        return written

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def _bar(tqdm: Any, **options: Any) -> Iterator[Any]:
    """A tqdm bar on the terminal with parity's log lines printed above it, not into it."""
    bar = tqdm(file=terminal(), leave=False, dynamic_ncols=True, **options)
    handlers = console_handlers()
    previous = [h.setStream(_AroundBar(bar, h.stream)) for h in handlers]
    try:
        yield bar
    finally:
        for handler, stream in zip(handlers, previous):
            handler.setStream(stream)
        bar.close()


@contextlib.contextmanager
def steps(total: int, what: str) -> Iterator[_Steps]:
    tqdm = _tqdm() if on_terminal() else None
    if tqdm is None:
        yield _Steps(None)
        return
    with _bar(tqdm, total=total, desc=what) as bar:
        yield _Steps(bar)


@contextlib.contextmanager
def working(what: str, every: float = 0.5) -> Iterator[None]:
    tqdm = _tqdm() if on_terminal() else None
    if tqdm is None:
        yield
        return
    with _bar(tqdm, desc=what, bar_format="{desc}: {elapsed}") as bar:
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(every):
                bar.refresh()

        thread = threading.Thread(target=tick, name="parity-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def job_line(done: int, total: int | None, started: float, overrides: str) -> str:
    """`job 3/8: <overrides>`; on a terminal with a bar, elapsed and remaining time from the jobs so far."""
    count = f"{done + 1}/{total}" if total else f"{done + 1}"
    tqdm = _tqdm() if on_terminal() and total else None
    if tqdm is None:
        return f"job {count}: {overrides}"
    meter = tqdm.format_meter(done, total, time.monotonic() - started, ncols=60, unit="job")
    return f"job {count}: {overrides}  {meter}"
