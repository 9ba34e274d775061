"""The console's log format: parity's own lines tagged `[parity]`, other libraries' lines tagged with their
logger's name and kept to their message (their tracebacks go to parity.log in the run directory only)."""

from __future__ import annotations

import logging


class ConsoleFormatter(logging.Formatter):
    """`[parity] message` for parity's loggers, `[library.logger] message` for the rest, without tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "parity" or record.name.startswith("parity."):
            if record.exc_info and not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
            detail = f"\n{record.exc_text}" if record.exc_text else ""
            return f"[parity] {message}{detail}"
        first = (message.strip().splitlines() or [""])[0]
        more = " (traceback in parity.log)" if record.exc_info else ""
        return f"[{record.name}] {first}{more}"
