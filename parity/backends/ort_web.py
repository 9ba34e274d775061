"""ONNX Runtime Web (npm onnxruntime-web, its wasm execution provider) under Node (`ort_web`) and in a real
headless Chromium (`ort_web_browser`): the JavaScript client a web deployment ships, checked against the golden.

Both run parity's own JavaScript (parity/web: runner.mjs under Node, page.html in the browser, tensors.mjs in
both) on the onnxruntime-web that the shipped lockfile pins, installed once with npm ci (parity.web). Inputs
and outputs travel as parity's raw tensor files with index.json, as for backend=command; the client reports the
SHA-256 of the model bytes it actually loaded (an ERROR if they are not the artifact's: seed 001's browser kept
serving a cached old model), ONNX Runtime Web's and Node's or the browser's versions, and the wasm settings in
force. The browser's page and files come from a local server on 127.0.0.1 (parity.web.server) with caching off,
in a fresh browser profile per session.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from parity.backends.command import CommandBackend, CommandSession, literal
from parity.backends.base import BackendConfig
from parity.errors import BackendError, ConfigError, one_line
from parity.plugins import register

log = logging.getLogger("parity")

# parity's graph optimisation names (as backend=ort_cpu) -> onnxruntime-web's
_OPT_LEVELS = {"disable_all": "disabled", "basic": "basic", "extended": "extended", "all": "all"}
_SIMD = {"fixed": True, "relaxed": "relaxed", "off": False}
# every dtype onnxruntime-web takes (no bfloat16)
_DTYPES = frozenset({"float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                     "uint32", "uint64", "bool"})


@dataclass
class OrtWebBackendConfig(BackendConfig):
    """ONNX Runtime Web's wasm execution provider under Node."""

    _target_: str = "parity.backends.ort_web.OrtWebBackend"
    name: str = "ort_web"
    num_threads: int = 0  # env.wasm.numThreads; 0: ONNX Runtime Web's choice. The report records the value in force
    simd: str = "fixed"  # env.wasm.simd: fixed | relaxed | off (the feature check; 1.30 ships SIMD builds only)
    graph_optimization_level: str = "all"  # disable_all | basic | extended | all, as for ort_cpu
    timeout_s: float = 300.0  # per inference (a Node process loads the model and runs one batch)
    node: str = "node"
    npm: str = "npm"  # installs onnxruntime-web once (npm ci from the lockfile)
    package_dir: Optional[str] = None  # your package.json + package-lock.json pinning onnxruntime-web; None: parity's
    cache_dir: Optional[str] = None  # None: ~/.cache/parity/ort-web ($PARITY_CACHE/ort-web)
    keep_io: bool = False  # keep every inference's files (their path is logged)

    def validate(self) -> None:
        if self.num_threads < 0:
            raise ConfigError(f"backend '{self.name}': num_threads must be >= 0 (0: ONNX Runtime Web's choice), "
                              f"got {self.num_threads}")
        if self.simd not in _SIMD:
            raise ConfigError(f"backend '{self.name}': simd '{self.simd}' is not one of {', '.join(_SIMD)}")
        if self.graph_optimization_level not in _OPT_LEVELS:
            raise ConfigError(f"backend '{self.name}': graph_optimization_level '{self.graph_optimization_level}' "
                              f"is not one of {sorted(_OPT_LEVELS)}")
        if not self.timeout_s > 0:
            raise ConfigError(f"backend '{self.name}': timeout_s must be > 0, got {self.timeout_s}")
        from parity.web import pinned_version

        pinned_version(self.package_dir)  # ConfigError now, not at the first inference

    def with_base_dir(self, base: Any) -> OrtWebBackendConfig:
        from parity.paths import resolve_file

        changes = {key: resolve_file(getattr(self, key), base) for key in ("package_dir", "cache_dir")
                   if getattr(self, key)}
        return dataclasses.replace(self, **changes) if changes else self

    def with_numerics(self, numerics: Any) -> OrtWebBackendConfig:
        if numerics.ort_graph_optimization_level is None:
            return self
        return dataclasses.replace(self, graph_optimization_level=numerics.ort_graph_optimization_level)

    def wasm(self) -> dict[str, Any]:
        """The settings handed to the JavaScript client (tensors.mjs `configure`)."""
        return {"num_threads": self.num_threads, "simd": _SIMD[self.simd],
                "graph_optimization_level": _OPT_LEVELS[self.graph_optimization_level]}


@dataclass
class OrtWebBrowserBackendConfig(OrtWebBackendConfig):
    """ONNX Runtime Web's wasm execution provider in a headless Chromium."""

    _target_: str = "parity.backends.ort_web.OrtWebBrowserBackend"
    name: str = "ort_web_browser"
    timeout_s: float = 300.0  # loading the model, and then each inference
    browser: Optional[str] = None  # the executable; None: chromium, chromium-browser, google-chrome on PATH
    cross_origin_isolated: bool = True  # serve COOP/COEP headers: without them the browser gives wasm no threads
    proxy: bool = False  # env.wasm.proxy: run ONNX Runtime Web in a web worker
    flags: list[str] = field(default_factory=list)  # extra Chromium flags, e.g. [--js-flags=--no-liftoff]

    def wasm(self) -> dict[str, Any]:
        return {**super().wasm(), "proxy": self.proxy}


class OrtWebSession(CommandSession):
    """runner.mjs under Node, once per inference, on parity's raw tensor files."""

    timed_what = ("perf_counter around one run of runner.mjs: Node's start, ONNX Runtime Web's initialisation, "
                  "the model's load and the file exchange included")
    tail_lines = 1  # runner.mjs ends its stderr with the error's message (the stack trace before it)

    def _open(self) -> None:
        super()._open()
        self.backend.ensure_installed()

    def client(self) -> dict[str, Any]:
        """What the JavaScript client last reported about itself."""
        return dict(self._client)

    def runtime_info(self) -> dict[str, Any]:
        client = self.client()
        return {
            "framework": "onnxruntime-web",
            "onnxruntime-web": client.get("onnxruntime_web") or self.backend.pinned,
            "device": "wasm",
            "wasm_requested": self.backend.config.wasm(),
            "wasm": client.get("wasm"),
            "model_sha256_loaded": client.get("model_sha256"),
            "package": {"onnxruntime-web": self.backend.pinned, "install": str(self.backend.ort_dir)},
            "timeout_s": self.backend.config.timeout_s,
            "client": client,
            "runtime": f"node {client['node']}" if client.get("node") else None,
        }


@register
class OrtWebBackend(CommandBackend):
    """ONNX Runtime Web under Node (SKIP where node is not installed, or npm where it is not installed yet)."""

    Config = OrtWebBackendConfig
    schema = "base_ort_web_backend"
    session_class = OrtWebSession
    dtypes = _DTYPES

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.ort_dir: Path | None = None

    @property
    def inputs_format(self) -> str:
        return "raw"

    @property
    def outputs_format(self) -> str:
        return "raw"

    @functools.cached_property
    def pinned(self) -> str:
        from parity.web import pinned_version

        return pinned_version(self.config.package_dir)

    def command_template(self) -> list[str]:
        from parity.web import ASSETS

        node = shutil.which(self.config.node) or self.config.node
        ort = str(self.ort_dir) if self.ort_dir is not None else "<onnxruntime-web>"
        return [literal(node), literal(str(ASSETS / "runner.mjs")), literal(ort), "{model}", "{inputs_dir}",
                "{outputs_dir}", literal(json.dumps(self.config.wasm()))]

    def environment(self) -> dict[str, str] | None:
        return None

    def cwd(self) -> str | None:
        return None

    def version(self) -> str | None:
        return None

    def ensure_installed(self) -> Path:
        from parity.web import install

        if self.ort_dir is None:
            self.ort_dir = install(self.config.package_dir, self.config.cache_dir, self.config.npm)
        return self.ort_dir

    def availability(self) -> str | None:
        from parity.web import installed

        if shutil.which(self.config.node) is None:
            return (f"backend '{self.name}' needs Node.js ('{self.config.node}' is not on PATH; Debian: apt-get "
                    f"install nodejs)")
        return self._npm_reason(installed(self.config.package_dir, self.config.cache_dir))

    def _npm_reason(self, ort_dir: Path | None) -> str | None:
        if ort_dir is None and shutil.which(self.config.npm) is None:
            return (f"backend '{self.name}' installs onnxruntime-web {self.pinned} with npm once, and npm "
                    f"('{self.config.npm}') is not on PATH (Debian: apt-get install npm; or run "
                    f"`python -m parity.web install` where it is, with the same cache directory)")
        return None


class OrtWebBrowserSession(OrtWebSession):
    """page.html in a headless Chromium: the model loaded once per session, then one `parity.run` per batch."""

    def _open(self) -> None:
        from parity.web.chromium import Browser, PageError
        from parity.web.server import Server

        self._browser_info: dict[str, Any] = {}
        super()._open()  # onnxruntime-web installed
        backend, config = self.backend, self.backend.config
        self._server = Server(self._root, backend.ort_dir, Path(self.artifact.path), self._external,
                              config.cross_origin_isolated).__enter__()
        self._browser = Browser(config.browser, tuple(config.flags))
        log.info("loading the model in headless Chromium (onnxruntime-web %s, wasm)", backend.pinned)
        try:
            self._page = self._browser.__enter__()
            self._page.call("Network.enable")
            self._page.call("Network.setCacheDisabled", cacheDisabled=True)
            self._page.open(self._server.url, timeout=config.timeout_s)
            model = Path(self.artifact.path)
            settings = {"wasm": config.wasm(), "model": f"/model/{model.name}", "model_dir": "/model/",
                        "external_data": self._external}
            self._loaded = self._page.evaluate(f"parity.load({json.dumps(settings)})", timeout=config.timeout_s)
        except (PageError, TimeoutError) as exc:
            raise BackendError(f"backend '{backend.name}': the browser could not load the model: "
                               f"{self._problems(exc)}") from None
        self._browser_info = dict(self._page.version)

    timed_what = ("perf_counter around one parity.run in the page over the DevTools protocol: the model loaded "
                  "once; inputs and outputs through the local HTTP server included")

    def _execute(self, values: Mapping[str, str], call: Path) -> str:
        from parity.web.chromium import PageError

        config = self.backend.config
        self._page.events.clear()  # what the page reports from here on is this inference's
        del self._server.errors[:]
        try:
            self._page.evaluate(f"parity.run({json.dumps(f'/io/{call.name}/')})", timeout=config.timeout_s)
        except (PageError, TimeoutError) as exc:
            raise BackendError(f"backend '{self.backend.name}': the browser's inference failed: "
                               f"{self._problems(exc)}") from None
        return _flat(self._page.errors()[-3:])

    def _problems(self, exc: BaseException) -> str:
        """The failure with what the page and the server reported meanwhile, on one line."""
        parts = [one_line(exc) if not isinstance(exc, TimeoutError) else f"no answer ({exc})"]
        page = getattr(self, "_page", None)
        if page is not None and page.errors():
            parts.append("page: " + _flat(page.errors()[-3:]))
        if self._server.errors:
            parts.append("server: " + "; ".join(self._server.errors[-3:]))
        return " ".join("; ".join(parts).split())

    def client(self) -> dict[str, Any]:
        """What the page reported: with the last batch's outputs, or (before any) when it loaded the model."""
        return dict(self._client or getattr(self, "_loaded", None) or {})

    def runtime_info(self) -> dict[str, Any]:
        info = super().runtime_info()
        info.update(runtime=self._browser_info.get("product"), browser=self._browser_info,
                    cross_origin_isolated=self.client().get("cross_origin_isolated"))
        return info

    def _close(self) -> None:
        try:
            browser = getattr(self, "_browser", None)
            if browser is not None and hasattr(browser, "proc"):
                browser.__exit__(None, None, None)
        finally:
            server = getattr(self, "_server", None)
            if server is not None:
                server.__exit__(None, None, None)
            super()._close()


def _flat(errors: list[str]) -> str:
    """Page errors (JS stack traces span lines) on one line."""
    return " | ".join(" ".join(e.split()) for e in errors)


@register
class OrtWebBrowserBackend(OrtWebBackend):
    """ONNX Runtime Web in a real headless Chromium (SKIP where none is installed)."""

    Config = OrtWebBrowserBackendConfig
    schema = "base_ort_web_browser_backend"
    session_class = OrtWebBrowserSession

    def availability(self) -> str | None:
        from parity.web import installed
        from parity.web.chromium import missing_reason

        reason = missing_reason(self.config.browser, f"backend '{self.name}'")
        return reason or self._npm_reason(installed(self.config.package_dir, self.config.cache_dir))
