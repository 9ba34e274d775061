"""Seeded models: resnet18 equals torchvision's init, weight hashing, user builders, input generation."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from parity import inputs as inputs_mod
from parity.errors import ConfigError
from parity.frameworks.torch import build_model, outputs_to_dict, weights_sha256
from parity.models.resnet import resnet18
from tests.conftest import SEARCHPATH, compose_cfg


def _torchvision_reason() -> str | None:
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision is not installed in this environment"
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # e.g. a CUDA torchvision beside a CPU torch build
        return f"torchvision does not import here: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


@pytest.mark.skipif(_torchvision_reason() is not None, reason=str(_torchvision_reason()))
def test_resnet18_weights_equal_torchvision_under_the_same_seed() -> None:
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    torch.manual_seed(0)
    ours = resnet18().state_dict()
    assert list(ours) == list(reference)
    for name, tensor in reference.items():
        assert torch.equal(ours[name], tensor), name


def test_resnet18_architecture_shape_and_parameter_count() -> None:
    model = resnet18().eval()
    assert sum(p.numel() for p in model.parameters()) == 11_689_512  # torchvision's resnet18
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_build_is_seeded_and_hash_is_stable() -> None:
    cfg = compose_cfg(["model=mlp"])
    a, b = build_model(cfg.model), build_model(cfg.model)
    assert weights_sha256(a) == weights_sha256(b)
    cfg.model.seed = 1
    assert weights_sha256(build_model(cfg.model)) != weights_sha256(a)


def test_user_builder_through_target() -> None:
    cfg = compose_cfg([SEARCHPATH, "model=tiny_conv", "model.builder.channels=2"])
    module = build_model(cfg.model)
    assert module.conv.out_channels == 2 and not module.training


def test_bad_builder_target_is_a_config_error() -> None:
    cfg = compose_cfg(["model=mlp", "model.builder._target_=parity.models.no_such_builder"])
    with pytest.raises(ConfigError, match="builder failed"):
        build_model(cfg.model)


def test_outputs_map_by_declared_names() -> None:
    t = torch.ones(2)
    assert list(outputs_to_dict((t, t * 2), ["a", "b"])) == ["a", "b"]
    assert outputs_to_dict({"b": t, "a": t * 2}, ["a", "b"])["a"][0] == 2
    with pytest.raises(Exception, match="declares 1"):
        outputs_to_dict((t, t), ["a"])


def test_inputs_are_reproducible_and_follow_the_declared_spec() -> None:
    cfg = compose_cfg(["model=resnet18"])
    a = inputs_mod.generate(cfg.model.inputs, 2, 0)["image"]
    b = inputs_mod.generate(cfg.model.inputs, 2, 0)["image"]
    assert a.shape == (2, 3, 224, 224) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, inputs_mod.generate(cfg.model.inputs, 2, 1)["image"])
    # image distribution: (pixel/255 - mean) / std, so channel 0 spans [-0.485/0.229, (1-0.485)/0.229]
    assert a[:, 0].min() >= -0.485 / 0.229 - 1e-5 and a[:, 0].max() <= (1 - 0.485) / 0.229 + 1e-5


def test_randint_inputs_for_id_features() -> None:
    cfg = compose_cfg(["model=mlp", "model.inputs=[{name: ids, shape: [batch, 3], dtype: int64, distribution: randint, low: 0, high: 7}]"])
    ids = inputs_mod.generate(cfg.model.inputs, 5, 0)["ids"]
    assert ids.dtype == np.int64 and ids.shape == (5, 3) and ids.min() >= 0 and ids.max() < 7
