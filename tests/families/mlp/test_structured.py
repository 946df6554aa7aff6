"""The MLP's structured units: its hidden Linear layers, neuron counts, and exact physical shrinking.

Moved here from ``tests/pruning/test_structured.py`` (the MLP-specific shrink tests) plus the
helpers of :mod:`prunelib.families.mlp.structured` one by one.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from prunelib.families.mlp.models import MeanEmbedding
from prunelib.families.mlp.structured import (
    hidden_linears,
    hidden_parameters,
    neurons_remaining,
    shrink,
    structured_prune_step,
)
from prunelib.pruning.criteria import initial_state, rewind
from prunelib.pruning.neurons import alive_neurons, neuron_prune
from tests.pruning.test_structured import amounts, expected_widths, make_mlp, widths


# ---------------------------------------------------------------- hidden layers
@pytest.mark.parametrize(
    "model",
    [nn.Sequential(nn.Linear(3, 4)), nn.Linear(3, 4), None, "mlp"],
    ids=["Sequential", "Linear", "None", "str"],
)
def test_hidden_linears_rejects_a_non_mlp(model) -> None:
    with pytest.raises(TypeError, match=f"prunelib MLP, got {type(model).__name__}"):
        hidden_linears(model)
    with pytest.raises(TypeError):
        hidden_parameters(model)


def test_hidden_linears_are_the_hidden_layers_in_order() -> None:
    model = make_mlp(5, [7, 4, 2], 0)
    found = hidden_linears(model)
    assert [name for name, _ in found] == ["layers.0", "layers.2", "layers.4"]
    assert [m for _, m in found] == [model.layers[0], model.layers[2], model.layers[4]]
    assert all(model.get_submodule(name) is m for name, m in found)
    assert model.out not in [m for _, m in found]


def test_hidden_linears_of_an_mlp_without_hidden_layers_is_empty() -> None:
    model = make_mlp(5, [], 0)
    assert hidden_linears(model) == [] and hidden_parameters(model) == [] and neurons_remaining(model) == {}


def test_hidden_parameters_are_the_weights_of_the_hidden_layers() -> None:
    model = make_mlp(5, [7, 4], 0, vocab_size=11)
    params = hidden_parameters(model)
    assert params == [(model.layers[0], "weight"), (model.layers[2], "weight")]
    assert all(isinstance(m, nn.Linear) for m, _ in params)


def test_neurons_remaining_counts_alive_rows() -> None:
    model = make_mlp(5, [10, 6], 0)
    assert neurons_remaining(model) == {"layers.0": 10, "layers.2": 6}
    neuron_prune(hidden_parameters(model), 0.5)
    assert neurons_remaining(model) == {"layers.0": 5, "layers.2": 3}
    structured_prune_step(model, 0.5)  # the same step through the MLP's own entry point
    assert neurons_remaining(model) == {"layers.0": 3, "layers.2": 1}  # removes round(2.5) = 2 and round(1.5) = 2
    assert not hasattr(model.out, "weight_mask")  # the output layer never loses units


def test_neurons_remaining_judges_values_after_remove() -> None:
    model = make_mlp(5, [8], 0)
    structured_prune_step(model, 0.25)
    prune.remove(model.layers[0], "weight")
    prune.remove(model.layers[0], "bias")
    assert neurons_remaining(model) == {"layers.0": 6}
    dead = int((~alive_neurons(model.layers[0])).nonzero()[0])
    alive = int(alive_neurons(model.layers[0]).nonzero()[0])
    with torch.no_grad():
        model.layers[0].bias[dead] = 0.3  # a bias alone brings a neuron back to life
        model.layers[0].weight[alive].zero_()
        model.layers[0].bias[alive] = 0.0  # and zero row plus zero bias kills one
    assert neurons_remaining(model) == {"layers.0": 6}
    assert bool(alive_neurons(model.layers[0])[dead]) and not bool(alive_neurons(model.layers[0])[alive])


@settings(max_examples=25, deadline=None)
@given(hidden=widths, steps=amounts, seed=st.integers(0, 2**16))
def test_neurons_remaining_follows_the_counting_rule(hidden, steps, seed) -> None:
    model = make_mlp(4, hidden, seed)
    for a, expected in zip(steps, expected_widths(hidden, steps)):
        structured_prune_step(model, a)
        assert list(neurons_remaining(model).values()) == expected


# ---------------------------------------------------------------- shrink
@settings(max_examples=30, deadline=None)
@given(
    hidden=widths,
    steps=amounts,
    seed=st.integers(0, 2**16),
    in_features=st.integers(1, 8),
    batch=st.integers(1, 4),
    embed=st.booleans(),
    removed=st.booleans(),
)
def test_shrink_is_exact(hidden, steps, seed, in_features, batch, embed, removed) -> None:
    model = make_mlp(in_features, hidden, seed, vocab_size=20 if embed else 0)
    for a in steps:
        structured_prune_step(model, a)
    if removed:
        for m, name in hidden_parameters(model):
            prune.remove(m, name)
            prune.remove(m, "bias")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 20, (batch, 7), generator=gen) if embed else torch.randn(batch, in_features, generator=gen)
    state = copy.deepcopy(model.state_dict())
    small = shrink(model)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-6)
    assert [m.out_features for _, m in hidden_linears(small)] == list(neurons_remaining(model).values())
    assert list(neurons_remaining(model).values()) == expected_widths(hidden, steps)[-1]
    assert not any(hasattr(m, "weight_mask") for m in small.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # input untouched


def test_shrink_after_rewind_keeps_initial_survivors() -> None:
    """IMP: prune -> rewind (masks kept) -> shrink gives the initial weights of the survivors."""
    model = make_mlp(8, [16, 12], 1)
    init = initial_state(model)
    with torch.no_grad():  # stands in for training
        for p in model.parameters():
            p.add_(0.5)
    structured_prune_step(model, 0.5)
    model(torch.randn(1, 8))
    rewind(model, init)  # no forward after this: cached .weight attributes are stale
    keep = [alive_neurons(m) for _, m in hidden_linears(model)]
    assert [int(k.sum()) for k in keep] == [8, 6]
    small = shrink(model)
    torch.testing.assert_close(small.layers[0].weight, init["layers.0.weight"][keep[0]], rtol=0, atol=0)
    torch.testing.assert_close(small.layers[0].bias, init["layers.0.bias"][keep[0]], rtol=0, atol=0)
    torch.testing.assert_close(small.out.weight, init["out.weight"][:, keep[1]], rtol=0, atol=0)
    x = torch.randn(5, 8)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-6)
    structured_prune_step(model, 0.5)  # the schedule can go on pruning the rewound model
    assert list(neurons_remaining(model).values()) == [4, 3]


def test_fully_dead_layer_shrinks_to_one_unit() -> None:
    model = make_mlp(4, [5, 3], 2)
    with torch.no_grad():
        model.layers[2].weight.zero_()
        model.layers[2].bias.zero_()
    assert neurons_remaining(model) == {"layers.0": 5, "layers.2": 0}
    small = shrink(model)
    assert small.layers[2].out_features == 1
    x = torch.randn(3, 4)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-6)


def test_shrink_keeps_any_input_embedding() -> None:
    """The input side is copied whole, e.g. torch's EmbeddingBag in place of MeanEmbedding."""
    model = make_mlp(6, [10, 7], 3)
    model.embedding = nn.EmbeddingBag(20, 6, mode="mean", padding_idx=0)
    structured_prune_step(model, 0.6)
    tokens = torch.randint(0, 20, (4, 9), generator=torch.Generator().manual_seed(0))
    small = shrink(model)
    assert isinstance(small.embedding, nn.EmbeddingBag) and small.embedding is not model.embedding
    torch.testing.assert_close(small(tokens), model(tokens), rtol=0, atol=1e-6)


def test_shrink_of_a_fully_dead_layer_under_masks() -> None:
    """A layer whose every neuron is masked away (not zeroed by hand) still shrinks to one unit."""
    model = make_mlp(4, [6, 5], 4)
    mask = torch.zeros_like(model.layers[0].weight)
    prune.custom_from_mask(model.layers[0], "weight", mask)
    prune.custom_from_mask(model.layers[0], "bias", torch.zeros(6))
    assert neurons_remaining(model) == {"layers.0": 0, "layers.2": 5}
    small = shrink(model)
    assert [m.out_features for _, m in hidden_linears(small)] == [1, 5]
    assert torch.count_nonzero(small.layers[0].weight) == 0
    x = torch.randn(3, 4)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(small(x), small(torch.zeros_like(x)), rtol=0, atol=0)  # input no longer matters


def test_shrink_of_the_embedding_mlp() -> None:
    """vocab_size > 0: the MeanEmbedding is copied whole and token input gives the same logits."""
    model = make_mlp(0, [12, 8], 5, vocab_size=30)
    structured_prune_step(model, 0.5)
    small = shrink(model)
    assert isinstance(small.embedding, MeanEmbedding) and small.embedding is not model.embedding
    assert torch.equal(small.embedding.embedding.weight, model.embedding.embedding.weight)
    assert [m.out_features for _, m in hidden_linears(small)] == [6, 4]
    assert small.layers[0].in_features == 6  # embed_dim: the input side is untouched
    tokens = torch.randint(0, 30, (5, 9), generator=torch.Generator().manual_seed(1))
    tokens[:, 6:] = 0  # padding
    torch.testing.assert_close(small(tokens), model(tokens), rtol=0, atol=1e-6)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_shrink_without_hidden_layers_copies_the_pruned_output_layer() -> None:
    model = make_mlp(6, [], 6)
    prune.l1_unstructured(model.out, "weight", 0.5)
    small = shrink(model)
    assert not hasattr(small.out, "weight_mask") and len(small.layers) == 0
    assert torch.equal(small.out.weight, model.out.weight)
    x = torch.randn(4, 6)
    assert torch.equal(small(x), model(x))


def test_shrink_keeps_unstructured_zeros_dtype_and_mode() -> None:
    model = make_mlp(5, [9, 7], 7).double().train()
    prune.l1_unstructured(model.layers[0], "weight", 0.5)
    prune.l1_unstructured(model.out, "weight", 0.3)
    structured_prune_step(model, 0.3)
    small = shrink(model)
    assert small.training is True and shrink(model.eval()).training is False
    assert all(p.dtype == torch.float64 for p in small.parameters())
    keep = alive_neurons(model.layers[0])
    kept_rows = (model.layers[0].weight_orig * model.layers[0].weight_mask)[keep]
    assert torch.equal(small.layers[0].weight, kept_rows.detach())  # unstructured zeros stay zeros
    x = torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(small.eval()(x), model.eval()(x), rtol=0, atol=1e-12)
    params = sum(p.numel() for p in small.parameters())
    assert params < sum(p.numel() for p in model.parameters())


def test_shrink_returns_an_independent_model() -> None:
    model = make_mlp(4, [6], 8)
    structured_prune_step(model, 0.5)
    small = shrink(model)
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        for p in small.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
