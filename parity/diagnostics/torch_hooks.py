"""Layer probes in torch: forward hooks on the probed modules, and a wrapper returning their tensors as outputs;
and every module call of a forward pass, for localize=source."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from parity.diagnostics.probes import probe_output_name
from parity.errors import ConfigError, ModelError
from parity.frameworks.torch import to_numpy, to_tensor

if TYPE_CHECKING:
    from parity.diagnostics.source import Captured, ModuleCall


def resolve(module: nn.Module, paths: Sequence[str]) -> dict[str, nn.Module]:
    """The named submodules; an unknown path is a config error listing close names."""
    named = dict(module.named_modules())
    missing = [p for p in paths if p not in named]
    if missing:
        hint = [n for n in named if n and any(n.startswith(m.split(".")[0]) for m in missing)][:8]
        raise ConfigError(f"model.probes {missing} are not modules of the model (e.g. {hint})")
    return {p: named[p] for p in paths}


def _first_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[-1], torch.Tensor):
        return value[-1]  # a stage list (e.g. SECOND's outputs): its last element is this module's own output
    raise ModelError(f"probe module returned {type(value).__name__}, not a tensor")


@contextmanager
def captured(module: nn.Module, paths: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks on `paths` while inside the block; the dict fills as the model runs."""
    store: dict[str, torch.Tensor] = {}
    handles = []
    for path, sub in resolve(module, paths).items():
        handles.append(sub.register_forward_hook(lambda _m, _i, out, path=path: store.__setitem__(path, _first_tensor(out))))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def run_with_probes(module: nn.Module, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
                    paths: Sequence[str]) -> dict[str, np.ndarray]:
    """Eager forward; returns the probe tensors by path, in the order the modules ran (forward order)."""
    args = tuple(to_tensor(feeds[n]) for n in input_names)
    with captured(module, paths) as store, torch.inference_mode():
        module(*args)
    missing = [p for p in paths if p not in store]
    if missing:
        raise ModelError(f"probe modules {missing} did not run in the forward pass")
    return {p: to_numpy(tensor) for p, tensor in store.items()}  # hooks fill it in forward order


class ProbedModule(nn.Module):
    """Returns the model's outputs followed by its probe tensors, so an exporter makes them graph outputs."""

    def __init__(self, model: nn.Module, paths: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.paths = list(paths)
        self._targets = resolve(model, self.paths)

    def forward(self, *args: torch.Tensor) -> Any:
        with captured(self.model, self.paths) as store:
            result = self.model(*args)
        probes = tuple(store[p] for p in self.paths)
        if isinstance(result, dict):
            return {**result, **{probe_output_name(p): t for p, t in zip(self.paths, probes)}}
        main = tuple(result) if isinstance(result, (list, tuple)) else (result,)
        return (*main, *probes)


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a forward argument or result, in order (through tuples, lists and dicts)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _snapshot(tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
    return [to_numpy(t.detach().clone()) for t in tensors]  # a copy now: an in-place op later must not change it


def module_calls(module: nn.Module, feeds: Mapping[str, np.ndarray], input_names: Sequence[str],
                 wanted: set[tuple[str, int]] | None = None) -> tuple[list[ModuleCall], dict[tuple[str, int], Captured]]:
    """One eager forward pass with hooks on every submodule: each call in the order it finished (a module called
    twice is there twice), and for the calls in `wanted` copies of their tensor inputs (taken before the call, so
    an in-place op inside it cannot change them) and outputs."""
    from parity.diagnostics.source import Captured, ModuleCall

    paths = {id(sub): path for path, sub in module.named_modules() if path}
    leaves = {path for path, sub in module.named_modules() if path and not any(True for _ in sub.children())}
    counts: dict[str, int] = {}
    running: dict[str, list[int]] = {}
    calls: list[ModuleCall] = []
    captured: dict[tuple[str, int], Captured] = {}
    inputs_of: dict[tuple[str, int], list[np.ndarray]] = {}

    def before(sub: nn.Module, args: Any, kwargs: Any) -> None:
        path = paths[id(sub)]
        index = counts.get(path, 0)
        counts[path] = index + 1
        running.setdefault(path, []).append(index)
        if wanted is not None and (path, index) in wanted:
            inputs_of[(path, index)] = _snapshot(_tensors(args) + _tensors(kwargs))

    def after(sub: nn.Module, args: Any, kwargs: Any, result: Any) -> None:
        path = paths[id(sub)]
        index = running[path].pop()
        outputs = _tensors(result)
        probeable = isinstance(result, torch.Tensor) or (isinstance(result, (list, tuple)) and bool(result)
                                                         and isinstance(result[-1], torch.Tensor))
        calls.append(ModuleCall(path, index, path in leaves, tuple(tuple(t.shape) for t in outputs), probeable))
        if (path, index) in inputs_of:
            captured[(path, index)] = Captured(inputs_of.pop((path, index)), _snapshot(outputs))

    handles = []
    for path, sub in module.named_modules():
        if path:
            handles.append(sub.register_forward_pre_hook(before, with_kwargs=True))
            handles.append(sub.register_forward_hook(after, with_kwargs=True))
    args = tuple(to_tensor(feeds[n]) for n in input_names)
    try:
        with torch.inference_mode():
            module(*args)
    except Exception as exc:
        raise ModelError(f"torch forward with module hooks failed: {exc}") from exc
    finally:
        for handle in handles:
            handle.remove()
    return calls, captured
