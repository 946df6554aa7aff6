"""Proof that structured pruning is "any model": standard architectures the suite never trains.

A MobileNetV2-style stack of inverted residual blocks (1x1 expand, depthwise 3x3, 1x1 project,
residual add) and a small ResNet (basic blocks, a 1x1 downsample shortcut), each written in a few
lines, as a user's torchvision model would be. Torch-Pruning traces them; prunelib masks, shrinks,
folds BatchNorm, exports to ONNX and runs ONNX Runtime, and every stage keeps the outputs.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from prunelib.deploy.onnx import ort_runner, ort_session
from prunelib.deploy.ready import fold_batchnorm, has_batchnorm
from prunelib.measure.flops import count_flops
from prunelib.pruning.criteria import initial_state, remove_reparametrization, rewind
from prunelib.pruning.structured import Structure, UnitRule, prune_units, shrink, unit_counts


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU6()) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            conv_bn(cin, mid, 1), conv_bn(mid, mid, 3, stride, groups=mid), conv_bn(mid, cout, 1, act=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res else self.block(x)


class MobileNetV2ish(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 2)
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 1), InvertedResidual(16, 24, 2, 6), InvertedResidual(24, 24, 1, 6)
        )
        self.head = conv_bn(24, 64, 1)
        self.classifier = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.blocks(self.stem(x))).mean((2, 3)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, act=False))
        self.shortcut = conv_bn(cin, cout, 1, stride, act=False) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNetish(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16)
        self.layers = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 32, 1))
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


def build(name: str, seed: int = 0) -> tuple[nn.Module, Structure]:
    torch.manual_seed(seed)
    model = MobileNetV2ish() if name == "mobilenetv2" else ResNetish()
    for m in model.modules():  # trained-looking BatchNorm statistics, so folding is not trivially exact
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    classifier = model.classifier if name == "mobilenetv2" else model.fc
    return model, Structure(torch.zeros(1, 3, 32, 32), ignored=(classifier,))


def onnx_bytes(model: nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buf, dynamo=False, input_names=["input"], dynamic_axes={"input": {0: "b"}})
    return buf.getvalue()


ARCHITECTURES = ["mobilenetv2", "resnet"]


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("rule", [UnitRule(), UnitRule("bn-scale", "global")], ids=["l2-layer", "bn-scale-global"])
def test_prune_shrink_fold_export_and_run_keep_the_outputs(name: str, rule: UnitRule) -> None:
    model, structure = build(name)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    dense_macs = count_flops(model, x[:1])
    for _ in range(2):
        prune_units(model, structure, 0.5, rule)
    counts = unit_counts(model, structure)
    alive, total = sum(a for a, _ in counts.values()), sum(t for _, t in counts.values())
    assert 0.2 <= alive / total <= 0.3 + 0.1 * (rule.scope == "global")  # 1 - 0.5^2, within rounding
    with torch.no_grad():
        masked = model(x)
        small = shrink(model, structure)
        torch.testing.assert_close(small(x), masked, rtol=1e-4, atol=1e-4)
        assert sum(p.numel() for p in small.parameters()) < 0.5 * sum(p.numel() for p in model.parameters())
        assert count_flops(small, x[:1]) < 0.5 * dense_macs
        ready = fold_batchnorm(small)
        assert not has_batchnorm(ready)
        torch.testing.assert_close(ready(x), masked, rtol=1e-4, atol=1e-4)
    got = ort_runner(ort_session(onnx_bytes(ready, x[:1])))(x)
    np.testing.assert_allclose(np.asarray(got), masked.numpy(), rtol=1e-4, atol=1e-4)


def test_resnet_channels_shrink_on_both_sides_of_every_add() -> None:
    model, structure = build("resnet")
    prune_units(model, structure, 0.5)
    small = shrink(model, structure)
    for block in small.layers:
        out = block.body[1][0].out_channels
        shortcut = block.shortcut[0].out_channels if isinstance(block.shortcut, nn.Sequential) else None
        assert shortcut in (None, out)  # the residual's two branches stay the same width
    assert small.stem[0].out_channels == small.layers[0].body[1][0].out_channels  # identity shortcut: coupled
    assert small.stem[0].out_channels < 16


def test_mobilenet_depthwise_convs_keep_groups_equal_to_channels() -> None:
    model, structure = build("mobilenetv2")
    prune_units(model, structure, 0.5)
    small = shrink(model, structure)
    depthwise = [m for m in small.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_rewound_survivors_are_their_initial_values(name: str) -> None:
    model, structure = build(name)
    init = initial_state(model)
    with torch.no_grad():  # stands in for training
        for p in model.parameters():
            p.mul_(1.5)
    prune_units(model, structure, 0.5)
    rewind(model, init)
    plain = remove_reparametrization(model)
    for pname, value in plain.named_parameters():
        alive = value != 0
        torch.testing.assert_close(value[alive], init[pname][alive], rtol=0, atol=0)


def test_the_engine_works_under_inference_mode_as_deployment_calls_it() -> None:
    model, structure = build("resnet")
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        prune_units(model, structure, 0.5)
        small = shrink(model, structure)
        torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-4)


def test_a_model_deployed_under_inference_mode_still_shrinks() -> None:
    """Deployment may run under torch.inference_mode: its tensors cannot be traced until copied."""
    from prunelib.families.cnn.family import CnnFamily
    from prunelib.families.cnn.models import build_model

    family = CnnFamily()
    model = build_model("resnet8", 10, 0)
    family.structured_step(model, 0.5, 0)
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        small = family.deploy(model, structured=True)
        torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-4)
