"""LeNet-5 and ResNet-8: shapes, sizes, seeded builds, the two kinds of shortcut."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunelib.families.cnn.models import IMAGE_SHAPE, PRESETS, BasicBlock, LeNet5, ResNet8, build_model
from prunelib.measure.flops import count_flops
from prunelib.pruning.params import count_parameters

#: (parameters, multiply-adds per image) of each preset, as the module docstring states them.
SIZES = {"lenet5": (61_750, 416_520), "resnet8": (77_754, 9_345_920)}


@pytest.mark.parametrize("name", PRESETS)
def test_shapes_sizes_and_eval_mode(name: str) -> None:
    model = build_model(name, 10, 0)
    assert not model.training and isinstance(model.classifier, nn.Linear)
    with torch.no_grad():
        assert model(torch.randn(3, *IMAGE_SHAPE)).shape == (3, 10)
    assert (count_parameters(model), count_flops(model, torch.zeros(1, *IMAGE_SHAPE))) == SIZES[name]
    assert build_model(name, 7, 0)(torch.zeros(2, *IMAGE_SHAPE)).shape == (2, 7)


@pytest.mark.parametrize("name", PRESETS)
def test_build_is_seeded_and_leaves_the_global_rng_alone(name: str) -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b, c = build_model(name, 10, 0), build_model(name, 10, 0), build_model(name, 10, 1)
    assert torch.equal(torch.random.get_rng_state(), before)
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), key
    assert any(not torch.equal(x, z) for x, z in zip(a.parameters(), c.parameters()))


def test_unknown_preset_names_the_presets() -> None:
    with pytest.raises(ValueError, match=r"unknown CNN model 'vgg'.*lenet5.*resnet8"):
        build_model("vgg", 10, 0)


def test_lenet5_is_conv_pool_conv_pool_then_three_linears() -> None:
    model = LeNet5()
    kinds = [type(m).__name__ for m in model.features]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"] * 2
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(400, 120), (120, 84), (84, 10)]


def test_resnet8_has_an_identity_and_two_downsample_shortcuts() -> None:
    model = ResNet8()
    assert isinstance(model.layer1.shortcut, nn.Identity)
    for block, (cin, cout) in ((model.layer2, (16, 32)), (model.layer3, (32, 64))):
        conv, norm = block.shortcut
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (cin, cout, (1, 1), (2, 2))
        assert isinstance(norm, nn.BatchNorm2d) and norm.num_features == cout
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 8  # 7 conv layers on the main path and the classifier: ResNet-8


def test_basic_block_adds_its_input() -> None:
    block = BasicBlock(4, 4, 1).eval()
    with torch.no_grad():
        for p in (block.bn2.weight, block.bn2.bias):
            p.zero_()  # the residual branch outputs zero: the block is relu(x)
        x = torch.randn(2, 4, 5, 5)
        assert torch.equal(block(x), torch.relu(x))
