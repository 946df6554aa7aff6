"""Sparsity accounting: two named sparsities, weighted means, invariance under prune.remove, 1-(1-a)^k."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunelib.families.mlp.models import ModelSpec, build_model
from prunelib.pruning.criteria import CRITERIA, get_criterion, named_masks, remove_reparametrization
from prunelib.pruning.params import count_parameters, effective_parameters, linear_and_conv_weights
from prunelib.pruning.sparsity import count_nonzero, expected_sparsity, prunable_names, sparsity_report

PROPERTY = settings(max_examples=30, deadline=None)
widths_st = st.lists(st.integers(1, 8), min_size=2, max_size=4)
levels_st = st.sampled_from([None, 1, 2, 3])
amount_st = st.floats(0.01, 0.99)
seed_st = st.integers(0, 2**16)
criterion_st = st.sampled_from(sorted(CRITERIA))


def pruned_mlp(make_mlp: Callable[..., nn.Sequential], widths, levels, amount, steps, seed, criterion) -> nn.Sequential:
    model = make_mlp(tuple(widths), seed, levels)
    for step in range(steps):
        get_criterion(criterion)(linear_and_conv_weights(model), amount, seed + step)
    return model


def test_prunable_names_follow_prunable_parameters() -> None:
    model = build_model(ModelSpec("sst2-mlp", 5, 2, vocab_size=20, embed_dim=4))
    assert prunable_names(model) == ["layers.0.weight", "layers.2.weight", "out.weight"]
    assert prunable_names(nn.Linear(3, 2)) == ["weight"]


def test_dense_model_has_zero_sparsity_and_counts_every_parameter(make_mlp: Callable[..., nn.Sequential]) -> None:
    model = make_mlp((4, 3, 2), levels=2)
    report = sparsity_report(model)
    assert (report.sparsity, report.sparsity_model) == (0.0, 0.0)
    assert report.prunable_total == 4 * 3 + 3 * 2
    assert report.model_total == count_parameters(model) == 4 * 3 + 3 + 3 * 2 + 2
    assert set(report.per_parameter) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert count_nonzero(model) == report.model_total


def test_the_two_sparsities_count_different_zeros(make_mlp: Callable[..., nn.Sequential]) -> None:
    """``sparsity`` counts zero prunable weights; ``sparsity_model`` zeros of every parameter."""
    model = make_mlp((4, 3), levels=2)
    with torch.no_grad():
        model[0].bias.zero_()  # zeros outside the prunable weights
        model[0].weight[0, :2] = 0.0  # zeros never pruned still count
    report = sparsity_report(model)
    assert (report.prunable_zeros, report.prunable_total) == (2, 12)
    assert (report.model_zeros, report.model_total) == (5, 15)
    assert report.sparsity == pytest.approx(2 / 12) and report.sparsity_model == pytest.approx(5 / 15)
    assert report.per_parameter == {"0.weight": 2 / 12, "0.bias": 1.0}
    assert count_nonzero(model) == 10


def test_an_empty_model_has_zero_sparsity() -> None:
    report = sparsity_report(nn.ReLU())
    assert (report.sparsity, report.sparsity_model, report.model_total) == (0.0, 0.0, 0)


@pytest.mark.parametrize("amount, k, expected", [(0.2, 0, 0.0), (0.2, 1, 0.2), (0.5, 2, 0.75), (0.33, 3, 1 - 0.67**3)])
def test_expected_sparsity_values(amount: float, k: int, expected: float) -> None:
    assert expected_sparsity(amount, k) == pytest.approx(expected)


@PROPERTY
@given(amount_st, st.integers(0, 30))
def test_expected_sparsity_grows_towards_one(amount: float, k: int) -> None:
    now, after = expected_sparsity(amount, k), expected_sparsity(amount, k + 1)
    assert 0.0 <= now <= after <= 1.0
    # step k+1 removes `amount` of the density (1-a)^k still left
    assert math.isclose(after - now, amount * (1 - amount) ** k, rel_tol=1e-9, abs_tol=1e-12)


@PROPERTY
@given(widths_st, levels_st, amount_st, st.integers(0, 5), seed_st, criterion_st)
def test_global_sparsity_is_the_weighted_mean_of_per_parameter_sparsity(
    make_mlp: Callable[..., nn.Sequential], widths, levels, amount, steps, seed, criterion
) -> None:
    model = pruned_mlp(make_mlp, widths, levels, amount, steps, seed, criterion)
    report = sparsity_report(model)
    sizes = {n: t.numel() for n, t in effective_parameters(model)}
    prunable = prunable_names(model)
    weighted = sum(report.per_parameter[n] * sizes[n] for n in prunable) / sum(sizes[n] for n in prunable)
    assert math.isclose(report.sparsity, weighted, rel_tol=1e-12, abs_tol=1e-12)
    overall = sum(report.per_parameter[n] * sizes[n] for n in sizes) / sum(sizes.values())
    assert math.isclose(report.sparsity_model, overall, rel_tol=1e-12, abs_tol=1e-12)
    masks = named_masks(model)
    if masks:  # here no weight is zero unless pruned, so zeros are exactly the pruned entries
        assert report.prunable_zeros == sum(int((m == 0).sum()) for m in masks.values())


@PROPERTY
@given(widths_st, levels_st, amount_st, st.integers(0, 5), seed_st, criterion_st)
def test_sparsity_is_unchanged_by_remove_reparametrization(
    make_mlp: Callable[..., nn.Sequential], widths, levels, amount, steps, seed, criterion
) -> None:
    model = pruned_mlp(make_mlp, widths, levels, amount, steps, seed, criterion)
    masks = named_masks(model)
    before = sparsity_report(model)
    dense = remove_reparametrization(model)
    after = sparsity_report(dense)
    assert after == before  # counts, both sparsities and every per-parameter figure
    assert (after.sparsity, after.sparsity_model) == (before.sparsity, before.sparsity_model)
    assert count_nonzero(dense) == count_nonzero(model)
    again = named_masks(model)  # measuring and removing on a copy never touch the model
    assert sorted(again) == sorted(masks) and all(torch.equal(again[k], masks[k]) for k in masks)


@PROPERTY
@given(widths_st, levels_st, amount_st, st.integers(1, 5), seed_st, criterion_st)
def test_expected_sparsity_matches_repeated_pruning_within_rounding(
    make_mlp: Callable[..., nn.Sequential], widths, levels, amount, steps, seed, criterion
) -> None:
    """Each step rounds once (per parameter for layerwise): at most one weight off per step per count."""
    model = make_mlp(tuple(widths), seed, levels)
    total = sparsity_report(model).prunable_total
    counts = 1 if criterion != "layerwise" else len(linear_and_conv_weights(model))
    for k in range(1, steps + 1):
        get_criterion(criterion)(linear_and_conv_weights(model), amount, seed + k)
        pruned = sparsity_report(model).prunable_zeros
        assert abs(pruned - expected_sparsity(amount, k) * total) <= k * counts
