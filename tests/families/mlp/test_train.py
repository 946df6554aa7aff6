"""Training and evaluation: seeded and repeatable, masks respected, RNG untouched; quiet progress bars."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
import torch
from torch import nn

from prunelib.families.mlp.config import TrainConfig
from prunelib.families.mlp.data import Split, Splits
from prunelib.families.mlp.models import MLP, ModelSpec
from prunelib.families.mlp.train import evaluate, init_model, predict, train
from prunelib.progress import progress
from prunelib.pruning.criteria import magnitude_prune, named_masks
from prunelib.pruning.params import linear_and_conv_weights

SPEC = ModelSpec("lenet300", 12, 3)
QUICK = TrainConfig(epochs=2, batch_size=16, lr=1e-2)


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_init_model_is_seeded_and_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a, b, c = init_model(SPEC, 0), init_model(SPEC, 0), init_model(SPEC, 1)
    assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(a, MLP)
    assert same(params(a), params(b)) and not same(params(a), params(c))


def test_training_is_repeatable_per_seed(make_splits: Callable[..., Splits]) -> None:
    data = make_splits(n=80).train
    state = torch.get_rng_state()
    runs = [params(train(init_model(SPEC, 0), data, QUICK, seed=s)) for s in (0, 0, 1)]
    assert torch.equal(torch.get_rng_state(), state)
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])  # another batch order
    assert not same(runs[0], params(init_model(SPEC, 0)))


def test_train_returns_the_model_in_eval_mode_and_zero_epochs_change_nothing(
    make_splits: Callable[..., Splits],
) -> None:
    model = init_model(SPEC, 0)
    before = params(model)
    model.train()
    assert train(model, make_splits().train, TrainConfig(epochs=0), seed=0) is model
    assert not model.training and same(params(model), before)


def test_pruned_weights_stay_zero_through_training(make_splits: Callable[..., Splits]) -> None:
    model = init_model(SPEC, 0)
    magnitude_prune(linear_and_conv_weights(model), 0.7)
    masks = named_masks(model)
    train(model, make_splits(n=80).train, TrainConfig(epochs=2, batch_size=8, lr=1e-2, weight_decay=1e-3), seed=0)
    assert all(torch.equal(named_masks(model)[k], m) for k, m in masks.items())
    for module, _name in linear_and_conv_weights(model):
        w = module.weight_orig.detach() * module.weight_mask
        assert bool((w[module.weight_mask == 0] == 0).all())
        assert int((module.weight_orig.grad[module.weight_mask == 0] != 0).sum()) == 0


def test_training_learns_a_separable_problem(make_splits: Callable[..., Splits]) -> None:
    data = make_splits(n=256, features=8, classes=2)
    model = init_model(ModelSpec("lenet300", 8, 2), 0)
    train(model, data.train, TrainConfig(epochs=15, batch_size=32, lr=3e-3), seed=0)
    assert evaluate(model, data.train) > 0.9 and evaluate(model, data.test) > 0.75


def test_trained_lenet_beats_chance_by_far_on_mnist5k(trained_lenet, mnist5k: Splits) -> None:
    model, _ = trained_lenet
    assert evaluate(model, mnist5k.test) > 0.85


def test_evaluate_is_the_fraction_correct(make_splits: Callable[..., Splits]) -> None:
    data = make_splits(n=64).test
    model = init_model(SPEC, 3)
    pred = predict(model, data.x, batch_size=5)
    assert torch.equal(pred, model(data.x).argmax(1))
    assert evaluate(model, data) == pytest.approx(float((pred == data.y).float().mean()))
    flipped = Split(data.x, pred)
    assert evaluate(model, flipped) == 1.0
    with pytest.raises(ValueError, match="empty split"):
        evaluate(model, Split(data.x[:0], data.y[:0]))


def test_progress_is_silent_off_a_terminal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert list(progress(range(3), desc="quiet", total=3)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert list(progress(iter("ab"), desc="loud", total=2)) == ["a", "b"]
    assert "loud" in capsys.readouterr().err
