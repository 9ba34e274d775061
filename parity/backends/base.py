"""The backend contract: `with backend.prepare(artifact) as session: session.infer(feeds)`.

A backend is built from its typed config, declares the artifact kinds it `accepts` ("onnx", or a framework's
name for a runtime that runs the source model itself), says whether it can run here (`availability`), and
opens a session per artifact. A session runs inferences, times them for benchmarks and says what really ran.
Subclasses implement a Session subclass (`session_class`) and override its `_open` / `_infer` / `_close`; the
public methods turn their failures into BackendError, so a job reports an ERROR verdict with the message.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from parity.artifact import Artifact
from parity.errors import BackendError, ParityError, one_line
from parity.inputs import contiguous
from parity.plugins import Plugin, PluginConfig


@dataclass
class BackendConfig(PluginConfig):
    """A runtime that executes the model (eager) or an artifact of it."""


class Session:
    """One artifact loaded on one backend; closed by the `prepare` block that opened it."""

    # what the default `timer`'s interval covers (a session with its own timer says so itself)
    timed_what: ClassVar[str] = "perf_counter around one inference call (host memory in and out)"

    def __init__(self, backend: Backend, artifact: Artifact) -> None:
        self.backend = backend
        self.artifact = artifact
        self.closed = False

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference; outputs by the artifact's output names."""
        if self.closed:
            raise BackendError(f"backend '{self.backend.name}': session used after its prepare() block ended")
        self.refuse_types(feeds)
        try:
            outputs = self._infer(feeds)
        except ParityError:
            raise
        except Exception as exc:
            raise BackendError(f"backend '{self.backend.name}' inference failed: {one_line(exc)}") from exc
        return {name: np.asarray(value) for name, value in outputs.items()}

    def refuse_types(self, feeds: Mapping[str, np.ndarray]) -> None:
        """BackendError naming every input whose element type the backend does not take (`Backend.dtypes`)."""
        taken = self.backend.dtypes
        refused = {name: a.dtype.name for name, a in feeds.items() if taken is not None and a.dtype.name not in taken}
        if refused:
            kinds = ", ".join(sorted(set(refused.values())))
            raise BackendError(f"backend '{self.backend.name}' cannot take {kinds} inputs ({', '.join(refused)}); "
                               f"it takes {', '.join(sorted(taken))}")

    def timed(self, feeds: Mapping[str, np.ndarray], include_transfers: bool = True) -> tuple[Callable[[], float], str]:
        """What benchmarks call: the element types checked as for `infer`, then this backend's `timer`."""
        self.refuse_types(feeds)
        return self.timer(feeds, include_transfers)

    def timer(self, feeds: Mapping[str, np.ndarray], include_transfers: bool = True) -> tuple[Callable[[], float], str]:
        """For benchmarks: a zero-argument callable running one inference on `feeds` and returning its latency
        in seconds, and what that interval covers. Inputs are prepared here, outside the timed region;
        device backends synchronise before reading the clock."""
        prepared = {k: contiguous(v) for k, v in feeds.items()}

        def run() -> float:
            start = time.perf_counter()
            self._infer(prepared)
            return time.perf_counter() - start

        return run, self.timed_what

    def runtime_info(self) -> dict[str, Any]:
        """What actually ran: device, providers, library versions, settings in force."""
        return {}

    # -- for subclasses ---------------------------------------------------------------------------

    def _open(self) -> None:
        """Load the artifact (a session, an engine, a compiled model)."""

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
        raise NotImplementedError

    def _close(self) -> None:
        return None


class Backend(Plugin):
    """A runtime executing artifacts of the kinds it `accepts`."""

    group = "backend"
    Config: ClassVar[type[BackendConfig]] = BackendConfig
    accepts: ClassVar[frozenset[str]] = frozenset({"onnx"})
    # the input element types it takes (numpy names, parity.inputs.DTYPES); None: every one. Another is an ERROR
    # naming it, never a value converted on the way in
    dtypes: ClassVar[frozenset[str] | None] = None
    session_class: ClassVar[type[Session]] = Session

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.input_shapes: dict[str, list[Any]] = {}
        self.batch_sizes: list[int] = []

    def expect(self, input_shapes: Mapping[str, Sequence[Any]], batch_sizes: Sequence[int]) -> None:
        """Told before any session: each input's declared shape (`batch` on its batch axis) and the run's
        batch sizes, for backends that build for a shape range (TensorRT's optimisation profiles)."""
        self.input_shapes = {name: list(shape) for name, shape in input_shapes.items()}
        self.batch_sizes = list(batch_sizes)

    @contextlib.contextmanager
    def prepare(self, artifact: Artifact) -> Iterator[Session]:
        """A session on `artifact`, closed when the block ends; BackendError when it cannot be loaded."""
        if artifact.kind not in self.accepts:
            raise BackendError(f"backend '{self.name}' runs {' or '.join(sorted(self.accepts))} artifacts, "
                               f"got {artifact.kind}")
        session = self.session_class(self, artifact)
        try:
            if artifact.kind == "onnx" and artifact.path is not None:
                _check_onnx(artifact)
            session._open()
        except ParityError:
            session._close()
            raise
        except Exception as exc:
            session._close()
            raise BackendError(f"backend '{self.name}' failed to load the model: {one_line(exc)}") from exc
        except BaseException:  # Ctrl-C while loading: what the session started (a browser, a server) still goes
            session._close()
            raise
        try:
            yield session
        finally:
            session.closed = True
            try:
                session._close()
            except Exception as exc:  # a runtime failing to let go is the backend's error, not a crash
                raise BackendError(f"backend '{self.name}' failed to close its session: {one_line(exc)}") from exc


def _check_onnx(artifact: Artifact) -> None:
    """What every runtime may load: external data only from beside the model (ExternalDataError otherwise), and
    a graph whose inputs are the declared ones (runtimes ignore feeds the graph lacks)."""
    import onnx

    from parity.exporters.base import graph_inputs_mismatch
    from parity.paths import external_data_files

    model = onnx.load(str(artifact.path), load_external_data=False)
    external_data_files(artifact.path, model)
    mismatch = graph_inputs_mismatch(model, list(artifact.input_names))
    if mismatch is not None:
        raise BackendError(mismatch)
