"""Which parameters exist as the forward pass sees them, and which ones pruning touches by default."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from prunelib.families.mlp.models import MLP
from prunelib.pruning.params import (
    WEIGHT_LAYERS,
    count_parameters,
    effective_parameters,
    linear_and_conv_weights,
    param_names,
)


class Mixed(nn.Module):
    """Every kind of layer once: embedding, convolutions, a norm, linears."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.conv1 = nn.Conv1d(4, 3, 2)
        self.conv2 = nn.Conv2d(1, 2, 3)
        self.conv3 = nn.Conv3d(1, 1, 1)
        self.norm = nn.LayerNorm(3)
        self.head = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1, bias=False))


def test_linear_and_conv_weights_in_module_order() -> None:
    model = Mixed()
    pairs = linear_and_conv_weights(model)
    assert all(name == "weight" for _, name in pairs)
    assert [m for m, _ in pairs] == [model.conv1, model.conv2, model.conv3, model.head[0], model.head[2]]
    assert param_names(model, pairs) == [
        "conv1.weight",
        "conv2.weight",
        "conv3.weight",
        "head.0.weight",
        "head.2.weight",
    ]
    assert set(WEIGHT_LAYERS) == {nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d}


def test_embeddings_only_when_asked() -> None:
    model = Mixed()
    with_emb = linear_and_conv_weights(model, embeddings=True)
    assert [m for m, _ in with_emb][0] is model.embed
    assert len(with_emb) == len(linear_and_conv_weights(model)) + 1
    tokens = MLP(0, (4,), 2, vocab_size=12, embed_dim=3)
    assert param_names(tokens, linear_and_conv_weights(tokens, embeddings=True)) == [
        "embedding.embedding.weight",
        "layers.0.weight",
        "out.weight",
    ]
    assert "embedding.embedding.weight" not in param_names(tokens, linear_and_conv_weights(tokens))


def test_effective_parameters_are_the_masked_values_under_plain_names() -> None:
    torch.manual_seed(0)
    model = MLP(5, (4,), 3)
    before = [name for name, _ in effective_parameters(model)]
    assert before == ["layers.0.weight", "layers.0.bias", "out.weight", "out.bias"]
    prune.l1_unstructured(model.layers[0], "weight", amount=0.5)
    with torch.no_grad():  # the cached .weight goes stale; the effective value must not
        model.layers[0].weight_orig.mul_(2.0)
    eff = dict(effective_parameters(model))
    assert sorted(eff) == sorted(before)
    expected = model.layers[0].weight_orig * model.layers[0].weight_mask
    assert torch.equal(eff["layers.0.weight"], expected)
    assert int((eff["layers.0.weight"] == 0).sum()) == 10
    assert all(not t.requires_grad for t in eff.values())
    prune.remove(model.layers[0], "weight")
    assert sorted(name for name, _ in effective_parameters(model)) == sorted(before)


def test_count_parameters_counts_effective_weights_not_masks() -> None:
    model = Mixed()
    total = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == total
    prune.global_unstructured(linear_and_conv_weights(model), pruning_method=prune.L1Unstructured, amount=0.5)
    assert count_parameters(model) == total  # masks are buffers, pruned weights still count
    assert count_parameters(MLP(784, (300, 100), 10)) == 266_610


def test_param_names_of_the_root_module_and_foreign_modules() -> None:
    layer = nn.Linear(2, 2)
    assert param_names(layer, [(layer, "weight"), (layer, "bias")]) == ["weight", "bias"]
    with pytest.raises(KeyError):
        param_names(layer, [(nn.Linear(2, 2), "weight")])
