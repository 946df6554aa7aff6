"""The DS-CNN: Hello Edge's layout, its size and cost, seeded builds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunelib.families.kws.models import CONV_INIT_BOUND, PRESETS, DsBlock, DsCnn, DsCnnSpec, build_model
from prunelib.measure.flops import flops_by_layer
from prunelib.pruning.params import count_parameters

SHAPE = (49, 10)


def test_default_preset_is_hello_edges_small_ds_cnn() -> None:
    model = build_model("ds-cnn", SHAPE, 0)
    assert 20_000 <= count_parameters(model) <= 40_000
    assert count_parameters(model) == 23_050
    assert sum(flops_by_layer(model, torch.zeros(1, 1, *SHAPE)).values()) == 2_550_400
    stem = model.stem[0]
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride) == (1, 64, (10, 4), (2, 2))
    assert isinstance(model.stem[1], nn.BatchNorm2d) and isinstance(model.stem[2], nn.ReLU)
    assert len(model.blocks) == 4 and all(isinstance(b, DsBlock) for b in model.blocks)
    block = model.blocks[0]
    assert block.depthwise[0].groups == 64 and block.depthwise[0].kernel_size == (3, 3)
    assert block.pointwise[0].kernel_size == (1, 1) and block.pointwise[0].groups == 1
    assert all(
        isinstance(b.depthwise[1], nn.BatchNorm2d) and isinstance(b.pointwise[1], nn.BatchNorm2d) for b in model.blocks
    )
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d) and model.classifier.out_features == 10


def test_every_conv_starts_on_one_scale() -> None:
    """Each conv feeds a BatchNorm: one init scale lets global magnitude pruning compare the layers."""
    model = build_model("ds-cnn", SHAPE, 0)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight.detach()
            assert w.abs().max() <= CONV_INIT_BOUND and w.abs().mean() > 0.4 * CONV_INIT_BOUND
    default_classifier_bound = 1 / 64**0.5  # the classifier keeps PyTorch's default init
    assert model.classifier.weight.abs().max() <= default_classifier_bound


def test_mini_preset_is_small() -> None:
    assert count_parameters(build_model("ds-cnn-mini", SHAPE, 0)) < 1_000


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_logits_shape_and_eval_mode(name: str) -> None:
    model = build_model(name, SHAPE, 0)
    assert not model.training and model.input_shape == SHAPE
    assert model(torch.randn(3, 1, *SHAPE)).shape == (3, 10)


def test_build_is_seeded_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b, c = build_model("ds-cnn", SHAPE, 0), build_model("ds-cnn", SHAPE, 0), build_model("ds-cnn", SHAPE, 1)
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["stem.0.weight"], sc["stem.0.weight"])


def test_invalid_specs_and_presets_are_rejected() -> None:
    with pytest.raises(ValueError, match="ds-cnn"):
        build_model("resnet", SHAPE, 0)
    with pytest.raises(ValueError):
        DsCnnSpec(channels=0)
    assert isinstance(DsCnn(DsCnnSpec(channels=4, blocks=0), SHAPE), nn.Module)  # a stem and a classifier
