"""Goldens to and from other tools: mode=import makes a golden from another program's files, mode=export writes one
for other programs (formats: parity.exchange).

An imported golden is a golden like any other: its inputs and outputs are checked against the model's
declaration, its manifest ties it to the model's weights (the model is built, or the ONNX file hashed) and records
where it came from (`imported`: format, tool, every file with its SHA-256), and a verify runs the reference and
backend checks against it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from parity import exchange, sources
from parity.errors import DataError, GoldenError
from parity.golden import MANIFEST, GoldenStore, output_dir_problem, reference_manifest, sha256_file
from parity.inputs import floating, with_dtype
from parity.results import jsonable
from parity.weights import file_record

log = logging.getLogger("parity")


@dataclasses.dataclass
class Imported:
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    files: list[Path]
    details: dict[str, Any]


def read_import(plan: Any) -> Imported:
    """The inputs and outputs that import.* names, joined into one set of samples along the declared axes."""
    settings = plan.importing
    fmt, path = settings.format, Path(settings.path)
    input_names = [s.name for s in plan.model.inputs]
    output_names = list(plan.output_names)
    details: dict[str, Any] = {}
    if fmt == "polygraphy":
        outputs_file, inputs_file = path, Path(settings.inputs) if settings.inputs else None
        if path.is_dir():
            outputs_file = path / exchange.POLYGRAPHY_OUTPUTS
            inputs_file = inputs_file or path / exchange.POLYGRAPHY_INPUTS
        if inputs_file is None:
            raise DataError("import.format=polygraphy needs the inputs the outputs were computed from: "
                            "import.inputs=<the --save-inputs JSON>")
        out_batches, runner = exchange.read_polygraphy_outputs(outputs_file, settings.runner)
        in_sets = exchange.read_polygraphy_inputs(inputs_file)
        if len(out_batches) != len(in_sets.inputs):
            raise DataError(f"{outputs_file} holds {len(out_batches)} iteration(s) of runner '{runner}', "
                            f"{inputs_file} {len(in_sets.inputs)} feed dict(s); they must pair up")
        in_batches, files = in_sets.inputs, [inputs_file, outputs_file]
        details["runner"] = runner
    elif fmt == "onnx_test_data":
        sets = exchange.read_test_data(path, input_names, output_names)
        if not sets.outputs:
            raise DataError(f"{path}: the test data sets hold no output_N.pb files (expected outputs)")
        in_batches, out_batches, files = sets.inputs, sets.outputs, sets.files
    else:
        in_batches, out_batches, files = _read_arrays(fmt, path, settings.inputs)
    axes_in, axes_out = dict(plan.input_axes), dict(plan.output_axes)
    inputs = exchange.join_batches(in_batches, axes_in, f"import: the inputs in {path}")
    outputs = exchange.join_batches(out_batches, axes_out, f"import: the outputs in {path}")
    specs = {s.name: s for s in plan.model.inputs}
    inputs = {n: with_dtype(a, specs[n].dtype) if n in specs else a for n, a in inputs.items()}
    return Imported(inputs, outputs, files, details)


def _read_arrays(fmt: str, path: Path, inputs_path: str | None) \
        -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], list[Path]]:
    """npy / raw / csv: parity's layout (index.json with inputs and outputs), or for npy an .npz or a directory of
    <output>.npy files with the inputs in import.inputs."""
    if fmt != "npy" or (path.is_dir() and (path / exchange.INDEX).is_file()):
        sets = exchange.read_dir(fmt, path)
        ins, outs, files = sets.inputs, sets.outputs, sets.files
        if not outs:
            raise DataError(f"{path / exchange.INDEX} lists no outputs")
        if not any(ins[0]) and inputs_path is None:
            more = "name them with import.inputs" if fmt == "npy" else \
                f"a {fmt} import reads its inputs from the same index"
            raise DataError(f"{path / exchange.INDEX} lists no inputs; {more}")
    else:
        outs, files = _npy_arrays(path, "outputs")
        ins = [{}]
    if inputs_path is not None:
        ins, more = _npy_arrays(Path(inputs_path), "inputs")
        files = [*files, *more]
    if not any(ins[0]):
        raise DataError(f"import.format=npy: {path} holds the outputs only; name the inputs they were computed "
                        f"from with import.inputs=<.npz or directory>")
    return ins, outs, files


def _npy_arrays(path: Path, section: str) -> tuple[list[dict[str, np.ndarray]], list[Path]]:
    """An .npz, a directory of <name>.npy (all of them this section's), or a directory mode=export wrote in any
    of its per-tensor formats (npy, raw, csv: its index says which): its `section` part."""
    if path.is_file():
        return [exchange.read_npz(path)], [path]
    if not path.is_dir():
        raise DataError(f"no such file or directory {path}")
    if not (path / exchange.INDEX).is_file():
        sets = exchange.read_dir("npy", path)
        return sets.inputs, sets.files
    fmt = exchange.read_index(path).get("tensor_format")
    if fmt not in exchange.SUFFIX:
        raise DataError(f"{path / exchange.INDEX} describes {fmt} files; import.inputs takes a directory of npy, "
                        f"raw or csv files (or an .npz)")
    sets = exchange.read_dir(fmt, path)
    return (sets.inputs if section == "inputs" else sets.outputs) or [{}], sets.files


def check_outputs(plan: Any, outputs: dict[str, np.ndarray], num_samples: int, where: str) -> dict[str, np.ndarray]:
    """The declared outputs of an import (others, e.g. intermediate tensors Polygraphy marked, are left out):
    present, finite, and each batched one holding the samples on its batch axis."""
    missing = [n for n in plan.output_names if n not in outputs]
    if missing:
        raise DataError(f"{where}: no output(s) {missing} (the files hold {sorted(outputs)}; the model declares "
                        f"{list(plan.output_names)})")
    extra = sorted(set(outputs) - set(plan.output_names))
    if extra:
        log.info("import: leaving out %d tensor(s) the model does not declare as outputs: %s", len(extra),
                 ", ".join(extra[:8]))
    kept = {}
    for spec in plan.model.outputs:
        array = np.asarray(outputs[spec.name])
        if floating(array.dtype) and not np.isfinite(array).all():
            raise DataError(f"{where}: output '{spec.name}' holds NaN/Inf values; a golden must be finite")
        axis = spec.batch_axis
        if axis is not None and (array.ndim <= axis or array.shape[axis] != num_samples):
            raise DataError(f"{where}: output '{spec.name}' has shape {list(array.shape)}: axis {axis} does not hold "
                            f"the inputs' {num_samples} sample(s) (model.outputs batch_axis; null if it has none)")
        kept[spec.name] = array
    return kept


def import_golden(plan: Any, store: GoldenStore, report: Any, build: Any) -> None:
    """mode=import: write the golden of (model, inputs.name) from import.*; `build` builds the model (for the
    weights identity the golden is tied to) and records it in the report."""
    from parity.frameworks import framework_for
    from parity.report.model import GoldenInfo

    settings = plan.importing
    store.check_writable(plan.model.name, plan.inputs.name, plan.golden.overwrite)
    framework = framework_for(plan.framework)
    framework.require()
    log.info("importing %s files from %s", settings.format, settings.path)
    imported = read_import(plan)
    where = f"import.path {settings.path}"
    count = sources.check(plan, imported.inputs, where, expected=None)
    outputs = check_outputs(plan, imported.outputs, count, where)
    model = build(framework)  # the weights the golden is tied to: a changed model makes it stale like any other
    _fits_the_model(plan, framework, model, imported.inputs, outputs, where)
    record = {"format": settings.format, "tool": settings.tool or _tool(settings.format), "path": settings.path,
              **imported.details, "files": [file_record(str(f)) for f in imported.files],
              # what a stale golden's message suggests: import again, never remake it from the reference
              "command": store.command(plan.model.name, plan.inputs.name, overwrite=True)}
    manifest = reference_manifest(count, report.model.weights_sha256, dict(plan.input_axes),
                                  {"framework": framework.name, "imported": settings.format},
                                  {"model": jsonable(dataclasses.asdict(plan.model)),
                                   "inputs": jsonable(dataclasses.asdict(plan.inputs))},
                                  weights_file=report.model.weights_file, imported=record)
    inputs = {s.name: imported.inputs[s.name] for s in plan.model.inputs}
    path = store.write(plan.model.name, plan.inputs.name, inputs, outputs, manifest, overwrite=plan.golden.overwrite)
    log.info("golden imported: %s (%d sample(s), %d file(s) from %s)", path, count, len(imported.files),
             record["tool"])
    report.golden = GoldenInfo.of(store.load(plan.model.name, plan.inputs.name), plan.inputs.name, store.root,
                                  written=True)


def _fits_the_model(plan: Any, framework: Any, model: Any, inputs: dict[str, np.ndarray],
                    outputs: dict[str, np.ndarray], where: str) -> None:
    """The imported outputs have the dtypes and (but for the batch axis) shapes the model produces: the model
    runs on the first sample and each output is compared with it (values are the verify's business)."""
    from parity.inputs import take

    one = take({s.name: inputs[s.name] for s in plan.model.inputs}, dict(plan.input_axes), 1)
    live = framework.run(model, one, plan.input_names, plan.output_names)
    for spec in plan.model.outputs:
        mine, theirs = np.asarray(live[spec.name]), outputs[spec.name]
        if mine.dtype != theirs.dtype:
            raise DataError(f"{where}: output '{spec.name}' is {theirs.dtype} in the files; the model returns "
                            f"{mine.dtype}")
        axis = spec.batch_axis
        expected = list(mine.shape)
        if axis is not None and axis < len(expected):
            expected[axis] = theirs.shape[axis] if axis < theirs.ndim else expected[axis]
        if list(theirs.shape) != expected:
            shown = list(mine.shape)
            if axis is not None and axis < len(shown):
                shown[axis] = "batch"
            raise DataError(f"{where}: output '{spec.name}' has shape {list(theirs.shape)} in the files; the model "
                            f"returns {shown}")


def _tool(fmt: str) -> str:
    return {"polygraphy": "polygraphy", "onnx_test_data": "onnx test data"}.get(fmt, f"{fmt} files")


def export_golden(plan: Any, store: GoldenStore, start_dir: Path) -> tuple[dict[str, Any], Any]:
    """mode=export: the golden of (model, inputs.name) written as export.format into export.dir, through a staging
    directory beside it (a failed export leaves nothing half-written). Returns what the report records, and the
    golden it read."""
    settings = plan.exporting
    target = Path(settings.dir)
    problem = output_dir_problem(target, plan.golden.root, start_dir)
    if problem is not None:
        raise GoldenError(problem.replace("reports and artifacts are", "exports are").replace(
            "choose another hydra.run.dir / hydra.sweep.dir", "choose another export.dir"))
    from parity.golden import READONLY_ENV, root_path
    from parity.paths import protected_roots

    keep = [root_path(plan.golden.root, start_dir), start_dir, *protected_roots(os.environ.get(READONLY_ENV))]
    _check_target(target, settings.overwrite, keep)
    golden = store.load(plan.model.name, plan.inputs.name)
    axes = {"inputs": {n: golden.manifest.get("input_batch_axes", {}).get(n, plan.input_axes.get(n, 0))
                       for n in golden.inputs},
            "outputs": {n: plan.output_axes.get(n, 0) for n in golden.outputs}}
    if settings.format == "polygraphy" and any(a.dtype.name == "bfloat16" for a in
                                               [*golden.inputs.values(), *golden.outputs.values()]):
        raise DataError("Polygraphy's JSON cannot hold bfloat16 arrays (numpy has no such type); export this "
                        "golden as onnx_test_data, npy, raw or csv")
    meta = {"model": plan.model.name, "input_set": plan.inputs.name, "num_samples": golden.num_samples,
            "golden": str(golden.path), "golden_manifest_sha256": sha256_file(golden.path / MANIFEST),
            "hints": hints(settings.format, target, golden)}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-export"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        written = exchange.write_dir(settings.format, staging, golden.inputs, golden.outputs, axes,
                                     settings.batch_size, meta)
        if target.exists():  # an earlier export (checked above): replaced only now that the new one is whole
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = [str(target / p.relative_to(staging)) for p in written]
    log.info("golden exported as %s: %s (%d file(s))", settings.format, target, len(files))
    for hint in meta["hints"]:
        log.info("  %s", hint)
    return {"format": settings.format, "dir": str(target), "files": files, "hints": meta["hints"],
            "golden": str(golden.path)}, golden


def _check_target(target: Path, overwrite: bool, keep: list[Path]) -> None:
    """export.dir: new, or empty, or (with export.overwrite) a directory an earlier export wrote and nothing
    else: its index.json is parity's and lists every file in it. Never a directory holding `keep` (the golden
    root, a read-only root, the directory parity started in)."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise GoldenError(f"export.dir {target} exists and is not a directory; refused")
    resolved = target.resolve()
    for path in keep:
        if path.resolve() == resolved or path.resolve().is_relative_to(resolved):
            raise GoldenError(f"export.dir {target} holds {path}; an export never replaces a directory above "
                              f"goldens or the one parity started in: refused, choose another export.dir")
    if not target.exists() or not any(target.iterdir()):
        return
    earlier = _earlier_export(target)
    if not overwrite:
        more = " (an earlier export: export.overwrite=true replaces it)" if earlier else ""
        raise GoldenError(f"export.dir {target} is not empty{more}; refusing to write into it")
    if not earlier:
        raise GoldenError(f"export.dir {target} holds files no export wrote (no {exchange.INDEX_FORMAT} "
                          f"{exchange.INDEX} listing them all); export.overwrite replaces only an earlier export: "
                          f"refused, choose another directory")


def _earlier_export(target: Path) -> bool:
    """Whether `target` holds an export and nothing else: parity's index, and only the files it lists."""
    try:
        index = json.loads((target / exchange.INDEX).read_text())
        listed = {str(Path(f)) for f in index["files"]} | {exchange.INDEX}
        if index.get("format") != exchange.INDEX_FORMAT:
            return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for path in target.rglob("*"):
        if path.is_symlink() or (path.is_file() and str(path.relative_to(target)) not in listed):
            return False
    return True


def hints(fmt: str, target: Path, golden: Any) -> list[str]:
    """The commands other tools check the exported data with."""
    if fmt == "polygraphy":
        return [f"polygraphy run <model.onnx> --onnxrt --load-inputs {target / exchange.POLYGRAPHY_INPUTS} "
                f"--load-outputs {target / exchange.POLYGRAPHY_OUTPUTS} --atol <atol> --rtol <rtol>"]
    if fmt == "raw":
        names = exchange.file_names(list(golden.inputs), exchange.SUFFIX["raw"])
        loads = ",".join(f"'{n}':{target / 'inputs' / names[n]}" for n in golden.inputs)
        shapes = ",".join(f"'{n}':{'x'.join(str(d) for d in a.shape)}" for n, a in golden.inputs.items())
        return [f"trtexec --onnx=<model.onnx> --loadInputs={loads} --shapes={shapes} --exportOutput=<out.json>"]
    if fmt == "onnx_test_data":
        return [f"put <model.onnx> beside the test_data_set_N directories in {target} for ONNX's backend test "
                f"runner (onnx.backend.test.runner)"]
    return [f"{target / exchange.INDEX} lists every tensor's file, dtype, shape and batch axis"]
