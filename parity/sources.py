"""An input set's values: drawn from the declared distributions, or read from files (inputs.source).

Files are checked against the model's declaration: every declared input present (no other), its dtype, its
shape but for the batch axis, and one sample count shared by all inputs (and equal to inputs.num_samples when
that is set). Each file's SHA-256 goes into the golden's manifest (`inputs_source`), so that a verify finding the
files changed calls the golden stale.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from parity import exchange, preprocess
from parity.config import BATCH, value_of
from parity.errors import DataError
from parity.inputs import batch_axis, concrete_shape, contiguous, generate, with_dtype
from parity.weights import file_record

log = logging.getLogger("parity")


def from_files(plan: Any) -> bool:
    return value_of(plan.inputs.source) != "generated"


def load(plan: Any) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """(every declared input's samples, the record of where they came from: None when generated)."""
    inputs = plan.inputs
    if not from_files(plan):
        return generate(plan.model.inputs, inputs.num_samples, inputs.seed), None
    source = value_of(inputs.source)
    record: dict[str, Any] = {"source": source, "path": inputs.path}
    specs = {s.name: s for s in plan.model.inputs}
    if source == "images":
        files = preprocess.image_files(inputs.path)
        name = image_input(plan)
        log.info("preprocessing %d image(s) from %s for input '%s'", len(files), inputs.path, name)
        arrays = {name: preprocess.run(files, inputs.preprocess)}
        record["image_input"] = name
        record["preprocess"] = preprocess.describe(inputs.preprocess)
        drawn = [s for s in plan.model.inputs if s.name != name]
        if drawn:  # the other inputs: their declared distributions, one sample per image
            arrays.update(generate(drawn, len(files), inputs.seed))
            record["generated_inputs"] = [s.name for s in drawn]
    else:
        files = source_files(plan)
        arrays = exchange.join_batches(read(plan), dict(plan.input_axes), describe_where(plan),
                                       hint=f"point inputs.path at one {_ONE.get(source, 'file')}")
    arrays = {name: with_dtype(np.asarray(a), specs[name].dtype) if name in specs else a for name, a in arrays.items()}
    count = check(plan, arrays, where=describe_where(plan))
    record["files"] = [file_record(str(f)) for f in files]
    record["num_samples"] = count
    return {name: contiguous(arrays[name]) for name in specs}, record


def describe_where(plan: Any) -> str:
    inputs = plan.inputs
    return f"inputs.path {inputs.path}" if inputs.path else f"inputs.files {dict(inputs.files)}"


def image_input(plan: Any) -> str:
    return plan.inputs.image_input or plan.model.inputs[0].name


_ONE = {"onnx_test_data": "test_data_set_N directory", "polygraphy": "inputs JSON of one iteration"}


def read(plan: Any) -> list[dict[str, np.ndarray]]:
    """The non-image sources as batches of arrays (one per test data set / Polygraphy iteration); the files are
    there (load() has listed them with source_files)."""
    inputs, source = plan.inputs, value_of(plan.inputs.source)
    names = [s.name for s in plan.model.inputs]
    if source == "npy":
        if inputs.files:
            return [{n: exchange.read_npy(Path(p)) for n, p in inputs.files.items()}]
        path = Path(inputs.path)
        if path.is_file():
            return [{names[0]: exchange.read_npy(path)}]
        return exchange.read_dir("npy", path).inputs
    path = Path(inputs.path)
    if source == "npz":
        return [exchange.read_npz(path)]
    if source == "onnx_test_data":
        return exchange.read_test_data(path, names, None).inputs
    if source == "polygraphy":
        return exchange.read_polygraphy_inputs(path).inputs
    raise DataError(f"inputs.source '{source}' reads no files")


def source_files(plan: Any) -> list[Path]:
    """The files the input set names, found by path alone (nothing parsed): what the manifest records and a
    verify hashes again. DataError when one is not there."""
    inputs, source = plan.inputs, value_of(plan.inputs.source)
    if source == "images":
        return preprocess.image_files(inputs.path)
    if source == "npy" and inputs.files:
        files = [Path(p) for p in inputs.files.values()]
    else:
        path = Path(inputs.path)
        if not path.exists():
            raise DataError(f"inputs.path: no such file or directory {path}")
        if source == "onnx_test_data":
            files = [f for data_set in exchange.test_data_sets(path)
                     for f in sorted(data_set.glob("input_*.pb"), key=exchange.number)]
        elif source == "npy" and path.is_dir():
            files = exchange.npy_dir_files(path, "inputs")
        else:
            files = [path]
    for file in files:
        if not file.is_file():
            raise DataError(f"no such file {file}")
    return files


_PLAN = object()


def _hint(plan: Any, name: str) -> str:
    if value_of(plan.inputs.source) == "images" and name == image_input(plan):
        return " (the preprocessed images: set inputs.preprocess.resize / crop / layout / dtype to the declaration)"
    return ""


def check(plan: Any, arrays: dict[str, np.ndarray], where: str, expected: Any = _PLAN) -> int:
    """Arrays read for the declared inputs: the same names, dtypes and shapes (any count on the batch axis), one
    count for all, and `expected` samples (default: inputs.num_samples; None: any). Returns the count; DataError
    naming what differs."""
    declared = [s.name for s in plan.model.inputs]
    missing = [n for n in declared if n not in arrays]
    extra = sorted(set(arrays) - set(declared))
    if missing or extra:
        parts = [f"missing {missing}" if missing else "", f"not declared {extra}" if extra else ""]
        raise DataError(f"{where}: the files hold inputs {sorted(arrays)}, the model declares {declared} "
                        f"({'; '.join(p for p in parts if p)})")
    counts: dict[str, int] = {}
    for spec in plan.model.inputs:
        array = arrays[spec.name]
        if str(array.dtype) != spec.dtype:
            fix = _hint(plan, spec.name) or f"; write the files as {spec.dtype} (parity converts nothing silently)"
            raise DataError(f"{where}: input '{spec.name}' is {array.dtype} in the files, declared {spec.dtype}{fix}")
        axis = batch_axis(spec.shape)
        shape = list(spec.shape)
        if array.ndim != len(shape) or any(d != BATCH and int(d) != n for d, n in zip(shape, array.shape)):
            raise DataError(f"{where}: input '{spec.name}' has shape {list(array.shape)} in the files, declared "
                            f"{shape}{_hint(plan, spec.name)}")
        if axis is not None:
            counts[spec.name] = int(array.shape[axis])
    found = set(counts.values())
    if len(found) > 1:
        raise DataError(f"{where}: the inputs hold different sample counts {counts}; every input needs one value "
                        f"per sample")
    count = found.pop() if found else 1
    if count < 1:
        raise DataError(f"{where}: the files hold 0 samples along the batch axis (an empty batch); a golden needs "
                        f"at least one")
    if expected is _PLAN:
        expected = plan.inputs.num_samples
    if expected is not None and count != expected:
        raise DataError(f"{where}: the files hold {count} sample(s), input set '{plan.inputs.name}' declares "
                        f"inputs.num_samples={expected}; set inputs.num_samples={count}, or null to take every "
                        f"sample the files hold")
    too_big = [b for b in plan.inputs.batch_sizes or [] if b > count]
    if too_big:
        raise DataError(f"{where}: batch size(s) {too_big} exceed the {count} sample(s) the files hold")
    for spec in plan.model.inputs:  # a declared shape with concrete dims matches exactly for this count
        if tuple(arrays[spec.name].shape) != concrete_shape(spec.shape, count):
            raise DataError(f"{where}: input '{spec.name}' has shape {list(arrays[spec.name].shape)}")
    return count


def stale_reason(plan: Any, manifest: dict[str, Any]) -> str | None:
    """Why a golden no longer fits the files the input set names (changed files, another preprocessing), or None.
    Files that are not here (a golden committed without its source images) cannot be checked: the golden's stored
    copy of the inputs is verified, and a warning says so."""
    if not from_files(plan):
        return None
    recorded = manifest.get("inputs_source")
    if recorded is None:
        if manifest.get("imported"):
            return None  # an imported golden carries the inputs it was imported with
        return (f"the golden's inputs were drawn from distributions, but input set '{plan.inputs.name}' now reads "
                f"{value_of(plan.inputs.source)} files")
    source = value_of(plan.inputs.source)
    if recorded.get("source") != source:
        return f"the golden's inputs came from {recorded.get('source')} files, the input set now reads {source} files"
    if source == "images":  # the steps, not the library versions (a version change is compare_preprocess's)
        now_steps = preprocess.steps(plan.inputs.preprocess)
        then_steps = {k: v for k, v in (recorded.get("preprocess") or {}).items() if k in now_steps}
        if now_steps != then_steps:
            changed = sorted(k for k in now_steps if now_steps[k] != then_steps.get(k))
            return f"the image preprocessing changed ({', '.join(changed)} differ from the golden's)"
    try:
        files = source_files(plan)
    except DataError as exc:  # not there: nothing to compare (a file that is there is hashed, never parsed)
        log.warning("the input files are not here (%s): verifying on the golden's stored copy of its inputs", exc)
        return None
    now = sorted((r["sha256"], Path(r["path"]).name) for r in (file_record(str(f)) for f in files))
    then = sorted((r["sha256"], Path(r["path"]).name) for r in recorded.get("files") or [])
    if now != then:
        changed = sorted({n for _, n in now} ^ {n for _, n in then}) or \
            sorted({n for s, n in now if (s, n) not in then})
        return f"the input files changed since the golden was made ({', '.join(changed[:5])})"
    return None

