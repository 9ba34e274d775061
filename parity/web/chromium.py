"""A real headless Chromium driven through the DevTools protocol (over websocket-client): the ort_web_browser
backend's browser, and the tests' (the HTML report rendered as a browser renders it).

`with Browser() as page:` starts Chromium with a fresh profile (no cache of an older model survives it) and one
tab; `page.open(url)`, `page.evaluate(js, timeout)`, `page.errors()` (console errors, uncaught exceptions and
failed loads the page reported), `page.version` (what Browser.getVersion answered). Chromium's own stderr goes
to a log file whose tail is part of every failure's message.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium(executable: str | None = None) -> str | None:
    """The browser's executable (`executable` when given, else the first of CANDIDATES on PATH), or None."""
    if executable:
        return shutil.which(executable)
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


def missing_reason(executable: str | None = None, needed_for: str = "the browser check") -> str | None:
    """Why a browser cannot be driven here, or None."""
    if chromium(executable) is None:
        name = f"'{executable}'" if executable else "Chromium"
        return f"no {name} here (Debian: apt-get install chromium); {needed_for} needs one"
    try:
        import websocket  # noqa: F401  (websocket-client)
    except ImportError:
        return (f"websocket-client is not installed; {needed_for} drives Chromium with it: "
                f"pip install 'parity[web]'")
    return None


class PageError(RuntimeError):
    """The page's script threw, or the browser did not answer in time."""


class Page:
    """One browser tab: navigate, evaluate, and everything the console and the runtime reported meanwhile."""

    def __init__(self, ws: Any, browser: Browser) -> None:
        self.ws, self.next_id, self.events, self.browser = ws, 0, [], browser
        self.version: dict[str, Any] = {}

    def _recv(self, deadline: float, what: str) -> dict[str, Any]:
        import websocket

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(what)
        self.ws.settimeout(remaining)
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            raise TimeoutError(what) from None
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            raise PageError(f"the browser closed the DevTools connection ({what}); "
                            f"{self.browser.log_tail() or 'nothing on its stderr'}") from None

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        import websocket

        self.next_id += 1
        ident = self.next_id
        try:
            self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        except (websocket.WebSocketException, ConnectionError, OSError):
            raise PageError(f"the browser closed the DevTools connection ({method}); "
                            f"{self.browser.log_tail() or 'nothing on its stderr'}") from None
        deadline = time.monotonic() + timeout
        what = f"{method}: no answer in {timeout:g} s"
        while True:
            message = self._recv(deadline, what)
            if message.get("id") == ident:
                if "error" in message:
                    raise PageError(f"{method}: {message['error'].get('message', message['error'])}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        deadline = time.monotonic() + timeout
        while True:
            message = self._recv(deadline, f"no {event} in {timeout:g} s")
            self.events.append(message)
            if message.get("method") == event:
                return message

    def open(self, url: str, timeout: float = 60.0) -> None:
        self.events.clear()
        answer = self.call("Page.navigate", timeout=timeout, url=url)
        if answer.get("errorText"):
            raise PageError(f"cannot open {url}: {answer['errorText']}")
        self.wait_for("Page.loadEventFired", timeout)

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The value of `expression` (a promise awaited); PageError with the exception if it throws."""
        result = self.call("Runtime.evaluate", timeout=timeout, expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text") or "an exception"
            raise PageError(f"the page's script failed: {text.splitlines()[0] if text else text}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page reported."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')} "
                             f"{params['exceptionDetails'].get('exception', {}).get('description', '')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return found


class Browser:
    """`with Browser() as page:` a headless Chromium with one tab, closed (and its profile removed) after."""

    def __init__(self, executable: str | None = None, flags: tuple[str, ...] = (), start_timeout: float = 60.0) -> None:
        self.executable, self.flags, self.start_timeout = executable, tuple(flags), start_timeout

    def __enter__(self) -> Page:
        import websocket

        program = chromium(self.executable)
        if program is None:
            raise PageError(missing_reason(self.executable) or "no browser")
        self.ws, self.closed = None, False
        self.profile = Path(tempfile.mkdtemp(prefix="parity-chromium-"))
        self.log = (self.profile.parent / f"{self.profile.name}.log").open("w+b")  # read only on failure
        try:
            self.proc = subprocess.Popen(
                [program, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                 "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={self.profile}",
                 *self.flags, "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)
        except OSError as exc:
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)
            shutil.rmtree(self.profile, ignore_errors=True)
            raise PageError(f"cannot start {program}: {exc.strerror or exc}") from None
        try:
            port_file = self.profile / "DevToolsActivePort"
            deadline = time.monotonic() + self.start_timeout
            while not (port_file.is_file() and port_file.read_text().strip()):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self._stop()
                    raise PageError(f"Chromium did not start: {self.log_tail() or 'nothing on its stderr'}")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                target = next(t for t in json.load(answer) if t["type"] == "page")
            self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
            page = Page(self.ws, self)
            for domain in ("Page", "Runtime", "Log"):
                page.call(f"{domain}.enable")
            page.version = page.call("Browser.getVersion")
        except BaseException:
            self.__exit__()
            raise
        return page

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of Chromium's stderr, on one line."""
        try:
            self.log.flush()
            self.log.seek(0)
            text = self.log.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        return " | ".join([ln.strip() for ln in text.splitlines() if ln.strip()][-lines:])

    def _stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __exit__(self, *exc: Any) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.ws is not None:
                self.ws.close()
        finally:
            self._stop()
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)
            shutil.rmtree(self.profile, ignore_errors=True)
