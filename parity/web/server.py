"""The local HTTP server the browser client talks to: bound to 127.0.0.1 on a free port, for one session.

    GET  /                          page.html                  GET /web/<file>   tensors.mjs (parity's JS)
    GET  /ort/<file>                onnxruntime-web's dist/    GET /model/<file> the model and its external data
    GET  /io/<call>/inputs/<file>   one batch's inputs         POST /io/<call>/outputs/<file>  its outputs

Every name is one plain path segment (nothing outside these directories is reachable); the model directory
serves only the model file and the external-data files it names. Every answer carries `Cache-Control: no-store`,
and with `isolated` the headers that make the page cross-origin isolated (COOP/COEP), without which a browser
gives WebAssembly no threads (SharedArrayBuffer).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from parity.web import ASSETS

_SEGMENT = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*")  # as parity.paths.label makes them: never ".", ".."
_TYPES = {".html": "text/html; charset=utf-8", ".mjs": "text/javascript", ".js": "text/javascript",
          ".wasm": "application/wasm", ".json": "application/json", ".onnx": "application/octet-stream"}
MAX_UPLOAD = 1 << 34  # one output file


class Server:
    """`with Server(...) as server:` serving until the block ends; `server.url`, `server.errors` (what it refused
    or failed to answer, for the session's error messages)."""

    def __init__(self, io_root: Path, ort_dir: Path, model: Path, external: Sequence[str], isolated: bool) -> None:
        self.io_root, self.ort_dist, self.model = Path(io_root), Path(ort_dir) / "dist", Path(model)
        self.model_files = {self.model.name: self.model, **{str(e): self.model.parent / str(e) for e in external}}
        self.isolated = isolated
        self.errors: list[str] = []

    def __enter__(self) -> Server:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "parity"

            def log_message(self, fmt: str, *args: Any) -> None:  # quiet; failures are kept in owner.errors
                return None

            def do_GET(self) -> None:  # noqa: N802
                path = owner.route_get(self.path)
                if path is None or not path.is_file():
                    owner.errors.append(f"GET {self.path}: 404")
                    self._answer(404, b"not found", ".txt")
                    return
                self._answer(200, path.read_bytes(), path.suffix)

            def do_POST(self) -> None:  # noqa: N802
                target = owner.route_post(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if target is None or not target.parent.is_dir() or length > MAX_UPLOAD:
                    owner.errors.append(f"POST {self.path}: refused")
                    self._answer(403, b"refused", ".txt")
                    return
                data = self.rfile.read(length)
                partial = target.with_name(f".{target.name}.part")
                partial.write_bytes(data)
                partial.replace(target)
                self._answer(200, b"ok", ".txt")

            def _answer(self, code: int, body: bytes, suffix: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", _TYPES.get(suffix, "text/plain"))
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if owner.isolated:
                    self.send_header("Cross-Origin-Opener-Policy", "same-origin")
                    self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
                    self.send_header("Cross-Origin-Resource-Policy", "same-origin")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="parity-web-server", daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def route_get(self, raw: str) -> Path | None:
        parts = _parts(raw)
        if parts is None:
            return None
        if parts in ([], ["index.html"]):
            return ASSETS / "page.html"
        if len(parts) == 2 and parts[0] == "web" and parts[1] == "tensors.mjs":
            return ASSETS / parts[1]
        if len(parts) == 2 and parts[0] == "ort":
            return self.ort_dist / parts[1]
        if len(parts) >= 2 and parts[0] == "model":
            return self.model_files.get("/".join(parts[1:]))
        if len(parts) == 4 and parts[0] == "io" and parts[2] == "inputs":
            return self.io_root / parts[1] / "inputs" / parts[3]
        return None

    def route_post(self, raw: str) -> Path | None:
        parts = _parts(raw)
        if parts is None or len(parts) != 4 or parts[0] != "io" or parts[2] != "outputs":
            return None
        return self.io_root / parts[1] / "outputs" / parts[3]

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def _parts(raw: str) -> list[str] | None:
    """The URL path's segments (query dropped, %-escapes decoded), or None when one is not a plain name."""
    from urllib.parse import unquote, urlsplit

    segments = [unquote(s) for s in urlsplit(raw).path.split("/") if s]
    return segments if all(_SEGMENT.fullmatch(s) for s in segments) else None
