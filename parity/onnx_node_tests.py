"""ONNX's own operator tests as parity goldens: `python -m parity.onnx_node_tests --cases PATTERNS --dir DIR`.

onnx (1.23.2) no longer ships the node test data files; `onnx.backend.test.loader.load_node_model_tests()` builds
the cases in memory. For each chosen case this writes

    DIR/cases/<case>/model.onnx, DIR/cases/<case>/test_data_set_0/{input,output}_<i>.pb
    DIR/conf/model/<case>.yaml            an ONNX-only model option (framework onnx, model.path)
    DIR/conf/tolerance/onnx_node.yaml     ONNX's runner tolerance (rtol 1e-3, atol 1e-7)
    DIR/conf/inputs/onnx_node.yaml        the input set the goldens are stored under

and imports the expected outputs as the golden of (case, onnx_node) below --golden-root (mode=import
import.format=onnx_test_data). Every case then runs on any backend in one sweep:

    python -m parity -m --config-dir DIR/conf 'model=glob(test_*)' golden.root=ROOT backend=ort_cpu

(--config-dir, not hydra.searchpath: Hydra's glob() lists the options of the config directories it loads from,
and a search path given as an override is not among them.)

Building every case takes seconds; an index of which onnx module makes which case (under
parity.paths.cache_dir("onnx-node-tests"), written by the first run) lets later runs build only the chosen ones.

A case parity cannot hold (sequence or optional values, string, float8 or int4 tensors, expected NaN/Inf, more
than one test data set) is listed with the reason and left out.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import logging
import os
import pkgutil
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from parity import exchange
from parity.errors import one_line
from parity.inputs import DTYPES, floating
from parity.paths import cache_dir

INPUT_SET = "onnx_node"
log = logging.getLogger(__name__)
ONNX_RTOL, ONNX_ATOL = 1e-3, 1e-7  # onnx.backend.test.runner's defaults (numpy.testing.assert_allclose)


def load_cases(patterns: list[str] | None = None) -> list[Any]:
    """The node test cases onnx builds in memory: every one, or at least those matching `patterns`.

    onnx builds a case when the module defining it is imported (its generators run then, and all of them take
    several seconds). The first time, every module is imported, one by one, and which module made which case is
    written to an index (`cache_dir("onnx-node-tests")`, one file per onnx version); later calls with patterns
    import only the modules that make the matching cases. The generators seed numpy's global generator themselves,
    so a case is the same however it was loaded."""
    import onnx
    from onnx.backend.test.case import node

    index_path = cache_dir("onnx-node-tests") / f"index-onnx-{onnx.__version__}.json"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the generators warn about the infinities some compute
        index = _read_index(index_path) if patterns is not None else None
        if index is not None:
            for module in sorted({m for name, m in index.items() if _matches(name, patterns or [])}):
                importlib.import_module(module)
            return list(node._NodeTestCases)
        made: dict[str, str] = {}
        _import_all(node, made)
    _write_index(index_path, made)
    return list(node._NodeTestCases)


def _import_all(package: Any, made: dict[str, str]) -> None:
    """Import every module below `package` as onnx's own loader does (the ai.onnx.ml cases only where onnx was
    built with them), noting the module that made each new case."""
    from onnx.backend.test.case import node
    from onnx.onnx_cpp2py_export import ONNX_ML

    for _, name, is_package in pkgutil.iter_modules(package.__path__):
        module_name = f"{package.__name__}.{name}"
        if not ONNX_ML and module_name.startswith(f"{node.__name__}.ai_onnx_ml"):
            continue
        before = len(node._NodeTestCases)
        module = importlib.import_module(module_name)
        made.update({case.name: module_name for case in node._NodeTestCases[before:]})
        if is_package:
            _import_all(module, made)


def _read_index(path: Path) -> dict[str, str] | None:
    """The case -> module index, or None where there is none (or it is unreadable: it is made again)."""
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) and all(isinstance(v, str) for v in index.values()) else None


def _write_index(path: Path, index: dict[str, str]) -> None:
    """Written aside and renamed into place (concurrent writers write the same content); a cache directory that
    cannot be written only costs the next call its speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write the ONNX node test index %s: %s", path, one_line(exc))


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select(cases: list[Any], patterns: list[str]) -> list[Any]:
    chosen = [c for c in cases if _matches(c.name, patterns)]
    return sorted(chosen, key=lambda c: c.name)


def tensors(values: list[Any]) -> list[Any]:
    """A data set's values with TensorProtos (what onnx stores for types numpy lacks) as arrays where numpy
    (with ml_dtypes) holds them; anything else (sequences, optionals, maps) as it is."""
    import onnx
    from onnx import numpy_helper

    out = []
    for value in values:
        if isinstance(value, np.generic):  # a 0-d output the case computed as a numpy scalar
            value = np.asarray(value)
        if isinstance(value, onnx.TensorProto):
            try:
                value = numpy_helper.to_array(value)
            except Exception:  # an element type without a numpy counterpart
                pass
        out.append(value)
    return out


def unsupported(case: Any) -> str | None:
    """Why parity cannot hold this case's data as a golden, or None."""
    import onnx

    if not case.data_sets:
        return "no test data"
    if len(case.data_sets) != 1:
        return f"{len(case.data_sets)} test data sets (parity imports cases with one)"
    graph = case.model.graph
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            if not value.type.HasField("tensor_type"):
                return f"{kind} '{value.name}' is a {value.type.WhichOneof('value')} (sequence / optional / map " \
                       f"values are not tensors)"
            elem = value.type.tensor_type.elem_type
            name = onnx.TensorProto.DataType.Name(elem)
            try:
                numpy_name = onnx.helper.tensor_dtype_to_np_dtype(elem).name
            except Exception:  # UNDEFINED
                numpy_name = ""
            if name == "STRING" or numpy_name not in DTYPES:
                return f"{kind} '{value.name}' has element type {name}, which parity cannot compare"
    inputs, outputs = (tensors(list(v)) for v in case.data_sets[0])
    for kind, values in (("input", inputs), ("output", outputs)):
        for value in values:
            if not isinstance(value, np.ndarray):
                return f"an {kind} is a {type(value).__name__} (sequence / optional values are not tensors)"
            if value.dtype.kind in "OUS":
                return f"an {kind} holds strings"
    for value in outputs:
        if floating(value.dtype) and not np.isfinite(value.astype(np.float64)).all():
            return "the expected outputs hold NaN/Inf (a golden must be finite)"
    return None


def write_case(case: Any, directory: Path) -> Path:
    """The case's model and its one test data set, named after the graph's inputs and outputs."""
    import onnx

    case_dir = directory / "cases" / case.name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    data_set = case_dir / "test_data_set_0"
    data_set.mkdir(parents=True)
    onnx.save(case.model, str(case_dir / "model.onnx"))
    graph = case.model.graph
    initializers = {i.name for i in graph.initializer}
    input_names = [i.name for i in graph.input if i.name not in initializers]
    inputs, outputs = (tensors(list(v)) for v in case.data_sets[0])
    for prefix, names, values in (("input", input_names, inputs), ("output", [o.name for o in graph.output],
                                                                   outputs)):
        for position, (name, value) in enumerate(zip(names, values)):
            exchange.write_pb(data_set / f"{prefix}_{position}.pb", name, np.asarray(value))
    return case_dir


def write_conf(case: Any, directory: Path, case_dir: Path) -> None:
    conf = directory / "conf"
    for group in ("model", "tolerance", "inputs"):
        (conf / group).mkdir(parents=True, exist_ok=True)
    import onnx

    (conf / "model" / f"{case.name}.yaml").write_text(
        f"# ONNX node test {case.name} (onnx {onnx.__version__}), written by python -m parity.onnx_node_tests\n"
        "defaults:\n  - onnx\n  - override /tolerance@_global_.tolerance: onnx_node\n"
        "  - override /inputs@_global_.inputs: onnx_node\n  - _self_\n\n"
        f"name: {case.name}\npath: {json.dumps(str(case_dir / 'model.onnx'))}\n")  # JSON strings are YAML
    (conf / "tolerance" / "onnx_node.yaml").write_text(
        "# onnx.backend.test.runner's tolerance: numpy.testing.assert_allclose(rtol=1e-3, atol=1e-7), the rule of\n"
        "# parity's elementwise check\ndefaults:\n  - base_tolerance\n  - _self_\n\n"
        f"name: onnx_node\natol: {ONNX_ATOL}\nrtol: {ONNX_RTOL}\ncheck: elementwise\n")
    (conf / "inputs" / "onnx_node.yaml").write_text(
        "# the input set ONNX node test goldens are stored under (one test data set each)\n"
        "defaults:\n  - base_inputs\n  - _self_\n\n"
        f"name: {INPUT_SET}\nnum_samples: 1\n")


def import_cases(cases: list[Any], directory: Path, golden_root: Path, overwrite: bool) -> list[tuple[str, str]]:
    """Write and import every case; (case, "imported" | the reason it was left out) each."""
    from hydra import initialize_config_dir

    from parity.__main__ import CONFIG_DIR
    from parity.config import register_configs

    register_configs()
    results = []
    quiet = logging.getLogger("parity")  # each case's outcome is its own line below; the jobs' logs would repeat it
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        with tempfile.TemporaryDirectory(prefix="parity-onnx-node-") as scratch, \
                initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            for number, case in enumerate(cases, 1):
                reason = _import_case(case, directory, golden_root, overwrite, Path(scratch))
                print(f"[{number}/{len(cases)}] {case.name}: {reason}", flush=True)
                results.append((case.name, reason))
    finally:
        quiet.setLevel(level)
    return results


def _import_case(case: Any, directory: Path, golden_root: Path, overwrite: bool, scratch: Path) -> str:
    """One case written and imported (inside import_cases' Hydra context): "imported", or why not. An existing
    golden (without --overwrite) leaves every file of the case as it is; a failed import removes what this run
    wrote."""
    from hydra import compose

    from parity.pipeline import run_job
    from parity.plan import JobContext

    reason = unsupported(case)
    if reason is not None:
        return reason
    if (golden_root / case.name / INPUT_SET).exists() and not overwrite:
        return f"golden already exists at {golden_root / case.name / INPUT_SET} (--overwrite replaces it)"
    option = directory / "conf" / "model" / f"{case.name}.yaml"
    existed = option.exists()
    case_dir = write_case(case, directory)
    write_conf(case, directory, case_dir)
    overrides = [f"hydra.searchpath=[file://{directory / 'conf'}]", f"model={case.name}", "mode=import",
                 "import.format=onnx_test_data", f"import.path={case_dir}", "import.tool='onnx node tests'",
                 f"golden.root={golden_root}", f"golden.overwrite={str(overwrite).lower()}", "report.formats=[json]"]
    try:
        cfg = compose(config_name="config", overrides=overrides)
        report = run_job(cfg, JobContext(output_dir=scratch / case.name, start_dir=Path.cwd()))
        reason = "imported" if report.golden.written else (report.error or report.verdict.value)
    except Exception as exc:  # a case that composes or runs wrong is that case's line, not the end
        reason = one_line(exc)
    if reason != "imported" and not existed:  # leave no model option (or model) behind without its golden
        option.unlink(missing_ok=True)
        shutil.rmtree(case_dir, ignore_errors=True)
    return reason


def sweep_command(directory: Path, golden_root: Path, backends: str = "ort_cpu") -> str:
    return (f"python -m parity -m --config-dir {directory / 'conf'} 'model=glob(test_*)' golden.root={golden_root} "
            f"backend={backends}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parity.onnx_node_tests",
        description="Import ONNX's operator (node) tests as parity goldens of ONNX-only models, to run on any "
                    "backend with one Hydra sweep.")
    parser.add_argument("--cases", default=None,
                        help="comma-separated names or fnmatch patterns, e.g. 'test_abs,test_conv*' ('test_*': all)")
    parser.add_argument("--dir", default="onnx_node_tests", help="where models and configs go (default: %(default)s)")
    parser.add_argument("--golden-root", default=None, help="the golden root (default: DIR/golden)")
    parser.add_argument("--overwrite", action="store_true", help="replace goldens an earlier import wrote")
    parser.add_argument("--list", action="store_true", help="list the matching cases (all without --cases), import "
                                                            "nothing")
    args = parser.parse_args(argv)
    if not args.cases and not args.list:
        parser.error("--cases is required: e.g. --cases 'test_abs,test_relu,test_conv*' (or 'test_*' for all)")
    patterns = [p.strip() for p in (args.cases or "*").split(",") if p.strip()]
    cases = load_cases(patterns)
    if args.list:
        for case in select(cases, patterns):
            print(f"{case.name}: {unsupported(case) or 'supported'}")
        return 0
    chosen = select(cases, patterns)
    if not chosen:
        print(f"parity: no ONNX node test matches {args.cases!r} (see --list)", file=sys.stderr)
        return 2
    directory = Path(args.dir).resolve()
    golden_root = Path(args.golden_root).resolve() if args.golden_root else directory / "golden"
    results = import_cases(chosen, directory, golden_root, args.overwrite)
    imported = [name for name, status in results if status == "imported"]
    print(f"\n{len(imported)} of {len(results)} case(s) imported into {golden_root}; left out: "
          f"{len(results) - len(imported)}")
    if imported:
        print(f"run them on a backend with:\n  {sweep_command(directory, golden_root)}")
    return 0 if imported else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # stdout closed early (`--list | head`): not an error of the tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
