"""The CNN family's models: LeNet-5 and a ResNet-8 for 1x28x28 images, built from a seed.

Both end in a Linear called ``classifier`` (the layer structured pruning keeps whole).

* ``lenet5``: LeNet-5 (LeCun et al. 1998) for 28x28 inputs: conv 5x5 (6, padding 2) - BN - ReLU -
  max-pool - conv 5x5 (16) - BN - ReLU - max-pool - 400-120-84-10 Linear layers; 61,706 weights
  and biases plus 44 BatchNorm values, 0.42 M multiply-adds per image.
* ``resnet8``: the CIFAR ResNet of He et al. 2016 with one basic block per stage (16, 32, 64
  channels at 28, 14, 7 pixels), BatchNorm after every conv; the first block adds its input
  unchanged (identity shortcut), the other two through a strided 1x1 conv and BatchNorm
  (downsample shortcut). 77,754 parameters (672 of them in BatchNorm), 9.35 M multiply-adds per image. The adds couple the
  channels of both branches, which Torch-Pruning's dependency graph prunes together.
"""

from __future__ import annotations

import torch
from torch import nn

#: The model presets, the default first.
PRESETS = ("lenet5", "resnet8")
#: Channels x height x width of every input.
IMAGE_SHAPE = (1, 28, 28)


class LeNet5(nn.Module):
    """LeNet-5 with BatchNorm after each conv: two conv-pool stages, then three Linear layers."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),  # 6 x 14 x 14
            nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 5 x 5
        )  # fmt: skip
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU())
        self.classifier = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(self.features(x)))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut: the identity, or a strided 1x1 conv and BN when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + self.shortcut(x))


class ResNet8(nn.Module):
    """A stem conv and three basic blocks (widths ``widths``; the last two halve the resolution), pooled, then a Linear."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        first, second, third = widths
        self.stem = nn.Sequential(nn.Conv2d(1, first, 3, 1, 1, bias=False), nn.BatchNorm2d(first), nn.ReLU())
        self.layer1 = BasicBlock(first, first, 1)  # identity shortcut
        self.layer2 = BasicBlock(first, second, 2)  # 1x1 downsample shortcut
        self.layer3 = BasicBlock(second, third, 2)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(third, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.layer3(self.layer2(self.layer1(self.stem(x))))))


def build_model(name: str, num_classes: int, seed: int) -> LeNet5 | ResNet8:
    """Preset ``name`` with weights drawn from ``seed`` (PyTorch's default init), in eval mode.

    The caller's global RNG state is left untouched. Raises ``ValueError`` naming the presets.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown CNN model {name!r}; choose one of {list(PRESETS)}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LeNet5(num_classes) if name == "lenet5" else ResNet8(num_classes)
    return model.eval()
