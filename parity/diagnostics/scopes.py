"""Which source module (or layer) each node of an exported ONNX graph came from, read from what the exporter
left behind, and the dataflow around a module's nodes: the tensor it hands on (its exit) and the smallest
subgraph that computes it.

- torch's dynamo exporter: node metadata `pkg.torch.onnx.name_scopes`, the module path at every level
  (`['', 'layer1', 'layer1.0', 'layer1.0.relu', 'relu_2']`); a module called twice gets the same scope both times.
- torch's TorchScript exporter (and jit.trace + that exporter): scoped node names, one component per module
  level (`/layer1/layer1.0/relu_1/Relu`: the child `relu` of `layer1.0`, its second call). A container's child
  may carry its parent's name (`layer1.0`); jit.trace names it plainly (`/layer1/0/conv1/Conv`).
- tf2onnx: node names `<model>/<layer>/<op>` (`sequential/conv2d/BiasAdd`), the Keras layer's name.

Only paths that are modules of the source model count, so a wrapper the exporter saw around it (parity's own
`model.` prefix) or a node of no module (a weight's Identity) never matches anything.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Scope = tuple[str, "int | None"]  # (module path, call index: None where the exporter does not say)
_CALL = re.compile(r"(.+)_(\d+)$")
WRAPPERS = ("model",)  # parity's exporters wrap the model (OrderedOutputs.model, ProbedModule.model)


@dataclass(frozen=True)
class ModuleTree:
    """The source model's module paths ('' is the model itself) and each one's children by attribute name."""

    children: Mapping[str, Mapping[str, str]]  # path -> {attribute: child path}

    @property
    def paths(self) -> set[str]:
        return set(self.children)

    def resolve(self, path: str) -> str | None:
        """`path` as a module path of the model, allowing for a wrapper prefix; None when it is none."""
        candidates = [path]
        while path.split(".", 1)[0] in WRAPPERS and "." in path:
            path = path.split(".", 1)[1]
            candidates.append(path)
        for candidate in reversed(candidates) if len(candidates) > 1 else candidates:
            if candidate in self.children and candidate:
                return candidate
        return None


@dataclass
class GraphScopes:
    """Every node's chain of (module path, call) from the outermost module inward, and the graph's dataflow."""

    model: Any  # onnx.ModelProto (weights need not be loaded)
    chains: list[list[Scope]]
    producer: dict[str, int] = field(default_factory=dict)  # tensor -> index of the node writing it
    consumers: dict[str, list[int]] = field(default_factory=dict)
    constants: set[str] = field(default_factory=set)  # initializers and tensors computed from them alone
    outputs: set[str] = field(default_factory=set)

    def members(self, scope: Scope) -> list[int]:
        """Indices of the nodes inside `scope` (its own and its descendants'), in graph order."""
        return [i for i, chain in enumerate(self.chains) if scope in chain]

    def scoped(self) -> set[Scope]:
        return {s for chain in self.chains for s in chain}

    def exits(self, scope: Scope) -> list[str]:
        """The tensors `scope`'s nodes hand on (read by a node outside it, or graph outputs), in graph order."""
        inside = set(self.members(scope))
        found = []
        for i in sorted(inside):
            for out in self.model.graph.node[i].output:
                if out and out not in self.constants and (
                        out in self.outputs or any(c not in inside for c in self.consumers.get(out, ()))):
                    found.append(out)
        return found

    def subgraph(self, scope: Scope, exit_tensor: str, boundary: set[str],
                 absorb_unscoped: bool = False) -> tuple[list[int], list[str]]:
        """The nodes of `scope` that compute `exit_tensor` (walking back until a tensor made outside it, a
        constant, or a `boundary` tensor: another call's exit), with the constant-only nodes they read; and the
        tensors it must be fed. `absorb_unscoped`: nodes of no module on the way belong to it too (tf2onnx names
        a Conv it fused with its BatchNorm after no layer: `Conv__58`)."""
        inside = set(self.members(scope))
        needed, stack, feeds = set(), [exit_tensor], []
        initializers = {t.name for t in self.model.graph.initializer}
        seen: set[str] = set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or not tensor:
                continue
            seen.add(tensor)
            node = self.producer.get(tensor)
            if tensor in initializers:
                continue
            if node is not None and (tensor in self.constants or
                                     ((node in inside or (absorb_unscoped and not self.chains[node]))
                                      and (tensor == exit_tensor or tensor not in boundary))):
                needed.add(node)
                stack.extend(self.model.graph.node[node].input)
            else:
                feeds.append(tensor)
        return sorted(needed), sorted(set(feeds), key=lambda t: (self.producer.get(t, -1), t))


def torch_tree(module: Any) -> ModuleTree:
    children: dict[str, dict[str, str]] = {}
    for path, sub in module.named_modules():
        children[path] = {name: f"{path}.{name}" if path else name for name, _ in sub.named_children()}
    return ModuleTree(children)


def flat_tree(names: Sequence[str]) -> ModuleTree:
    """A model whose modules are one flat list of named layers (Keras)."""
    return ModuleTree({"": {n: n for n in names}, **{n: {} for n in names}})


def _dynamo_chain(node: Any, tree: ModuleTree) -> list[Scope] | None:
    meta = {p.key: p.value for p in node.metadata_props}
    raw = meta.get("pkg.torch.onnx.name_scopes")
    if raw is None:
        return None
    try:
        scopes = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return []
    chain: list[Scope] = []
    for entry in scopes[:-1]:  # the last entry names the operation itself
        path = tree.resolve(str(entry))
        if path is not None and (not chain or chain[-1][0] != path):
            chain.append((path, None))
    return chain


def _legacy_chain(name: str, tree: ModuleTree) -> list[Scope]:
    parts = [p for p in name.split("/")[:-1] if p]  # the last component names the operation
    best: list[Scope] = []
    for skip in (1, 0) if parts[:1] and parts[0] in WRAPPERS else (0,):
        chain, path = [], ""
        for part in parts[skip:]:
            attr = part.rsplit(".", 1)[-1]
            kids = tree.children.get(path, {})
            call = 0
            if attr not in kids:
                match = _CALL.fullmatch(attr)
                if not match or match.group(1) not in kids:
                    break
                attr, call = match.group(1), int(match.group(2))
            path = kids[attr]
            chain.append((path, call))
        if len(chain) > len(best):
            best = chain
    return best


def _tf2onnx_chain(name: str, tree: ModuleTree) -> list[Scope]:
    """tf2onnx's `StatefulPartitionedCall/<model>_1/<layer>_1/<op>`: Keras 3 suffixes each call scope `_<n>`."""
    for part in name.split("/")[:-1]:
        for candidate in (part, _CALL.sub(r"\1", part)):
            if candidate in tree.children and candidate:
                return [(candidate, None)]
    return []


def graph_scopes(model: Any, tree: ModuleTree) -> GraphScopes:
    """Scope chains and dataflow of `model`'s main graph."""
    graph = model.graph
    chains = []
    for node in graph.node:
        chain = _dynamo_chain(node, tree)
        if chain is None:
            chain = _legacy_chain(node.name, tree) if node.name.startswith("/") else _tf2onnx_chain(node.name, tree)
        chains.append(chain)
    scopes = GraphScopes(model, chains, outputs={o.name for o in graph.output})
    constants = {t.name for t in graph.initializer}
    inputs = {i.name for i in graph.input} - constants
    for index, node in enumerate(graph.node):
        for tensor in node.input:
            scopes.consumers.setdefault(tensor, []).append(index)
        for tensor in node.output:
            scopes.producer[tensor] = index
        if node.op_type == "Constant" or (node.input and all(not t or (t in constants and t not in inputs)
                                                                 for t in node.input)
                                          and node.op_type not in ("RandomNormal", "RandomUniform")):
            constants.update(t for t in node.output if t)
    scopes.constants = constants
    return scopes
