"""A real headless Chromium driven through the DevTools protocol (websocket-client), for tests that must see a
page as a browser renders it: console errors, uncaught exceptions, and what a script finds in the DOM."""

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


def chromium() -> str | None:
    """The browser's executable, or None where none is installed."""
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


def missing_reason() -> str | None:
    """Why browser tests cannot run here, or None."""
    if chromium() is None:
        return "no Chromium here (Debian: apt-get install chromium); the HTML report's browser test needs one"
    try:
        import websocket  # noqa: F401  (websocket-client)
    except ImportError:
        return "websocket-client is not installed (a test dependency: pip install -e '.[test]')"
    return None


class Page:
    """One browser tab: navigate, evaluate, and everything the console and the runtime reported meanwhile."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.next_id, self.events = ws, 0, []

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)
        raise TimeoutError(f"{method}: no answer in {timeout} s")

    def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            self.events.append(message)
            if message.get("method") == event:
                return message
        raise TimeoutError(f"no {event} in {timeout} s")

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"the page's script failed: {result['exceptionDetails']}")
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

    def __enter__(self) -> Page:
        import websocket

        self.ws = None
        self.profile = Path(tempfile.mkdtemp(prefix="parity-chromium-"))
        self.log = (self.profile.parent / f"{self.profile.name}.log").open("w+b")  # read only on failure
        self.proc = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={self.profile}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=self.log)
        try:
            port_file = self.profile / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not (port_file.is_file() and port_file.read_text().strip()):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self._stop()
                    self.log.seek(0)
                    raise RuntimeError(f"Chromium did not start: {self.log.read().decode(errors='replace')[-2000:]}")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                target = next(t for t in json.load(answer) if t["type"] == "page")
            self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
            page = Page(self.ws)
            for domain in ("Page", "Runtime", "Log"):
                page.call(f"{domain}.enable")
        except BaseException:
            self.__exit__()
            raise
        return page

    def _stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.ws is not None:
                self.ws.close()
        finally:
            self._stop()
            self.log.close()
            Path(self.log.name).unlink(missing_ok=True)
            shutil.rmtree(self.profile, ignore_errors=True)
