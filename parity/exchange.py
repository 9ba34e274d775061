"""Tensor files other programs read and write: .npy/.npz, ONNX `test_data_set_N/*.pb`, Polygraphy's JSON, raw
little-endian binaries (trtexec's `--loadInputs`) and CSV, each with parity's `index.json` where the format
itself records no names, dtypes or shapes.

One layout for every format parity exports (README "Exchange goldens with other programs"):

    <dir>/index.json                     parity.tensors/v1: every tensor's name, file, dtype, shape, batch axis
    npy:   <dir>/inputs/<name>.npy   <dir>/outputs/<name>.npy
    raw:   <dir>/inputs/<name>.bin   <dir>/outputs/<name>.bin      C order, little-endian, no header
    csv:   <dir>/inputs/<name>.csv   <dir>/outputs/<name>.csv      a row per index of the first axis
    onnx_test_data: <dir>/test_data_set_<N>/input_<i>.pb, output_<j>.pb (TensorProto, named)
    polygraphy:     <dir>/inputs.json (a list of feed dicts), <dir>/outputs.json (RunResults)

Nothing here unpickles: .npy/.npz load with allow_pickle=False, Polygraphy's JSON through polygraphy itself (its
arrays are .npy bytes loaded the same way).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parity.errors import DataError, one_line
from parity.inputs import bfloat16_bits, contiguous, numpy_dtype, with_dtype
from parity.paths import label

INDEX = "index.json"
INDEX_FORMAT = "parity.tensors/v1"
FORMATS = ("polygraphy", "onnx_test_data", "npy", "raw", "csv")  # what mode=export writes and mode=import reads
SUFFIX = {"npy": ".npy", "raw": ".bin", "csv": ".csv"}
POLYGRAPHY_INPUTS, POLYGRAPHY_OUTPUTS = "inputs.json", "outputs.json"
POLYGRAPHY_RUNNER = "parity_golden"  # the runner name the exported RunResults carry
# CSV: the fewest significant digits that bring every value of the type back bit for bit
_CSV_DIGITS = {"float16": 5, "bfloat16": 9, "float32": 9, "float64": 17}


@dataclass
class TensorSets:
    """What a set of files holds: one dict of named arrays per batch (a test data set, a Polygraphy iteration),
    inputs and, where the files have them, outputs; and every file read (their SHA-256 go into the manifest)."""

    inputs: list[dict[str, np.ndarray]]
    outputs: list[dict[str, np.ndarray]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


# -- single files ---------------------------------------------------------------------------------


def read_npy(path: Path) -> np.ndarray:
    """One .npy array, never unpickled; DataError naming the file otherwise."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or one_line(exc)}") from None
    if magic != b"\x93NUMPY":
        raise DataError(f"{path} is not a .npy file (it lacks the \\x93NUMPY header)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(f"{path} holds pickled (object) data; refused (save plain numeric arrays)") from None
        raise DataError(f"{path} is not a readable .npy file: {one_line(exc)}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or one_line(exc)}") from None


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every member of an .npz, never unpickled."""
    if not path.is_file():
        raise DataError(f"no such file {path}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not an .npz archive (not a zip file)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: np.array(data[name]) for name in data.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(f"{path} holds pickled (object) data; refused (save plain numeric arrays)") from None
        raise DataError(f"{path} is not a readable .npz: {one_line(exc)}") from None
    except Exception as exc:  # a broken zip member, a broken .npy header
        raise DataError(f"{path} is not a readable .npz: {one_line(exc)}") from None


def read_pb(path: Path) -> tuple[str, np.ndarray]:
    """(name, array) of a serialised onnx.TensorProto (`input_0.pb`)."""
    import onnx
    from onnx import numpy_helper

    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(path.read_bytes())
        array = numpy_helper.to_array(tensor)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or one_line(exc)}") from None
    except Exception as exc:
        raise DataError(f"{path} is not a readable ONNX TensorProto: {one_line(exc)}") from None
    if tensor.data_type == onnx.TensorProto.UNDEFINED:
        raise DataError(f"{path} holds no tensor (a sequence, map or optional value is not a tensor input)")
    return tensor.name, np.asarray(array)


def write_pb(path: Path, name: str, array: np.ndarray) -> None:
    from onnx import numpy_helper

    path.write_bytes(numpy_helper.from_array(contiguous(array), name).SerializeToString())


def _write_raw(path: Path, array: np.ndarray) -> None:
    """C order, little-endian, no header: what trtexec --loadInputs reads (bfloat16 as its uint16 bits)."""
    bits = contiguous(bfloat16_bits(array))
    path.write_bytes(bits.astype(bits.dtype.newbyteorder("<"), copy=False).tobytes())


def _read_raw(path: Path, dtype: str, shape: list[int]) -> np.ndarray:
    storage = np.dtype(np.uint16 if dtype == "bfloat16" else numpy_dtype(dtype)).newbyteorder("<")
    data = path.read_bytes()
    expected = int(np.prod(shape, dtype=np.int64)) * storage.itemsize
    if len(data) != expected:
        raise DataError(f"{path} holds {len(data)} bytes; {dtype}{shape} needs {expected}")
    array = np.frombuffer(data, dtype=storage).reshape(shape).astype(storage.newbyteorder("="))
    return with_dtype(array, dtype)


def _write_csv(path: Path, array: np.ndarray) -> None:
    """A row per index of the first axis (a 0-d or 1-d tensor: one value per row), comma-separated, no header;
    floats with the digits that read back bit for bit, booleans as 0/1."""
    rows = array.reshape(1, 1) if array.ndim == 0 else array.reshape(array.shape[0], -1) if array.ndim > 1 \
        else array.reshape(-1, 1)
    digits = _CSV_DIGITS.get(array.dtype.name)
    if digits is not None:
        values = rows.astype(np.float64)
        fmt = f"%.{digits}g"
    else:
        values = rows.astype(np.int64) if array.dtype == np.bool_ else rows
        fmt = "%d"
    with open(path, "w", newline="\n") as handle:
        for row in values:
            handle.write(",".join(fmt % v for v in row.tolist()) + "\n")


def _read_csv(path: Path, dtype: str, shape: list[int]) -> np.ndarray:
    target = numpy_dtype(dtype)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or one_line(exc)}") from None
    cells = [cell for line in text.splitlines() if line.strip() for cell in line.split(",")]
    count = int(np.prod(shape, dtype=np.int64))
    if len(cells) != count:
        raise DataError(f"{path} holds {len(cells)} values; {dtype}{shape} needs {count}")
    try:
        if dtype in _CSV_DIGITS:
            values = np.array([float(c) for c in cells], dtype=np.float64).astype(target)
        elif dtype == "bool":
            values = np.array([int(c) for c in cells], dtype=np.int64) != 0
        else:
            values = np.array([int(c) for c in cells], dtype=target)
    except (ValueError, OverflowError) as exc:
        raise DataError(f"{path}: a value is not a {dtype}: {one_line(exc)}") from None
    return values.reshape(shape)


def write_tensor(fmt: str, path: Path, array: np.ndarray) -> None:
    """One tensor file in an index-described format (npy, raw, csv)."""
    if fmt == "npy":
        np.save(path, contiguous(bfloat16_bits(array)), allow_pickle=False)
    elif fmt == "raw":
        _write_raw(path, array)
    elif fmt == "csv":
        _write_csv(path, array)
    else:
        raise DataError(f"unknown tensor file format '{fmt}' (one of {', '.join(SUFFIX)})")


def read_tensor(fmt: str, path: Path, dtype: str, shape: list[int]) -> np.ndarray:
    """One tensor file of `dtype` and `shape` (an .npy says its own; it must agree)."""
    if fmt == "npy":
        array = with_dtype(read_npy(path), dtype)
    elif fmt == "raw":
        array = _read_raw(path, dtype, shape)
    else:
        array = _read_csv(path, dtype, shape)
    if str(array.dtype) != dtype or list(array.shape) != list(shape):
        raise DataError(f"{path} holds {array.dtype}{list(array.shape)}; {INDEX} says {dtype}{list(shape)}")
    return array


# -- directories: index.json and its tensor files ------------------------------------------------


def write_batch(fmt: str, directory: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict:
    """One batch for another program: `<directory>/<name><suffix>` per tensor (C order, in the order given) and
    index.json listing them as `inputs` (name, file, dtype, shape), with `meta` on top. Returns the index."""
    names = file_names(list(arrays), SUFFIX[fmt])
    entries = []
    for name, array in arrays.items():
        write_tensor(fmt, directory / names[name], array)
        entries.append({"name": name, "file": names[name], "dtype": str(array.dtype), "shape": list(array.shape)})
    index = {"format": INDEX_FORMAT, "tensor_format": fmt, **meta, "inputs": entries}
    (directory / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return index


def file_names(names: Sequence[str], suffix: str) -> dict[str, str]:
    """A safe, unique file name per tensor name (ONNX names may hold '/', ':' …)."""
    out, used = {}, set()
    for name in names:
        stem = label(name, 100)
        candidate, n = stem, 1
        while candidate.lower() in used:
            n += 1
            candidate = f"{stem}_{n}"
        used.add(candidate.lower())
        out[name] = candidate + suffix
    return out


def write_dir(fmt: str, directory: Path, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
              axes: Mapping[str, Mapping[str, int | None]], batch_size: int | None,
              meta: Mapping[str, Any]) -> list[Path]:
    """Write one golden's tensors in `fmt` below `directory` (which exists and is empty) and index.json; the
    files written, index last. `axes`: {"inputs": name -> batch axis, "outputs": …}; `batch_size` splits the
    samples into batches for the formats that hold one inference per file set (onnx_test_data, polygraphy)."""
    index: dict[str, Any] = {"format": INDEX_FORMAT, "tensor_format": fmt, **meta}
    written: list[Path] = []
    if fmt in SUFFIX:
        for section, arrays in (("inputs", inputs), ("outputs", outputs)):
            (directory / section).mkdir()
            names = file_names(list(arrays), SUFFIX[fmt])
            entries = []
            for name, array in arrays.items():
                target = directory / section / names[name]
                write_tensor(fmt, target, array)
                written.append(target)
                entries.append({"name": name, "file": f"{section}/{names[name]}", "dtype": str(array.dtype),
                                "shape": list(array.shape), "batch_axis": axes[section].get(name, 0)})
            index[section] = entries
    else:
        batches = split_batches(inputs, outputs, axes, batch_size)
        index["batches"] = len(batches)
        index["batch_size"] = batch_size
        index["inputs"] = [{"name": n, "dtype": str(a.dtype), "shape": list(a.shape),
                            "batch_axis": axes["inputs"].get(n, 0)} for n, a in inputs.items()]
        index["outputs"] = [{"name": n, "dtype": str(a.dtype), "shape": list(a.shape),
                             "batch_axis": axes["outputs"].get(n, 0)} for n, a in outputs.items()]
        if fmt == "onnx_test_data":
            for number, (ins, outs) in enumerate(batches):
                data_set = directory / f"test_data_set_{number}"
                data_set.mkdir()
                for prefix, arrays in (("input", ins), ("output", outs)):
                    for position, (name, array) in enumerate(arrays.items()):
                        write_pb(data_set / f"{prefix}_{position}.pb", name, array)
                        written.append(data_set / f"{prefix}_{position}.pb")
        elif fmt == "polygraphy":
            written += _write_polygraphy(directory, batches)
        else:
            raise DataError(f"unknown tensor format '{fmt}' (one of {', '.join(FORMATS)})")
    index["files"] = [str(p.relative_to(directory)) for p in written]
    (directory / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return [*written, directory / INDEX]


def read_index(directory: Path) -> dict[str, Any]:
    path = directory / INDEX
    try:
        index = json.loads(path.read_text())
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or one_line(exc)}") from None
    except ValueError as exc:
        raise DataError(f"{path} is not JSON: {one_line(exc)}") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise DataError(f"{path} is not a {INDEX_FORMAT} index")
    return index


def read_dir(fmt: str, directory: Path) -> TensorSets:
    """The tensors of an npy / raw / csv directory as its index.json lists them (one batch of all samples).
    An npy directory without an index: every `<name>.npy` in it is an input (names from the file names)."""
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory")
    if fmt == "npy" and not (directory / INDEX).exists():
        files = sorted(directory.glob("*.npy"))
        if not files:
            raise DataError(f"{directory} holds no .npy files and no {INDEX}")
        return TensorSets(inputs=[{f.stem: read_npy(f) for f in files}], files=files)
    index = read_index(directory)
    if index.get("tensor_format") != fmt:
        raise DataError(f"{directory / INDEX} describes {index.get('tensor_format')} files, not {fmt}")
    sets, files = {}, [directory / INDEX]
    for section in ("inputs", "outputs"):
        arrays = {}
        for entry in index.get(section) or []:
            try:
                name, rel, dtype, shape = entry["name"], entry["file"], entry["dtype"], entry["shape"]
                if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                    raise TypeError(f"a shape of non-negative integers (got {shape!r})")
                numpy_dtype(dtype)
            except (KeyError, TypeError) as exc:
                raise DataError(f"{directory / INDEX}: a {section} entry lacks {one_line(exc)}") from None
            except Exception:
                raise DataError(f"{directory / INDEX}: unknown dtype '{entry['dtype']}'") from None
            path = (directory / rel)
            if not path.resolve().is_relative_to(directory.resolve()):
                raise DataError(f"{directory / INDEX}: file {rel} lies outside {directory}; refused")
            if not path.is_file():
                raise DataError(f"{directory / INDEX} lists {rel}, which does not exist")
            arrays[name] = read_tensor(fmt, path, dtype, shape)
            files.append(path)
        sets[section] = arrays
    return TensorSets(inputs=[sets["inputs"]], outputs=[sets["outputs"]] if sets["outputs"] else [], files=files)


# -- ONNX test data sets ----------------------------------------------------------------------------


def npy_dir_files(directory: Path, section: str) -> list[Path]:
    """The files of a directory of .npy arrays: its index and the `section` ("inputs" / "outputs") files the
    index lists, or, without an index, every .npy in it."""
    if not (directory / INDEX).is_file():
        return sorted(directory.glob("*.npy"))
    index = read_index(directory)
    return [directory / INDEX, *(directory / str(e.get("file")) for e in index.get(section) or []
                                 if isinstance(e, dict))]


def number(path: Path) -> int:
    match = re.search(r"(\d+)$", path.stem if path.is_file() else path.name)
    return int(match.group(1)) if match else -1


def test_data_sets(path: Path) -> list[Path]:
    """The `test_data_set_N` directories of `path` in N order, or [path] when it is one itself."""
    if not path.is_dir():
        raise DataError(f"{path} is not a directory (ONNX test data: a directory of test_data_set_N directories, "
                        f"or one of them)")
    if any(path.glob("input_*.pb")):
        return [path]
    sets = sorted((p for p in path.glob("test_data_set_*") if p.is_dir()), key=number)
    if not sets:
        raise DataError(f"{path} holds no test_data_set_N directories and no input_N.pb files")
    return sets


def read_test_data(path: Path, input_names: Sequence[str], output_names: Sequence[str] | None) -> TensorSets:
    """ONNX's `test_data_set_N/{input,output}_<i>.pb`: each set one batch (outputs: None reads none). A tensor's
    own name where it has one, else its position in the declared order; a name twice in one set is an error."""
    found = TensorSets(inputs=[], outputs=[])
    parts = [("input", input_names, found.inputs)]
    if output_names is not None:
        parts.append(("output", output_names, found.outputs))
    for data_set in test_data_sets(path):
        for prefix, names, target in parts:
            files = sorted(data_set.glob(f"{prefix}_*.pb"), key=number)
            if not files:
                if prefix == "input":
                    raise DataError(f"{data_set} holds no input_N.pb files")
                continue
            arrays = {}
            for position, file in enumerate(files):
                name, array = read_pb(file)
                if not name:
                    if position >= len(names):
                        raise DataError(f"{file}: an unnamed {prefix} at position {position}, but the model declares "
                                        f"{len(names)} {prefix}s ({', '.join(names)})")
                    name = names[position]
                if name in arrays:
                    raise DataError(f"{file}: a second {prefix} named '{name}' in {data_set.name}")
                arrays[name] = array
                found.files.append(file)
            target.append(arrays)
    if found.outputs and len(found.outputs) != len(found.inputs):
        raise DataError(f"{path}: {len(found.inputs)} test data sets hold inputs but {len(found.outputs)} outputs")
    return found


# -- Polygraphy -------------------------------------------------------------------------------------


def _polygraphy() -> None:
    """UnavailableError naming the install when polygraphy is not here."""
    from parity.dependencies import require

    require("Polygraphy's JSON", "polygraphy")


def _plain(value: Any, where: str) -> np.ndarray:
    if hasattr(value, "load"):  # a Polygraphy LazyArray
        value = value.load()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # a torch.Tensor saved by Polygraphy
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise DataError(f"{where} is a {type(value).__name__}, not an array")
    return value


def read_polygraphy_inputs(path: Path) -> TensorSets:
    """Polygraphy's `--save-inputs` JSON: a list of feed dicts, one per iteration."""
    _polygraphy()
    from polygraphy.json import load_json

    data = _polygraphy_load(load_json, path)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise DataError(f"{path} is not a Polygraphy inputs file (a JSON list of feed dicts)")
    batches = [{str(k): _plain(v, f"{path}: input '{k}'") for k, v in feed.items()} for feed in data]
    return TensorSets(inputs=batches, files=[path])


def read_polygraphy_outputs(path: Path, runner: str | None) -> tuple[list[dict[str, np.ndarray]], str]:
    """One runner's iterations from Polygraphy's `--save-outputs` RunResults JSON: (outputs per iteration, the
    runner's name). `runner` None: the file's only runner."""
    _polygraphy()
    from polygraphy.comparator import RunResults

    results = _polygraphy_load(RunResults.load, path)
    names = [name for name, _ in results.items()]
    if not names:
        raise DataError(f"{path} holds no runner results")
    if runner is None:
        if len(names) > 1:
            raise DataError(f"{path} holds the results of {len(names)} runners ({', '.join(names)}); choose one "
                            f"with import.runner=NAME")
        runner = names[0]
    if runner not in names:
        raise DataError(f"{path} holds no runner '{runner}' (it holds {', '.join(names)})")
    iterations = results[runner]
    batches = [{str(k): _plain(v, f"{path}: output '{k}'") for k, v in it.items()} for it in iterations]
    return batches, runner


def _polygraphy_load(loader: Any, path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"no such file {path}")
    try:
        return loader(str(path))
    except Exception as exc:  # Polygraphy reports a bad file through its logger's critical(): an exception
        raise DataError(f"{path} is not a readable Polygraphy JSON file: {one_line(exc)}") from None


def _write_polygraphy(directory: Path, batches: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]) \
        -> list[Path]:
    _polygraphy()
    from polygraphy.comparator import RunResults
    from polygraphy.comparator.struct import IterationResult
    from polygraphy.json import save_json

    from polygraphy.logger import G_LOGGER

    feeds = [{k: contiguous(v) for k, v in ins.items()} for ins, _ in batches]
    results = RunResults()
    results.append((POLYGRAPHY_RUNNER, [IterationResult(outputs={k: contiguous(v) for k, v in outs.items()},
                                                       runner_name=POLYGRAPHY_RUNNER) for _, outs in batches]))
    with G_LOGGER.verbosity(G_LOGGER.WARNING):  # its "Saving … to <staging dir>" lines would name the wrong place
        save_json(feeds, str(directory / POLYGRAPHY_INPUTS), description="parity golden inputs")
        results.save(str(directory / POLYGRAPHY_OUTPUTS))
    return [directory / POLYGRAPHY_INPUTS, directory / POLYGRAPHY_OUTPUTS]


# -- batches and samples ----------------------------------------------------------------------------


def split_batches(inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
                  axes: Mapping[str, Mapping[str, int | None]], batch_size: int | None) \
        -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """The samples as consecutive batches of `batch_size` (None: one batch of all); arrays without a batch axis
    go whole into every batch."""
    counts = {a.shape[axes["inputs"][n]] for n, a in inputs.items() if axes["inputs"].get(n, 0) is not None}
    if len(counts) > 1:
        raise DataError(f"the inputs hold different sample counts ({sorted(counts)}); they cannot be split into "
                        f"batches")
    total = counts.pop() if counts else 1
    size = total if batch_size is None else batch_size
    if size < 1 or total % size:
        raise DataError(f"export.batch_size={batch_size} does not divide the golden's {total} samples")

    def part(arrays: Mapping[str, np.ndarray], section: str, start: int) -> dict[str, np.ndarray]:
        out = {}
        for name, array in arrays.items():
            axis = axes[section].get(name, 0)
            out[name] = array if axis is None else contiguous(np.take(array, np.arange(start, start + size), axis))
        return out

    return [(part(inputs, "inputs", s), part(outputs, "outputs", s)) for s in range(0, total, size)]


def join_batches(batches: list[dict[str, np.ndarray]], axes: Mapping[str, int | None], what: str,
                 hint: str = "point the path at one of them") -> dict[str, np.ndarray]:
    """Batches (test data sets, iterations) as one set of samples: each array concatenated along its batch axis;
    an array without one must be the same in every batch."""
    if not batches:
        raise DataError(f"{what}: no data")
    names = list(batches[0])
    for number, batch in enumerate(batches[1:], 1):
        if set(batch) != set(names):
            raise DataError(f"{what}: batch {number} holds {sorted(batch)}, batch 0 holds {sorted(names)}")
    out = {}
    for name in names:
        parts = [b[name] for b in batches]
        axis = axes.get(name, 0)
        if axis is None or len(parts) == 1:
            if any(p.shape != parts[0].shape or not np.array_equal(p, parts[0]) for p in parts[1:]):
                raise DataError(f"{what}: '{name}' has no batch axis but differs between the {len(parts)} batches; "
                                f"a model without a batch axis takes one batch: {hint}")
            out[name] = parts[0]
            continue
        try:
            out[name] = contiguous(np.concatenate(parts, axis=axis))
        except ValueError as exc:
            raise DataError(f"{what}: the batches of '{name}' do not join along axis {axis}: {one_line(exc)}") \
                from None
    return out
