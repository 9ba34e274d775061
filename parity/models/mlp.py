"""A tiny multilayer perceptron for fast tests."""

from __future__ import annotations

from torch import nn


def mlp(in_features: int = 16, hidden: int = 32, num_classes: int = 8) -> nn.Module:
    """Linear -> ReLU -> Linear -> ReLU -> Linear, returning class logits."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
