"""Pruning: criteria by name, exact counts under ties, monotone binary masks, magnitude order, rewinding.

The properties are those open_lth's tests check, stated over drawn layer widths, amounts, seeds
and step counts, with weights quantised to few values so ties happen on purpose.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from prunelib.families.mlp.config import TrainConfig
from prunelib.families.mlp.data import Split
from prunelib.families.mlp.models import ModelSpec, build_model
from prunelib.families.mlp.train import train
from prunelib.pruning.criteria import (
    CRITERIA,
    get_criterion,
    initial_state,
    layerwise_prune,
    magnitude_prune,
    named_masks,
    random_prune,
    refresh_masked,
    remove_reparametrization,
    rewind,
)
from prunelib.pruning.params import effective_parameters, linear_and_conv_weights
from prunelib.pruning.sparsity import prunable_names

PROPERTY = settings(max_examples=30, deadline=None)
widths_st = st.lists(st.integers(1, 8), min_size=2, max_size=4)
levels_st = st.sampled_from([None, 1, 2, 3])  # None: continuous; 1: every magnitude equal
amount_st = st.floats(0.01, 0.99)
steps_st = st.integers(1, 5)
seed_st = st.integers(0, 2**16)
criterion_st = st.sampled_from(sorted(CRITERIA))


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every prunable parameter's mask, ones where not pruned yet."""
    found = named_masks(model)
    weights = dict(effective_parameters(model))
    return {n: found.get(n, torch.ones_like(weights[n])) for n in prunable_names(model)}


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    eff = dict(effective_parameters(model))
    return {n: eff[n] for n in prunable_names(model)}


def perturb(model: nn.Module, seed: int) -> None:
    """Change every weight in place as an optimizer step would (masks untouched)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module, name in linear_and_conv_weights(model):
            param = getattr(module, f"{name}_orig", None)
            param = param if param is not None else getattr(module, name)
            param.mul_(torch.rand(param.shape, generator=gen) * 4)


def tiny_split(model: nn.Sequential, n: int, seed: int) -> Split:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, model[0].in_features, generator=gen)
    return Split(x, torch.randint(0, model[-1].out_features, (n,), generator=gen))


# ---------------------------------------------------------------- names and validation
def test_criteria_by_name() -> None:
    assert get_criterion("magnitude") is magnitude_prune
    assert get_criterion("layerwise") is layerwise_prune
    assert get_criterion("random") is random_prune
    with pytest.raises(ValueError, match=r"unknown pruning criterion 'l2'.*magnitude"):
        get_criterion("l2")


@pytest.mark.parametrize("criterion", sorted(CRITERIA))
@pytest.mark.parametrize("amount", [0.0, 1.0, -0.1, 1.2, 0])
def test_amount_outside_0_1_is_rejected_before_anything_changes(
    make_mlp: Callable[..., nn.Sequential], criterion: str, amount: float
) -> None:
    model = make_mlp((4, 3, 2))
    with pytest.raises(ValueError, match="amount"):
        get_criterion(criterion)(linear_and_conv_weights(model), amount, 0)
    assert named_masks(model) == {}


def test_global_and_layerwise_counts_differ() -> None:
    small, big = nn.Linear(10, 1), nn.Linear(10, 1)
    with torch.no_grad():
        small.weight.fill_(0.01)
        big.weight.fill_(1.0)
    magnitude_prune([(small, "weight"), (big, "weight")], 0.5)
    assert int(small.weight_mask.sum()) == 0 and int(big.weight_mask.sum()) == 10
    small2, big2 = nn.Linear(10, 1), nn.Linear(10, 1)
    with torch.no_grad():
        small2.weight.fill_(0.01)
        big2.weight.fill_(1.0)
    layerwise_prune([(small2, "weight"), (big2, "weight")], 0.5)
    assert int(small2.weight_mask.sum()) == 5 and int(big2.weight_mask.sum()) == 5


def test_random_prune_is_seeded_and_leaves_the_global_rng_alone(make_mlp: Callable[..., nn.Sequential]) -> None:
    models = [make_mlp((6, 5, 4), levels=1) for _ in range(3)]
    state = torch.get_rng_state()
    for model, seed in zip(models, (1, 1, 2)):
        random_prune(linear_and_conv_weights(model), 0.4, seed)
    assert torch.equal(torch.get_rng_state(), state)
    a, b, c = (named_masks(m) for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_named_masks_use_plain_names_and_are_copies(make_mlp: Callable[..., nn.Sequential]) -> None:
    model = make_mlp((4, 3, 2))
    magnitude_prune(linear_and_conv_weights(model), 0.5)
    masks = named_masks(model)
    assert sorted(masks) == ["0.weight", "2.weight"]
    masks["0.weight"].zero_()
    assert int(model[0].weight_mask.sum()) > 0


# ---------------------------------------------------------------- mask properties
@PROPERTY
@given(widths_st, levels_st, amount_st, steps_st, seed_st, criterion_st, st.booleans())
@example([3, 2], 1, 0.5, 5, 0, "magnitude", False)  # all magnitudes tied, down to no weights
def test_masks_are_binary_monotone_and_prune_exactly_round_amount_times_remaining(
    make_mlp: Callable[..., nn.Sequential],
    widths: list[int],
    levels: int | None,
    amount: float,
    steps: int,
    seed: int,
    criterion: str,
    trained: bool,
) -> None:
    model = make_mlp(tuple(widths), seed, levels)
    prune_step = get_criterion(criterion)
    before = masks_of(model)
    for step in range(steps):
        if trained:
            perturb(model, seed + step)
        prune_step(linear_and_conv_weights(model), amount, seed + step)
        after = masks_of(model)
        for name, mask in after.items():
            assert mask.dtype == before[name].dtype
            assert bool(((mask == 0) | (mask == 1)).all()), f"{name}: mask is not binary"
            assert bool((mask <= before[name]).all()), f"{name}: a pruned weight came back"
        if criterion == "layerwise":
            for name in after:
                remaining = int(before[name].sum())
                assert remaining - int(after[name].sum()) == round(amount * remaining), name
        else:
            remaining = sum(int(m.sum()) for m in before.values())
            assert remaining - sum(int(m.sum()) for m in after.values()) == round(amount * remaining)
        # the forward pass sees exactly the masked weights
        for name, w in weights_of(model).items():
            assert bool((w[after[name] == 0] == 0).all())
        before = after


@PROPERTY
@given(widths_st, levels_st, amount_st, steps_st, seed_st, st.sampled_from(["magnitude", "layerwise"]), st.booleans())
def test_every_pruned_magnitude_is_at_most_every_kept_one(
    make_mlp: Callable[..., nn.Sequential],
    widths: list[int],
    levels: int | None,
    amount: float,
    steps: int,
    seed: int,
    criterion: str,
    trained: bool,
) -> None:
    """Per step, among the weights remaining before it: globally for magnitude, per parameter for layerwise."""
    model = make_mlp(tuple(widths), seed, levels)
    for step in range(steps):
        if trained:
            perturb(model, seed + step)  # the weights scored are today's, not those of the last forward
        masks, weights = masks_of(model), weights_of(model)
        get_criterion(criterion)(linear_and_conv_weights(model), amount, seed)
        after = masks_of(model)
        groups = [list(masks)] if criterion == "magnitude" else [[n] for n in masks]
        for names in groups:
            pruned = torch.cat([weights[n][(masks[n] == 1) & (after[n] == 0)].abs() for n in names])
            kept = torch.cat([weights[n][after[n] == 1].abs() for n in names])
            if len(pruned) and len(kept):
                assert float(pruned.max()) <= float(kept.min())


def test_magnitude_scores_the_current_weights_after_training(make_mlp: Callable[..., nn.Sequential]) -> None:
    """torch's global pruning reads the ``weight`` cached at the last forward; an optimizer step makes it stale."""
    model = make_mlp((6, 5))
    magnitude_prune(linear_and_conv_weights(model), 0.3)
    train(model, tiny_split(model, 16, 0), TrainConfig(epochs=3, batch_size=4, lr=0.5), seed=0)
    weights = weights_of(model)["0.weight"].abs()
    survivors = model[0].weight_mask == 1
    magnitude_prune(linear_and_conv_weights(model), 0.5)
    newly = survivors & (model[0].weight_mask == 0)
    assert float(weights[newly].max()) <= float(weights[model[0].weight_mask == 1].min())


# ---------------------------------------------------------------- reparametrization
def test_remove_reparametrization_returns_a_plain_copy(make_mlp: Callable[..., nn.Sequential]) -> None:
    model = make_mlp((5, 4, 3))
    magnitude_prune(linear_and_conv_weights(model), 0.5)
    dense = remove_reparametrization(model)
    assert dense is not model
    assert named_masks(dense) == {} and not any(n.endswith("_orig") for n, _ in dense.named_parameters())
    assert sorted(named_masks(model)) == ["0.weight", "2.weight"]  # the original keeps its masks
    x = torch.randn(7, 5)
    torch.testing.assert_close(dense(x), model(x), rtol=0, atol=0)
    orig, plain = dict(effective_parameters(model)), dict(effective_parameters(dense))
    assert all(torch.equal(orig[k], plain[k]) for k in orig)


def test_refresh_masked_makes_the_cached_weight_current_and_copyable(make_mlp: Callable[..., nn.Sequential]) -> None:
    model = make_mlp((4, 3))
    magnitude_prune(linear_and_conv_weights(model), 0.5)
    model(torch.randn(2, 4)).sum().backward()  # cached weight now carries autograd history
    with torch.no_grad():
        model[0].weight_orig.add_(1.0)
    refresh_masked(model)
    assert not model[0].weight.requires_grad
    assert torch.equal(model[0].weight, model[0].weight_orig.detach() * model[0].weight_mask)
    copy.deepcopy(model)


# ---------------------------------------------------------------- rewinding
def test_initial_state_is_a_detached_copy_by_plain_name(make_mlp: Callable[..., nn.Sequential]) -> None:
    model = make_mlp((4, 3))
    magnitude_prune(linear_and_conv_weights(model), 0.5)
    init = initial_state(model)
    assert sorted(init) == ["0.bias", "0.weight"]
    assert torch.equal(init["0.weight"], model[0].weight_orig.detach() * model[0].weight_mask)
    init["0.bias"].add_(1.0)
    assert not torch.equal(init["0.bias"], model[0].bias)


@PROPERTY
@given(widths_st, levels_st, amount_st, st.integers(1, 3), seed_st, criterion_st)
def test_rewinding_restores_survivors_exactly_and_keeps_pruned_at_zero(
    make_mlp: Callable[..., nn.Sequential],
    widths: list[int],
    levels: int | None,
    amount: float,
    steps: int,
    seed: int,
    criterion: str,
) -> None:
    model = make_mlp(tuple(widths), seed, levels)
    init = initial_state(model)
    data = tiny_split(model, 6, seed)
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.05)
    for step in range(steps):
        train(model, data, cfg, seed + step)
        get_criterion(criterion)(linear_and_conv_weights(model), amount, seed + step)
        masks = masks_of(model)
        rewind(model, init)
        assert all(torch.equal(masks[n], m) for n, m in masks_of(model).items()), "rewind changed a mask"
        effective = dict(effective_parameters(model))
        for name, value in init.items():
            if name in masks:
                keep = masks[name] == 1
                assert torch.equal(effective[name][keep], value[keep])
                assert bool((effective[name][~keep] == 0).all())
            else:
                assert torch.equal(effective[name], value)
        for module, name in linear_and_conv_weights(model):  # the cached ``weight`` attribute agrees too
            if hasattr(module, f"{name}_mask"):
                assert torch.equal(
                    getattr(module, name), getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask")
                )


def test_rewinding_an_unpruned_model(make_mlp: Callable[..., nn.Sequential]) -> None:
    model = make_mlp((4, 3))
    init = initial_state(model)
    perturb(model, 1)
    rewind(model, init)
    assert all(torch.equal(t, init[n]) for n, t in effective_parameters(model))


def test_rewinding_with_weights_of_another_shape_names_the_parameter() -> None:
    lenet = build_model(ModelSpec("lenet300", 784, 10))
    other = initial_state(build_model(ModelSpec("mlp1m", 784, 10)))
    magnitude_prune(linear_and_conv_weights(lenet), 0.2)
    with pytest.raises(
        ValueError,
        match=r"initial weight 'layers\.0\.(weight|bias)' has shape \(1024,( 784)?\), the model has \(300,( 784)?\)",
    ):
        rewind(lenet, other)


def test_rewinding_with_weights_of_another_architecture_names_the_parameters() -> None:
    lenet = build_model(ModelSpec("lenet300", 64, 2))
    token = initial_state(build_model(ModelSpec("lenet300", 10, 2, vocab_size=30, embed_dim=64)))
    with pytest.raises(ValueError, match=r"unexpected \['embedding\.embedding\.weight'\]"):
        rewind(lenet, token)
    partial = initial_state(lenet)
    del partial["out.bias"]
    with pytest.raises(ValueError, match=r"missing \['out\.bias'\]"):
        rewind(lenet, partial)
