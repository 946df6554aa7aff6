"""Training: above chance on a tiny subset, deterministic given the seed, masks (unstructured and structured) kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunelib.families.cnn.config import Hparams
from prunelib.families.cnn.data import Splits, load_images, subset
from prunelib.families.cnn.family import CnnFamily
from prunelib.families.cnn.models import build_model
from prunelib.families.cnn.train import evaluate, train
from prunelib.pruning.criteria import magnitude_prune

TINY = Hparams(epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def tiny() -> Splits:
    """300 training and 300 test images of MNIST-5k (seed 0)."""
    return subset(load_images("mnist5k", None, 0), 300, 300, seed=0)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_moves_accuracy_well_above_chance(tiny: Splits) -> None:
    model = build_model("lenet5", 10, 0)
    before = evaluate(model, tiny.test)
    train(model, tiny.train, Hparams(epochs=3, batch_size=32), seed=0)
    after = evaluate(model, tiny.test)
    assert not model.training
    assert after > 0.6 and after > before + 0.3, (before, after)  # chance: 0.1


@pytest.mark.parametrize("name", ["lenet5", "resnet8"])
def test_training_is_deterministic_given_the_seed(tiny: Splits, name: str) -> None:
    small = subset(tiny, 64, 8, seed=0)
    runs = []
    for seed in (0, 0, 1):
        model = build_model(name, 10, 0)
        train(model, small.train, TINY, seed)
        runs.append(state(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])  # BatchNorm statistics included
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in runs[0])  # another batch order


def test_training_leaves_the_global_rng_and_zero_epochs_leave_the_model(tiny: Splits) -> None:
    model = build_model("lenet5", 10, 0)
    before = state(model)
    torch.manual_seed(5)
    rng = torch.random.get_rng_state()
    train(model, tiny.train, Hparams(epochs=0), seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    train(model, subset(tiny, 32, 8, 0).train, TINY, seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_pruned_weights_stay_zero_unstructured_and_structured(tiny: Splits) -> None:
    family, small = CnnFamily(), subset(tiny, 64, 8, seed=0)
    model = build_model("resnet8", 10, 0)
    magnitude_prune(family.prunable(model), 0.6, 0)
    family.structured_step(model, 0.5, 0)  # masks on conv rows, BatchNorm scales and shifts, next inputs
    masks = {n: b.clone() for n, b in model.named_buffers() if n.endswith("_mask")}
    assert any(n.endswith("bn1.weight_mask") for n in masks)
    train(model, small.train, TINY, seed=0)
    for name, mask in masks.items():
        owner, _, buffer = name.rpartition(".")
        value = getattr(model.get_submodule(owner), buffer.removesuffix("_mask"))
        assert torch.all(value[mask == 0] == 0), name
