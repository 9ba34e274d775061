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
        sets = read(plan)
        files = sets.files
        arrays = exchange.join_batches(sets.inputs, dict(plan.input_axes), inputs.path or "inputs.files")
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


def read(plan: Any) -> exchange.TensorSets:
    """The non-image sources as batches of arrays, and the files they came from."""
    inputs, source = plan.inputs, value_of(plan.inputs.source)
    names = [s.name for s in plan.model.inputs]
    if source == "npy":
        if inputs.files:
            files = [Path(inputs.files[n]) for n in inputs.files]
            for path in files:
                if not path.is_file():
                    raise DataError(f"inputs.files: no such file {path}")
            return exchange.TensorSets(inputs=[{n: exchange.read_npy(Path(p)) for n, p in inputs.files.items()}],
                                       files=files)
        path = Path(inputs.path)
        if path.is_file():
            return exchange.TensorSets(inputs=[{names[0]: exchange.read_npy(path)}], files=[path])
        if not path.exists():
            raise DataError(f"inputs.path: no such file or directory {path}")
        sets = exchange.read_dir("npy", path)
        return exchange.TensorSets(inputs=sets.inputs, files=sets.files)
    path = Path(inputs.path)
    if source == "npz":
        return exchange.TensorSets(inputs=[exchange.read_npz(path)], files=[path])
    if source == "onnx_test_data":
        sets = exchange.read_test_data(path, names, [o.name for o in plan.model.outputs])
        return exchange.TensorSets(inputs=sets.inputs, files=[f for f in sets.files if f.name.startswith("input_")])
    if source == "polygraphy":
        return exchange.read_polygraphy_inputs(path)
    raise DataError(f"inputs.source '{source}' reads no files")


_PLAN = object()


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
            raise DataError(f"{where}: input '{spec.name}' is {array.dtype} in the files, declared {spec.dtype}; "
                            f"write the files as {spec.dtype} (parity converts nothing silently)")
        axis = batch_axis(spec.shape)
        shape = list(spec.shape)
        if array.ndim != len(shape) or any(d != BATCH and int(d) != n for d, n in zip(shape, array.shape)):
            raise DataError(f"{where}: input '{spec.name}' has shape {list(array.shape)} in the files, declared "
                            f"{shape}")
        if axis is not None:
            counts[spec.name] = int(array.shape[axis])
    found = set(counts.values())
    if len(found) > 1:
        raise DataError(f"{where}: the inputs hold different sample counts {counts}; every input needs one value "
                        f"per sample")
    count = found.pop() if found else 1
    if count < 1:
        raise DataError(f"{where}: the files hold no samples")
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
        files = current_files(plan)
    except DataError as exc:
        log.warning("the input files are not here (%s): verifying on the golden's stored copy of its inputs", exc)
        return None
    now = sorted((r["sha256"], Path(r["path"]).name) for r in (file_record(str(f)) for f in files))
    then = sorted((r["sha256"], Path(r["path"]).name) for r in recorded.get("files") or [])
    if now != then:
        changed = sorted({n for _, n in now} ^ {n for _, n in then}) or \
            sorted({n for s, n in now if (s, n) not in then})
        return f"the input files changed since the golden was made ({', '.join(changed[:5])})"
    return None


def current_files(plan: Any) -> list[Path]:
    """The files the input set names now (DataError when they are not here)."""
    if value_of(plan.inputs.source) == "images":
        return preprocess.image_files(plan.inputs.path)
    return read(plan).files
