"""Hand-written neuron pruning (SEW's structured units): the counting rule, mask invariants, ``shrink_pair``.

Every other family prunes units through Torch-Pruning (``tests/pruning/test_structured.py``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from prunelib.families.mlp.models import MLP
from prunelib.pruning.neurons import (
    L2NeuronStructured,
    alive_neurons,
    count_to_prune,
    effective_tensor,
    neuron_prune,
    rebuild_layer,
    shrink_pair,
)

widths = st.lists(st.integers(1, 24), min_size=1, max_size=3)
amounts = st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4)


def hidden_linears(model: MLP) -> list[tuple[str, nn.Linear]]:
    return [(f"layers.{i}", m) for i, m in enumerate(model.layers) if isinstance(m, nn.Linear)]


def hidden_step(model: MLP, amount: float) -> None:
    neuron_prune([(m, "weight") for _, m in hidden_linears(model)], amount)


def alive_counts(model: MLP) -> list[int]:
    return [int(alive_neurons(m).sum()) for _, m in hidden_linears(model)]


def make_mlp(in_features: int, hidden: list[int], seed: int, vocab_size: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(in_features, tuple(hidden), 3, vocab_size=vocab_size, embed_dim=6).eval()


def expected_widths(hidden: list[int], amounts: list[float]) -> list[list[int]]:
    """The rule from the module docstring, written out independently, step by step."""
    out, current = [], list(hidden)
    for a in amounts:
        current = [r - min(round(a * r), r - 1) for r in current]
        out.append(list(current))
    return out


def row_keys(module: nn.Linear) -> list[tuple[float, int]]:
    """(L2 norm of the effective row, index): the order in which rows are pruned."""
    w = module.weight_orig * module.weight_mask if hasattr(module, "weight_orig") else module.weight
    return [(float(n), i) for i, n in enumerate(torch.linalg.vector_norm(w.detach().double(), dim=1))]


def row_mask(module: nn.Linear) -> torch.Tensor:
    if not hasattr(module, "weight_mask"):
        return torch.ones(module.out_features, dtype=torch.bool)
    return module.weight_mask.any(dim=1)


@pytest.mark.parametrize(
    ("amount", "remaining", "expected"),
    [(0.5, 10, 5), (0.25, 10, 2), (0.35, 10, 4), (0.5, 5, 2), (0.5, 7, 4), (0.9, 3, 2), (0.99, 1, 0), (0.01, 10, 0)],
)
def test_count_to_prune_examples(amount: float, remaining: int, expected: int) -> None:
    # round half to even (2.5 -> 2, 3.5 -> 4), never the last neuron
    assert count_to_prune(amount, remaining) == expected


@pytest.mark.parametrize("amount", [0.0, 1.0, -0.1, 1.5, "0.5"])
def test_invalid_amount_raises(amount) -> None:
    with pytest.raises(ValueError, match="amount"):
        count_to_prune(amount, 10)
    with pytest.raises(ValueError, match="amount"):
        hidden_step(make_mlp(4, [5], 0), amount)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="remaining"):
        count_to_prune(0.5, 0)
    with pytest.raises(ValueError, match="'bias'"):
        neuron_prune([(nn.Linear(3, 4), "bias")], 0.5)


@settings(max_examples=40, deadline=None)
@given(hidden=widths, steps=amounts, levels_seed=st.integers(0, 2**16), in_features=st.integers(1, 6))
@example(hidden=[10], steps=[0.25, 0.5], levels_seed=0, in_features=3)  # 2.5 and 4.0: half to even
def test_exact_counts_masks_and_ranking(hidden, steps, levels_seed, in_features) -> None:
    """Per step: exact neuron count, binary monotone masks, bias follows rows, L2 order with
    the lower index pruned first among ties (rows are built with deliberately equal norms)."""
    model = make_mlp(in_features, hidden, 0)
    gen = torch.Generator().manual_seed(levels_seed)
    with torch.no_grad():
        for _, m in hidden_linears(model):
            levels = torch.randint(1, 4, (m.out_features, 1), generator=gen).float()  # many ties
            m.weight.copy_(levels.expand_as(m.weight))
            m.bias.fill_(0.1)
    expected = expected_widths(hidden, steps)
    previous = {name: row_mask(m) for name, m in hidden_linears(model)}
    for step, a in enumerate(steps):
        before = {name: row_keys(m) for name, m in hidden_linears(model)}
        hidden_step(model, a)
        assert alive_counts(model) == expected[step]
        assert not hasattr(model.out, "weight_mask") and not hasattr(model.out, "bias_mask")
        for name, m in hidden_linears(model):
            for mask in (m.weight_mask, m.bias_mask):
                assert set(mask.unique().tolist()) <= {0.0, 1.0}
            rows = row_mask(m)
            assert torch.equal(m.weight_mask, rows[:, None].float().expand_as(m.weight_mask))
            assert torch.equal(m.bias_mask.bool(), rows)
            assert not (rows & ~previous[name]).any(), "a pruned neuron came back"
            newly = (previous[name] & ~rows).nonzero().flatten().tolist()
            kept = rows.nonzero().flatten().tolist()
            if newly:
                assert max(before[name][i] for i in newly) < min(before[name][i] for i in kept)
            previous[name] = rows


def test_shrink_pair_conv1d_channels() -> None:
    """The general building block: drop channels between two Conv1d layers (speech models)."""
    torch.manual_seed(0)
    first, second = nn.Conv1d(3, 8, 3, padding=1), nn.Conv1d(8, 5, 3)
    keep = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1], dtype=torch.bool)
    prune.custom_from_mask(first, "weight", keep[:, None, None].float().expand_as(first.weight))
    prune.custom_from_mask(first, "bias", keep.float())
    assert torch.equal(alive_neurons(first), keep)
    new_first, new_second = shrink_pair(first, second, keep)
    assert (new_first.out_channels, new_second.in_channels) == (5, 5)
    x = torch.randn(2, 3, 11)
    torch.testing.assert_close(new_second(torch.relu(new_first(x))), second(torch.relu(first(x))), rtol=0, atol=1e-6)


def test_shrink_pair_validates() -> None:
    a, b = nn.Linear(3, 4), nn.Linear(4, 2)
    with pytest.raises(ValueError, match="keep"):
        shrink_pair(a, b, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        shrink_pair(a, b, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="4 outputs"):
        shrink_pair(a, nn.Linear(5, 2), [0])
    with pytest.raises(ValueError, match=r"\[7\]"):
        shrink_pair(a, b, [7])
    with pytest.raises(TypeError, match="Bilinear"):
        shrink_pair(nn.Bilinear(2, 2, 4), b, [0])


def test_criterion_is_a_torch_pruning_method() -> None:
    """L2NeuronStructured plugs into torch's machinery directly (ln_structured's rule, our ties)."""
    layer = nn.Linear(3, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [3, 0, 0], [0, 0, 2]]))
    L2NeuronStructured.apply(layer, "weight", 0.5)
    assert layer.weight_mask.any(dim=1).tolist() == [False, False, True, True]  # equal norms: lower index first


def test_neuron_prune_works_on_any_list_of_layers_and_ignores_the_seed() -> None:
    """The generic step: each given layer loses its lowest-norm rows, a Conv1d its channels."""
    torch.manual_seed(0)
    lin, conv = nn.Linear(4, 10), nn.Conv1d(2, 6, 3)
    twin = copy.deepcopy((lin, conv))
    neuron_prune([(lin, "weight"), (conv, "weight")], 0.5, seed=1)
    neuron_prune([(twin[0], "weight"), (twin[1], "weight")], 0.5, seed=99)
    assert int(alive_neurons(lin).sum()) == 5 and int(alive_neurons(conv).sum()) == 3
    assert torch.equal(lin.weight_mask, twin[0].weight_mask) and torch.equal(conv.weight_mask, twin[1].weight_mask)
    assert torch.equal(conv.bias_mask.bool(), alive_neurons(conv))


def test_effective_tensor_is_recomputed_from_orig_and_mask() -> None:
    layer = nn.Linear(3, 4)
    neuron_prune([(layer, "weight")], 0.5)
    with torch.no_grad():  # what a rewind does: the cached .weight is now stale
        layer.weight_orig.add_(1.0)
    expected = layer.weight_orig * layer.weight_mask
    assert torch.equal(effective_tensor(layer, "weight"), expected)
    assert not torch.equal(layer.weight, expected)
    assert effective_tensor(nn.Linear(3, 4, bias=False), "bias") is None


def test_rebuild_layer_copies_values_and_rejects_other_layers() -> None:
    w, b = torch.randn(2, 5), torch.randn(2)
    new = rebuild_layer(nn.Linear(7, 9), w, b)
    assert isinstance(new, nn.Linear) and torch.equal(new.weight, w) and torch.equal(new.bias, b)
    with pytest.raises(ValueError, match="groups=2"):
        rebuild_layer(nn.Conv1d(4, 4, 3, groups=2), torch.randn(4, 2, 3), None)
    with pytest.raises(TypeError, match="Conv2d"):
        rebuild_layer(nn.Conv2d(1, 1, 3), torch.randn(1, 1, 3, 3), None)
