"""DS-CNN training: time shifts, seeded determinism, pruned weights that stay zero, accuracy."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn.utils import prune

from prunelib.families.kws.models import build_model
from prunelib.families.kws.train import Hparams, accuracy, predict, time_shift, train
from tests.families.kws.fake import synthetic

FAST = Hparams(epochs=1, retrain_epochs=1, batch_size=16, shift=3)


def test_time_shift_moves_frames_and_fills_silence() -> None:
    x = torch.arange(2 * 6 * 2, dtype=torch.float32).reshape(2, 1, 6, 2)
    silence = torch.tensor([-1.0, -2.0])
    out = time_shift(x, silence, torch.tensor([2, -1]))
    assert torch.equal(out[0, 0, 2:], x[0, 0, :4]) and torch.equal(out[0, 0, :2], silence.expand(2, 2))
    assert torch.equal(out[1, 0, :5], x[1, 0, 1:]) and torch.equal(out[1, 0, 5], silence)
    assert time_shift(x, silence, torch.zeros(2, dtype=torch.long)) is x


def test_hparams_are_validated() -> None:
    for bad in ({"epochs": -1}, {"batch_size": 0}, {"lr": 0.0}, {"shift": -1}, {"weight_decay": -1.0}):
        with pytest.raises(ValueError):
            Hparams(**bad)


def trained(seed: int, hp: Hparams = FAST) -> dict[str, torch.Tensor]:
    data = synthetic(48)
    model = build_model("ds-cnn-mini", data.input_shape, 0)
    train(model, data.train_x, data.train_y, data.silence, hp, hp.epochs, seed)
    assert not model.training
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_is_deterministic_given_the_seed() -> None:
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    a, b, c = trained(0), trained(0), trained(1)
    assert torch.equal(torch.random.get_rng_state(), before), "the caller's RNG state is restored"
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_pruned_weights_stay_zero_through_training() -> None:
    data = synthetic(48)
    model = build_model("ds-cnn-mini", data.input_shape, 0)
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    for layer in layers:
        prune.random_unstructured(layer, "weight", amount=0.5)
    masks = [layer.weight_mask.clone() for layer in layers]
    train(model, data.train_x, data.train_y, data.silence, dataclasses.replace(FAST, epochs=2), 2, 0)
    for layer, mask in zip(layers, masks):
        assert torch.equal(layer.weight_mask, mask)
        assert torch.all(layer.weight[mask == 0] == 0)
        assert not torch.equal(layer.weight_orig[mask == 1], layer.weight_orig[mask == 1] * 0)


def test_training_learns_a_separable_problem() -> None:
    data = synthetic(200, seed=1)
    means = torch.randn(10, 1, 49, 10, generator=torch.Generator().manual_seed(2)) * 2
    x = data.train_x * 0.3 + means[data.train_y]
    model = build_model("ds-cnn-mini", data.input_shape, 0)
    before = accuracy(model, x, data.train_y)
    train(model, x, data.train_y, data.silence, Hparams(epochs=12, batch_size=32, shift=0), 12, 0)
    assert accuracy(model, x, data.train_y) > max(0.5, before)


def test_predict_and_accuracy() -> None:
    data = synthetic(20)
    model = build_model("ds-cnn-mini", data.input_shape, 0)
    assert predict(model, data.test_x, batch_size=3).shape == (10,)
    assert 0.0 <= accuracy(model, data.test_x, data.test_y) <= 1.0
    with pytest.raises(ValueError, match="empty"):
        accuracy(model, data.test_x[:0], data.test_y[:0])
