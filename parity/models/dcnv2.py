"""DCN-V2 (DCN-Mix) CTR model from the real deepctr-torch package, with per-feature id inputs (seed 004)."""

from __future__ import annotations

import sys
import types
from typing import Any

import torch
from torch import nn


class DCNMixInputs(nn.Module):
    """Takes one int64 id tensor [batch, 1] per sparse feature, then dense [batch, n_dense] floats.

    deepctr's forward wants a single float matrix with sparse ids as float columns; this builds it,
    so the ONNX graph has typed id inputs as a serving system would feed them.
    """

    def __init__(self, model: nn.Module, n_sparse: int) -> None:
        super().__init__()
        self.model = model
        self.n_sparse = n_sparse

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        sparse, dense = inputs[: self.n_sparse], inputs[self.n_sparse]
        columns = [ids.to(dense.dtype) for ids in sparse]
        return self.model(torch.cat([*columns, dense], dim=1))


def dcnmix(
    sparse: list[dict[str, Any]],
    n_dense: int,
    dnn_hidden_units: list[int],
    cross_num: int,
    low_rank: int = 32,
    num_experts: int = 4,
    init_std: float = 0.01,
    seed: int = 1024,
) -> nn.Module:
    """deepctr_torch.models.DCNMix over `sparse` features ({name, vocab, dim}) and `n_dense` dense ones.

    deepctr seeds itself with `seed` in its constructor. `init_std` is deepctr's embedding init scale;
    its default 1e-4 makes every prediction ~0.5, so the configs raise it to exercise real values.
    """
    _import_deepctr_offline()
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from deepctr_torch.models import DCNMix

    features = [SparseFeat(f["name"], vocabulary_size=int(f["vocab"]), embedding_dim=int(f["dim"])) for f in sparse]
    features += [DenseFeat(f"D{i + 1}", 1) for i in range(n_dense)]
    model = DCNMix(features, features, cross_num=cross_num, dnn_hidden_units=tuple(dnn_hidden_units),
                   low_rank=low_rank, num_experts=num_experts, init_std=init_std, seed=seed, task="binary",
                   device="cpu")
    return DCNMixInputs(model, len(sparse))


def _import_deepctr_offline() -> None:
    """Import deepctr_torch without its import-time PyPI version check.

    deepctr_torch/__init__.py calls utils.check_version(), which starts a non-daemon thread doing
    `requests.get(pypi)` with no timeout: a network call at import that prints to stdout when offline
    and can hold the process open. utils.py holds nothing else, so a stub module takes its place.
    """
    if "deepctr_torch" in sys.modules:
        return
    stub = types.ModuleType("deepctr_torch.utils")
    stub.check_version = lambda version: None  # type: ignore[attr-defined]
    sys.modules["deepctr_torch.utils"] = stub
    import deepctr_torch  # noqa: F401
