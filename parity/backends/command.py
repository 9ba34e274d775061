"""Any program as a backend: parity writes a batch's inputs to files, runs the configured command, reads its
outputs back and compares them like any other backend's (the deployed Rust, C++ or JavaScript client itself).

Per inference, in a fresh directory:

    <inputs_dir>/index.json          parity.tensors/v1: every input's name, file, dtype, shape, in the model's
                                     order; `expected_outputs` (name, file), `model`, `batch_size`
    <inputs_dir>/<input name>.npy    (.bin: raw little-endian C order; .csv: a row per index of the first axis)
    <outputs_dir>/<output name>.npy  what the command writes; or any files an index.json of its own lists

The command is an argument list, never a shell string; `{model}`, `{inputs_dir}`, `{outputs_dir}` and
`{batch_size}` in its arguments are replaced. A non-zero exit, a signal, a timeout, missing or malformed outputs
are an ERROR with the tail of the command's stderr. An `index.json` the command writes in `outputs_dir` may carry
a `client` object (versions, settings in force, `model_sha256` of the bytes it loaded), recorded in the report;
a `model_sha256` other than the artifact's is an ERROR (a client that loaded a stale copy of the model).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import string
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from parity.backends.base import Backend, BackendConfig, Session
from parity.errors import BackendError, ConfigError, DataError, one_line
from parity.plugins import register

log = logging.getLogger("parity")

PLACEHOLDERS = ("model", "inputs_dir", "outputs_dir", "batch_size")
FORMATS = ("npy", "raw", "csv")
TAIL_LINES, TAIL_CHARS = 12, 1500  # of the command's stderr, in an ERROR's one-line message


@dataclass
class CommandBackendConfig(BackendConfig):
    """An external program run once per inference on files parity writes."""

    _target_: str = "parity.backends.command.CommandBackend"
    name: str = "command"
    command: list[str] = field(default_factory=list)  # argv; {model} {inputs_dir} {outputs_dir} {batch_size}
    version_command: list[str] = field(default_factory=list)  # argv whose output is recorded (optional)
    timeout_s: float = 120.0  # per inference; then the command (and its process group) is killed: an ERROR
    env: dict[str, str] = field(default_factory=dict)  # added to (or, inherit_env=false, instead of) parity's
    inherit_env: bool = True
    cwd: Optional[str] = None  # None: the directory parity was started in
    inputs_format: str = "npy"  # npy | raw | csv
    outputs_format: str = "npy"  # what the command writes when it writes no index.json of its own
    keep_io: bool = False  # keep every inference's directories (their path is logged) instead of removing them

    def validate(self) -> None:
        if not self.command:
            raise ConfigError(f"backend '{self.name}': command is empty; give the program and its arguments as a "
                              f"list, e.g. 'backend.command=[./client,\"{{model}}\",\"{{inputs_dir}}\","
                              f"\"{{outputs_dir}}\"]'")
        for arg in self.command:
            bad = placeholders_in(str(arg)) - set(PLACEHOLDERS)
            if bad:
                raise ConfigError(f"backend '{self.name}': command argument '{arg}' names {{{sorted(bad)[0]}}}; "
                                  f"the placeholders are {', '.join('{' + p + '}' for p in PLACEHOLDERS)} "
                                  f"(write {{{{ and }}}} for literal braces)")
        for key in ("inputs_format", "outputs_format"):
            if getattr(self, key) not in FORMATS:
                raise ConfigError(f"backend '{self.name}': {key} '{getattr(self, key)}' is not one of "
                                  f"{', '.join(FORMATS)}")
        if not self.timeout_s > 0:
            raise ConfigError(f"backend '{self.name}': timeout_s must be > 0, got {self.timeout_s}")

    def with_base_dir(self, base: Any) -> CommandBackendConfig:
        import dataclasses

        from parity.paths import resolve_file

        cwd = resolve_file(self.cwd, base) if self.cwd else str(base)
        return dataclasses.replace(self, cwd=cwd)


def placeholders_in(text: str) -> set[str]:
    """The `{name}` fields of an argument; ConfigError for an unclosed brace, a format spec or a conversion
    (`{batch_size:03d}`, `{model!r}`: every value is a plain string, put in as it is)."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ConfigError(f"backend command argument '{text}': {exc} (write {{{{ and }}}} for literal braces)") \
            from None
    for name, spec, conv in fields:
        if spec or conv:
            raise ConfigError(f"backend command argument '{text}': {{{name}}} takes no format spec or conversion "
                              f"(the value goes in as it is)")
    return {name for name, _, _ in fields}


def literal(text: str) -> str:
    """`text` as a command template argument that is taken as it is (its braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


def stderr_tail(text: str, count: int = TAIL_LINES) -> str:
    """The last lines of a program's stderr on one line (' | ' between them)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()][-count:]
    joined = " | ".join(lines)
    return joined if len(joined) <= TAIL_CHARS else "…" + joined[-TAIL_CHARS:]


@dataclass
class Completed:
    returncode: int | None  # None: killed on timeout
    stdout: str
    stderr: str


def run_program(argv: list[str], timeout: float, env: Mapping[str, str] | None, cwd: str | None,
                log_dir: Path) -> Completed:
    """Run argv in its own process group with stdout/stderr in files of `log_dir` (no pipe to fill up); on timeout
    the whole group is killed (a client's children too)."""
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd,
                                    start_new_session=True)
        except OSError as exc:
            raise BackendError(f"cannot start {argv[0]}: {exc.strerror or one_line(exc)}") from None
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group: anything the command left behind
            proc.wait()
    read = lambda p: p.read_text(errors="replace")  # noqa: E731
    return Completed(code, read(out_path), read(err_path))


def failure(what: str, done: Completed, timeout: float, lines: int = TAIL_LINES) -> str | None:
    """Why a finished program failed (exit status, signal, timeout) with its stderr's tail, or None."""
    if done.returncode == 0:
        return None
    if done.returncode is None:
        why = f"{what} did not finish in {timeout:g} s and was killed"
    elif done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        why = f"{what} was killed by {name}"
    else:
        why = f"{what} exited with status {done.returncode}"
    tail = stderr_tail(done.stderr, lines)
    return f"{why}; stderr: {tail}" if tail else f"{why} (nothing on stderr)"


def shown(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)


class CommandSession(Session):
    """One artifact given to the command; every inference a fresh pair of directories and a fresh process."""

    tail_lines = TAIL_LINES  # of the client's stderr in an ERROR

    def _open(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix=f"parity-{self.backend.name}-"))
        self._calls = 0
        self._client: dict[str, Any] = {}
        self._digests: dict[Path, str] = {}  # SHA-256 of the artifact's files, made once (not in a timed run)
        self._graph, self._external = _graph_signature(Path(self.artifact.path))

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from parity import exchange

        backend, config = self.backend, self.backend.config
        self._calls += 1
        call = self._root / f"call_{self._calls:04d}"
        inputs_dir, outputs_dir = call / "inputs", call / "outputs"
        inputs_dir.mkdir(parents=True)
        outputs_dir.mkdir()
        model = str(Path(self.artifact.path).resolve())
        batch = _batch_size(feeds, self.artifact.input_axes)
        names = exchange.file_names(self.artifact.output_names, exchange.SUFFIX[backend.outputs_format])
        ordered = {n: feeds[n] for n in self.artifact.input_names if n in feeds}
        exchange.write_batch(backend.inputs_format, inputs_dir, ordered, {
            "model": model, "batch_size": batch, "external_data": self._external,
            "expected_outputs": [{"name": n, "file": names[n]} for n in self.artifact.output_names],
            "outputs_format": backend.outputs_format,
        })
        values = {"model": model, "inputs_dir": str(inputs_dir), "outputs_dir": str(outputs_dir),
                  "batch_size": str(batch)}
        try:
            said = self._execute(values, call)
            outputs = self._read(outputs_dir, names, feeds, said)
        except BackendError:
            if config.keep_io:
                log.warning("backend '%s': this inference's files are kept in %s", backend.name, call)
            raise
        if config.keep_io:
            log.info("backend '%s': inference %d's files are in %s", backend.name, self._calls, call)
        else:
            shutil.rmtree(call, ignore_errors=True)
        return outputs

    def _execute(self, values: Mapping[str, str], call: Path) -> str:
        """Run the client on one batch's files (placeholders `values`); BackendError when it fails. Returns what
        it said on stderr (one line), for the message of outputs it then got wrong."""
        backend, config = self.backend, self.backend.config
        argv = backend.argv(values)
        try:
            done = run_program(argv, config.timeout_s, backend.environment(), backend.cwd(), call)
        except BackendError as exc:
            raise BackendError(f"backend '{backend.name}': {exc}") from None
        if done.stderr.strip():
            log.debug("%s stderr:\n%s", backend.name, done.stderr.rstrip())
        why = failure(f"command {shown(argv)}", done, config.timeout_s, self.tail_lines)
        if why is not None:
            raise BackendError(f"backend '{backend.name}': {why}")
        return stderr_tail(done.stderr, self.tail_lines)

    def _read(self, outputs_dir: Path, names: Mapping[str, str], feeds: Mapping[str, np.ndarray],
              stderr: str) -> dict[str, np.ndarray]:
        from parity import exchange

        backend = self.backend
        said = f"; stderr: {stderr}" if stderr else ""
        try:
            if (outputs_dir / exchange.INDEX).is_file():
                arrays = self._read_indexed(outputs_dir)
            else:
                arrays = self._read_files(outputs_dir, names, feeds)
        except DataError as exc:
            raise BackendError(f"backend '{backend.name}': the command's outputs are malformed: {one_line(exc)}"
                               f"{said}") from None
        except BackendError as exc:
            raise BackendError(f"{one_line(exc)}{said}") from None
        missing = [n for n in self.artifact.output_names if n not in arrays]
        if missing:
            present = sorted(p.name for p in outputs_dir.iterdir()) or ["nothing"]
            wanted = ", ".join(f"{n} ({names[n]})" for n in missing)
            raise BackendError(f"backend '{backend.name}': the command exited 0 but wrote no output {wanted} in "
                               f"{{outputs_dir}} (it holds: {', '.join(present)}){said}")
        return {n: arrays[n] for n in self.artifact.output_names}

    def _read_indexed(self, outputs_dir: Path) -> dict[str, np.ndarray]:
        """The outputs an index.json of the command's own lists; its `client` is recorded, its `model_sha256`
        checked against the artifact's."""
        from parity import exchange

        index = exchange.read_index(outputs_dir)
        fmt = index.get("tensor_format")
        if fmt not in FORMATS:
            raise DataError(f"{outputs_dir / exchange.INDEX}: tensor_format {fmt!r} is not one of {', '.join(FORMATS)}")
        client = index.get("client")
        if isinstance(client, dict):
            self._client = client
            self._check_loaded(client)
        sets = exchange.read_dir(fmt, outputs_dir)
        return sets.outputs[0] if sets.outputs else {}

    def _check_loaded(self, client: Mapping[str, Any]) -> None:
        """BackendError when the client says it loaded other bytes than the artifact's: its `model_sha256` (of the
        .onnx file) or an `external_data_sha256` entry (location -> SHA-256) that differs from the file here."""
        model = Path(self.artifact.path)
        claims = [(model.name, client.get("model_sha256"), model)]
        external = client.get("external_data_sha256")
        if isinstance(external, dict):
            claims += [(str(k), v, model.parent / str(k)) for k, v in external.items()]
        for what, loaded, path in claims:
            if loaded is None:
                continue
            if path not in self._digests:
                from parity.golden import sha256_file

                self._digests[path] = sha256_file(path) if path.is_file() else "(no such file here)"
            expected = self._digests[path]
            if str(loaded).lower() != expected:
                raise BackendError(f"backend '{self.backend.name}': the client loaded {what} with SHA-256 "
                                   f"{str(loaded)[:16]}…, not the artifact's {expected[:16]}… (a stale or cached "
                                   f"copy of the model?)")

    def _read_files(self, outputs_dir: Path, names: Mapping[str, str], feeds: Mapping[str, np.ndarray]) \
            -> dict[str, np.ndarray]:
        """`<output name><suffix>` per declared output; raw and csv files take their dtype and shape from the ONNX
        graph (symbolic dimensions from the inputs'; one still unknown from the file's size)."""
        from parity import exchange

        fmt, arrays = self.backend.outputs_format, {}
        for name in self.artifact.output_names:
            path = outputs_dir / names[name]
            if not path.is_file():
                continue
            if fmt == "npy":
                arrays[name] = exchange.read_npy(path)
                continue
            dtype, shape = self._expected(name, feeds, path)
            arrays[name] = exchange.read_tensor(fmt, path, dtype, shape)
        return arrays

    def _expected(self, name: str, feeds: Mapping[str, np.ndarray], path: Path) -> tuple[str, list[int]]:
        position = self.artifact.output_names.index(name)
        graph_inputs, graph_outputs = self._graph
        if position >= len(graph_outputs):
            raise DataError(f"{path.name}: the ONNX graph has no output {position} to take its dtype and shape from; "
                            f"write an index.json (parity.tensors/v1) beside the outputs")
        dtype, dims = graph_outputs[position]
        if dims is None:
            raise DataError(f"{path.name}: the ONNX graph declares no shape for output {name}; write an index.json "
                            f"(parity.tensors/v1) beside the outputs, or use npy")
        known: dict[str, int] = {}
        for input_name, input_dims in graph_inputs.items():
            if input_name in feeds and input_dims is not None:
                for dim, size in zip(input_dims, feeds[input_name].shape):
                    if isinstance(dim, str):
                        known.setdefault(dim, int(size))
        shape = [known.get(d, d) if isinstance(d, str) else d for d in dims]
        unknown = [i for i, d in enumerate(shape) if not isinstance(d, int)]
        if len(unknown) == 1:
            rest = int(np.prod([d for d in shape if isinstance(d, int)], dtype=np.int64)) or 1
            count = _element_count(self.backend.outputs_format, path, dtype)
            shape[unknown[0]] = count // rest
        elif unknown:
            raise DataError(f"{path.name}: the ONNX graph leaves {len(unknown)} dimensions of output {name} open "
                            f"({dims}); write an index.json (parity.tensors/v1) beside the outputs, or use npy")
        return dtype, [int(d) for d in shape]

    timed_what = "perf_counter around one run of the command: process start, model load and file exchange included"

    def runtime_info(self) -> dict[str, Any]:
        backend, config = self.backend, self.backend.config
        info: dict[str, Any] = {"framework": "command", "command": list(backend.command_template()),
                                "inputs_format": backend.inputs_format, "outputs_format": backend.outputs_format,
                                "timeout_s": config.timeout_s}
        version = backend.version()
        if version is not None:
            info["version"] = version
        if self._client:
            info["client"] = self._client
        return info

    def _close(self) -> None:
        root = getattr(self, "_root", None)
        if root is not None and not self.backend.config.keep_io:
            shutil.rmtree(root, ignore_errors=True)


def _element_count(fmt: str, path: Path, dtype: str) -> int:
    from parity.inputs import numpy_dtype

    if fmt == "raw":
        size = 2 if dtype == "bfloat16" else np.dtype(numpy_dtype(dtype)).itemsize
        return path.stat().st_size // size
    return sum(len(line.split(",")) for line in path.read_text().splitlines() if line.strip())


def _batch_size(feeds: Mapping[str, np.ndarray], axes: Mapping[str, int | None]) -> int:
    for name, array in feeds.items():
        axis = axes.get(name, 0)
        if axis is not None and array.ndim > axis:
            return int(array.shape[axis])
    return 1


def _graph_signature(path: Path) -> tuple[tuple[dict[str, list[Any] | None], list[tuple[str, list[Any] | None]]],
                                            list[str]]:
    """From one read of the ONNX file: the graph's inputs (name -> dims) and outputs ((dtype, dims) in order), a
    dim an int or its symbolic name (None where it has neither), dims None where no shape is declared; and its
    external-data files (relative to the model's directory)."""
    import onnx
    from onnx import helper

    from parity.paths import external_data_files

    model = onnx.load(str(path), load_external_data=False)

    def dims(value: Any) -> list[Any] | None:
        if not value.type.tensor_type.HasField("shape"):
            return None  # no shape declared (not even the rank)
        shape = value.type.tensor_type.shape
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in shape.dim]

    def dtype(value: Any) -> str:
        elem = value.type.tensor_type.elem_type
        return "bfloat16" if elem == onnx.TensorProto.BFLOAT16 else str(np.dtype(helper.tensor_dtype_to_np_dtype(elem)))

    inputs = {v.name: dims(v) for v in model.graph.input}
    external = [str(p.relative_to(path.parent)) for p in external_data_files(path, model)]
    return (inputs, [(dtype(v), dims(v)) for v in model.graph.output]), external


@register
class CommandBackend(Backend):
    """An external program over the ONNX artifact (see the module docstring for the file protocol)."""

    Config = CommandBackendConfig
    schema = "base_command_backend"
    session_class = CommandSession

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._version: str | None = None

    @property
    def inputs_format(self) -> str:
        return self.config.inputs_format

    @property
    def outputs_format(self) -> str:
        return self.config.outputs_format

    def command_template(self) -> list[str]:
        """The argument list with its placeholders unfilled."""
        return [str(a) for a in self.config.command]

    def argv(self, values: Mapping[str, str]) -> list[str]:
        return [str(a).format(**values) for a in self.command_template()]

    def environment(self) -> dict[str, str] | None:
        extra = {str(k): str(v) for k, v in (self.config.env or {}).items()}
        if self.config.inherit_env:
            return {**os.environ, **extra} if extra else None
        return extra

    def executable(self) -> str | None:
        """The program's path (a bare name looked up on PATH, a relative path against cwd), or None."""
        program = self.command_template()[0]
        if os.sep in program:
            path = Path(self.cwd() or ".", program) if not os.path.isabs(program) else Path(program)
            return str(path) if path.is_file() and os.access(path, os.X_OK) else None
        env = self.environment()
        # as Popen looks it up: the child's PATH, or without one the system's default path
        search = (env if env is not None else os.environ).get("PATH") or os.defpath
        return shutil.which(program, path=search)

    def availability(self) -> str | None:
        if self.executable() is None:
            program = self.command_template()[0]
            where = f"relative to {self.cwd()}" if os.sep in program else "on PATH"
            return f"backend '{self.name}': program '{program}' not found {where} (or not executable)"
        return None

    def cwd(self) -> str | None:
        return self.config.cwd

    def version(self) -> str | None:
        """The version command's output (stdout, else stderr), run once; what went wrong if it failed; None
        without a version command."""
        if not self.config.version_command:
            return None
        if self._version is None:
            argv, timeout = [str(a) for a in self.config.version_command], min(self.config.timeout_s, 60.0)
            with tempfile.TemporaryDirectory(prefix="parity-version-") as tmp:
                try:
                    done = run_program(argv, timeout, self.environment(), self.cwd(), Path(tmp))
                except BackendError as exc:
                    self._version = f"version command failed: {one_line(exc)}"
                else:
                    why = failure(f"version command {shown(argv)}", done, timeout)
                    text = (done.stdout.strip() or done.stderr.strip())[:500]
                    self._version = text if why is None else why
            if self._version.startswith("version command"):
                log.warning("backend '%s': %s", self.name, self._version)
        return self._version
