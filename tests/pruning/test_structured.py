"""The Torch-Pruning engine: counting rule, ranking, masks on every coupled slice, rewind, exact shrink.

The MLP family is the first user (its hidden neurons are the units); conv nets with BatchNorm,
depthwise convolutions and residual adds are in ``test_structured_architectures.py``.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch_pruning as tp
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from prunelib.errors import Unsupported
from prunelib.families.mlp.family import MlpFamily
from prunelib.families.mlp.models import MLP, MeanEmbedding
from prunelib.pruning.criteria import initial_state, named_masks, rewind
from prunelib.pruning.structured import (
    DEFAULT_RULE,
    Structure,
    UnitRule,
    choose_scored,
    choose_units,
    count_to_prune,
    group_masks,
    prune_units,
    remaining,
    removed_fraction,
    rounded_keep,
    shrink,
    unit_counts,
    unit_scores,
)

FAMILY = MlpFamily()
widths = st.lists(st.integers(1, 24), min_size=1, max_size=3)
amounts = st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4)


def make_mlp(in_features: int, hidden: list[int], seed: int, vocab_size: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(in_features, tuple(hidden), 3, vocab_size=vocab_size, embed_dim=6).eval()


def expected_widths(hidden: list[int], amounts: list[float]) -> list[list[int]]:
    """The counting rule, written out independently, step by step: round(a * alive), one always stays."""
    out, current = [], list(hidden)
    for a in amounts:
        current = [r - min(round(a * r), r - 1) for r in current]
        out.append(list(current))
    return out


def hidden(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.layers if isinstance(m, nn.Linear)]


def alive(model: nn.Module) -> list[int]:
    return list(FAMILY.units_remaining(model).values())


# ---------------------------------------------------------------- the rule
def test_unit_rule_validates_and_knows_its_default() -> None:
    assert DEFAULT_RULE == UnitRule("l2", "layer") and DEFAULT_RULE.default
    assert not UnitRule("bn-scale").default and not UnitRule(scope="global").default
    with pytest.raises(ValueError, match="unit criterion 'taylor'"):
        UnitRule("taylor")
    with pytest.raises(ValueError, match="unit scope 'model'"):
        UnitRule(scope="model")
    assert not UnitRule(round_to=8).default
    for bad in (0, -4, 2.0, True):
        with pytest.raises(ValueError, match="unit rounding must be an integer >= 1"):
            UnitRule(round_to=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keep", "alive_", "round_to", "expected"),
    [(32, 64, 8, 32), (6, 64, 8, 8), (3, 64, 8, 8), (12, 64, 8, 16), (11, 64, 8, 8), (138, 276, 4, 140)]
    + [(86, 172, 4, 88), (61, 64, 8, 64), (60, 62, 8, 56), (5, 6, 8, 5), (7, 10, 1, 7), (1, 64, 16, 16)],
)
def test_rounded_keep_is_the_nearest_multiple_within_what_is_alive(keep, alive_, round_to, expected) -> None:
    assert rounded_keep(keep, alive_, round_to) == expected


@given(
    hidden_=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    amount=st.sampled_from([0.1, 0.33, 0.5, 0.9]),
    round_to=st.sampled_from([2, 4, 8]),
    scope=st.sampled_from(["layer", "global"]),
)
@settings(max_examples=25, deadline=None)
def test_rounded_steps_leave_multiples_wherever_a_multiple_fits(hidden_, amount, round_to, scope) -> None:
    model = make_mlp(5, hidden_, 0)
    prune_units(model, FAMILY.structure(model), amount, UnitRule(scope=scope, round_to=round_to))
    for width, left in zip(hidden_, alive(model), strict=True):
        assert left % round_to == 0 if width >= round_to else left >= 1
        assert left <= width


@pytest.mark.parametrize(
    ("amount", "alive_", "expected"),
    [(0.5, 10, 5), (0.25, 10, 2), (0.35, 10, 4), (0.5, 5, 2), (0.5, 7, 4), (0.9, 3, 2), (0.99, 3, 2), (0.99, 1, 0)]
    + [(0.01, 10, 0), (0.1, 4, 0), (0.5, 0, 0)],
)
def test_count_to_prune_rounds_half_to_even_and_keeps_one(amount: float, alive_: int, expected: int) -> None:
    assert count_to_prune(amount, alive_) == expected


@pytest.mark.parametrize("amount", [0.0, 1.0, -0.1, 1.5, "0.5"])
def test_an_invalid_amount_raises(amount) -> None:
    with pytest.raises(ValueError, match="amount"):
        count_to_prune(amount, 10)
    with pytest.raises(ValueError, match="amount"):
        FAMILY.structured_step(make_mlp(4, [5], 0), amount, 0)


@settings(max_examples=25, deadline=None)
@given(hidden_=widths, steps=amounts, seed=st.integers(0, 2**16))
def test_per_layer_counts_follow_the_rule_and_masks_only_lose_entries(hidden_, steps, seed) -> None:
    model = make_mlp(4, hidden_, seed)
    previous = {name: torch.ones_like(m.weight) for name, m in zip(FAMILY.units_remaining(model), hidden(model))}
    for a, expected in zip(steps, expected_widths(hidden_, steps)):
        FAMILY.structured_step(model, a, 0)
        assert alive(model) == expected
        for name, m in zip(FAMILY.units_remaining(model), hidden(model)):
            mask = getattr(m, "weight_mask", torch.ones_like(m.weight))  # nothing cut yet: no mask
            assert set(mask.unique().tolist()) <= {0.0, 1.0}
            assert not bool((mask > previous[name]).any()), "a pruned weight came back"
            rows = mask.any(dim=1)
            assert torch.equal(getattr(m, "bias_mask", torch.ones_like(m.bias)).bool(), rows)  # the bias follows
            previous[name] = mask.clone()
        assert not hasattr(model.out, "bias_mask")  # the classifier keeps its classes


def test_every_coupled_slice_is_masked_row_bias_and_the_next_columns() -> None:
    model = make_mlp(5, [6, 4], 0)
    FAMILY.structured_step(model, 0.5, 0)
    first, second = hidden(model)
    dead = (~first.weight_mask.any(dim=1)).nonzero().flatten()
    assert len(dead) == 3
    assert not bool(first.weight_mask[dead].any()) and not bool(first.bias_mask[dead].any())
    assert not bool(second.weight_mask[:, dead].any())  # the consumer's input columns go too
    dead2 = (~second.weight_mask.any(dim=1)).nonzero().flatten()
    assert not bool(model.out.weight_mask[:, dead2].any())


def test_units_are_ranked_by_the_l2_norm_of_all_their_coupled_weights_ties_to_the_lower_index() -> None:
    model = make_mlp(2, [4], 0)
    layer = hidden(model)[0]
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0], [1, 0], [1, 0], [0, 0.5]]))
        layer.bias.zero_()
        model.out.weight.zero_()
        model.out.weight[:, 3] = 2.0  # the consumer's column counts: unit 3 is the strongest
    assert choose_units(model, FAMILY.structure(model), 0.5) == {"layers.0": [1, 2]}
    with torch.no_grad():
        model.out.weight[:, 3] = 0.0
    assert choose_units(model, FAMILY.structure(model), 0.5) == {"layers.0": [1, 3]}  # 1 ties 2: lower index


def test_unit_scores_are_the_coupled_l2_norms_and_choose_scored_chooses_from_them_as_a_step_does() -> None:
    model = make_mlp(3, [6, 5], 2)
    layer, consumer = hidden(model)[0], hidden(model)[1]
    with torch.no_grad():
        layer.weight[2].zero_()
        layer.bias[2] = 0.0
        consumer.weight[:, 2].zero_()  # unit 2 of layers.0 is dead
    scores = unit_scores(model, FAMILY.structure(model))
    score, alive_ = scores["layers.0"]
    expected = layer.weight.double().pow(2).sum(1) + layer.bias.double().pow(2) + consumer.weight.double().pow(2).sum(0)
    assert torch.allclose(score, expected.detach().sqrt()) and alive_.tolist() == [True, True, False, True, True, True]
    for rule in (DEFAULT_RULE, UnitRule(scope="global"), UnitRule(round_to=2)):
        assert choose_scored(scores, 0.4, rule) == choose_units(model, FAMILY.structure(model), 0.4, rule)
    blocks = {"a": (torch.tensor([3.0, 1.0, 2.0, 0.0]), torch.tensor([True, True, True, False]))}
    assert choose_scored(blocks, 0.5) == {"a": [1, 2]}  # round(0.5 x 3 alive) = 2 of the alive, lowest first
    with pytest.raises(ValueError, match="unknown unit criterion"):
        unit_scores(model, FAMILY.structure(model), "l1")


def test_global_scope_ranks_every_unit_together_and_never_empties_a_group() -> None:
    model = make_mlp(3, [8, 8], 1)
    with torch.no_grad():  # scores are divided by their group's mean: scaling a whole layer changes nothing,
        hidden(model)[0].weight.mul_(100.0)
        hidden(model)[1].weight[:4].mul_(0.01)  # four weak units in layer 2 do
        hidden(model)[1].bias[:4].mul_(0.01)
        model.out.weight[:, :4].mul_(0.01)
    units = choose_units(model, FAMILY.structure(model), 0.25, UnitRule(scope="global"))
    assert sum(len(v) for v in units.values()) == round(0.25 * 16)
    assert units == {"layers.2": [0, 1, 2, 3]}
    for _ in range(6):
        prune_units(model, FAMILY.structure(model), 0.9, UnitRule(scope="global"))
    assert alive(model) == [1, 1]


def test_bn_scale_ranks_by_batchnorm_gamma_and_falls_back_to_l2_without_batchnorm() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.1, 0.5, 0.2, 3.0]))
        net[0].weight[1].mul_(1e-3)  # unit 1: tiny weights, a larger gamma: l2 and bn-scale disagree
        net[4].weight[:, 16:32].mul_(1e-3)
    structure = Structure(torch.zeros(1, 1, 6, 6), ignored=(net[4],))
    assert choose_units(net, structure, 0.5, UnitRule("bn-scale")) == {"0": [0, 2]}
    assert 1 in choose_units(net, structure, 0.5, UnitRule("l2"))["0"]
    mlp = make_mlp(3, [6], 2)
    assert choose_units(mlp, FAMILY.structure(mlp), 0.5, UnitRule("bn-scale")) == choose_units(
        mlp, FAMILY.structure(mlp), 0.5
    )


def test_group_masks_are_what_torch_pruning_cuts() -> None:
    model = make_mlp(4, [5], 3)
    masks = group_masks(model, FAMILY.structure(model), {"layers.0": [1, 4]})
    assert set(masks) == {"layers.0.weight", "layers.0.bias", "out.weight"}
    assert masks["layers.0.bias"].tolist() == [1, 0, 1, 1, 0]
    with pytest.raises(ValueError, match="no unit group rooted at 'out'"):
        group_masks(model, FAMILY.structure(model), {"out": [0]})


def test_a_step_traces_once_and_tags_only_the_chosen_groups_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_mlp(4, [5, 7], 3)
    want = group_masks(model, FAMILY.structure(model), choose_units(model, FAMILY.structure(model), 0.5))
    traces, tagged = [], []
    build, arange = tp.DependencyGraph.build_dependency, torch.arange
    monkeypatch.setattr(tp.DependencyGraph, "build_dependency", lambda *a, **k: traces.append(1) or build(*a, **k))
    monkeypatch.setattr(torch, "arange", lambda n, **k: tagged.append(n) or arange(n, **k))
    group_masks(model, FAMILY.structure(model), {"layers.2": [0]})  # layers.2 and out: not layers.0
    assert sorted(tagged) == [3, 7, 3 * 7, 7 * 5]  # out.bias, layers.2.bias, out.weight, layers.2.weight
    traces.clear()
    prune_units(model, FAMILY.structure(model), 0.5)
    assert len(traces) == 1  # choosing and masking share one graph
    got = named_masks(model)
    assert set(got) == set(want) and all(torch.equal(got[n], want[n]) for n in want)


def test_a_structure_naming_a_foreign_module_is_an_error() -> None:
    model = make_mlp(4, [5], 3)
    with pytest.raises(ValueError, match="not part of the model"):
        unit_counts(model, Structure(torch.zeros(1, 4), ignored=(nn.Linear(5, 3),)))


def test_unit_counts_list_groups_in_layer_order() -> None:
    model = make_mlp(4, [5, 7, 3], 3)
    assert unit_counts(model, FAMILY.structure(model)) == {"layers.0": (5, 5), "layers.2": (7, 7), "layers.4": (3, 3)}


def test_a_layer_the_engine_cannot_score_is_unsupported() -> None:
    net = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(Unsupported, match="grouped convolution"):
        unit_counts(net, Structure(torch.zeros(1, 4, 3, 3), ignored=(net[3],)))


# ---------------------------------------------------------------- shrink
@settings(max_examples=20, deadline=None)
@given(
    hidden_=widths,
    steps=amounts,
    seed=st.integers(0, 2**16),
    batch=st.integers(1, 4),
    embed=st.booleans(),
    removed=st.booleans(),
)
def test_shrink_is_exact(hidden_, steps, seed, batch, embed, removed) -> None:
    model = make_mlp(5, hidden_, seed, vocab_size=20 if embed else 0)
    for a in steps:
        FAMILY.structured_step(model, a, 0)
    if removed:  # judged on values too, after the pruning is made permanent
        for m in [*hidden(model), model.out]:
            for name in ("weight", "bias"):
                if hasattr(m, name + "_mask"):
                    prune.remove(m, name)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 20, (batch, 7), generator=gen) if embed else torch.randn(batch, 5, generator=gen)
    state = copy.deepcopy(model.state_dict())
    small = FAMILY.shrink(model)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-6)
    assert [m.out_features for m in hidden(small)] == expected_widths(hidden_, steps)[-1] == alive(model)
    assert not any(hasattr(m, "weight_mask") for m in small.modules())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # input untouched


def test_shrink_after_rewind_keeps_the_initial_survivors() -> None:
    """IMP: prune -> rewind (masks kept) -> shrink gives the initial weights of the surviving units."""
    model = make_mlp(8, [16, 12], 1)
    init = initial_state(model)
    with torch.no_grad():  # stands in for training
        for p in model.parameters():
            p.add_(0.5)
    FAMILY.structured_step(model, 0.5, 0)
    rewind(model, init)
    keep = [m.weight_mask.any(dim=1) for m in hidden(model)]
    assert [int(k.sum()) for k in keep] == [8, 6]
    small = FAMILY.shrink(model)
    torch.testing.assert_close(small.layers[0].weight, init["layers.0.weight"][keep[0]], rtol=0, atol=0)
    torch.testing.assert_close(small.layers[0].bias, init["layers.0.bias"][keep[0]], rtol=0, atol=0)
    torch.testing.assert_close(small.out.weight, init["out.weight"][:, keep[1]], rtol=0, atol=0)
    x = torch.randn(5, 8)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-6)
    FAMILY.structured_step(model, 0.5, 0)  # the schedule goes on pruning the rewound model
    assert alive(model) == [4, 3]


def test_a_fully_dead_layer_shrinks_to_one_zero_unit() -> None:
    model = make_mlp(4, [6, 5], 4)
    prune.custom_from_mask(model.layers[0], "weight", torch.zeros_like(model.layers[0].weight))
    prune.custom_from_mask(model.layers[0], "bias", torch.zeros(6))
    # still alive: the next layer reads them (a unit is dead when every coupled weight is zero)
    assert FAMILY.units_remaining(model) == {"layers.0": 6, "layers.2": 5}
    prune.custom_from_mask(model.layers[2], "weight", torch.zeros_like(model.layers[2].weight))
    with torch.no_grad():
        model.layers[2].weight_orig.normal_()  # masked: the values behind the mask do not count
    assert FAMILY.units_remaining(model) == {"layers.0": 0, "layers.2": 5}  # layer 2 keeps its bias
    small = shrink(model, FAMILY.structure(model))
    assert [m.out_features for m in hidden(small)] == [1, 5]
    x = torch.randn(3, 4)
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(small(x), small(torch.zeros_like(x)), rtol=0, atol=0)  # input no longer matters


def test_shrink_of_the_embedding_mlp_keeps_the_embedding_whole() -> None:
    model = make_mlp(0, [12, 8], 5, vocab_size=30)
    FAMILY.structured_step(model, 0.5, 0)
    small = FAMILY.shrink(model)
    assert isinstance(small.embedding, MeanEmbedding)
    assert torch.equal(small.embedding.embedding.weight, model.embedding.embedding.weight)
    assert [m.out_features for m in hidden(small)] == [6, 4] and small.layers[0].in_features == 6
    tokens = torch.randint(0, 30, (5, 9), generator=torch.Generator().manual_seed(1))
    tokens[:, 6:] = 0  # padding
    torch.testing.assert_close(small(tokens), model(tokens), rtol=0, atol=1e-6)


def test_shrink_keeps_unstructured_zeros_dtype_and_mode() -> None:
    model = make_mlp(5, [9, 7], 7).double().train()
    prune.l1_unstructured(model.layers[0], "weight", 0.5)
    FAMILY.structured_step(model, 0.3, 0)
    small = FAMILY.shrink(model)
    assert small.training is True and FAMILY.shrink(model.eval()).training is False
    assert all(p.dtype == torch.float64 for p in small.parameters())
    keep = model.layers[0].weight_mask.any(dim=1)
    kept = (model.layers[0].weight_orig * model.layers[0].weight_mask)[keep][:, :]
    assert torch.equal(small.layers[0].weight, kept.detach())  # unstructured zeros stay zeros
    x = torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(small.eval()(x), model.eval()(x), rtol=0, atol=1e-12)


def test_remaining_and_removed_fraction_read_the_counts() -> None:
    counts = {"a": (2, 4), "b": (3, 4)}
    assert remaining(counts) == {"a": 2, "b": 3}
    assert removed_fraction(counts) == pytest.approx(3 / 8)
    assert removed_fraction({"a": (4, 4)}) == 0.0
    assert math.isnan(removed_fraction({}))
