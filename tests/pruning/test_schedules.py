"""Schedules: prune → (rewind) → (retrain) per step through the family contract; exact counts, monotone masks.

Structured schedules (whole hidden neurons of the MLP family) are checked on small synthetic
data: neuron counts, monotone masks, exact shrinking and rewinding. Measuring and whole sweeps
live in ``tests/sweep`` (metrics, runner, cache).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from prunelib.families.contract import Family, Unsupported
from prunelib.families.mlp.config import TrainConfig
from prunelib.families.mlp.data import Split, Splits
from prunelib.families.mlp.family import MlpFamily
from prunelib.pruning.criteria import initial_state, named_masks
from prunelib.pruning.params import effective_parameters
from prunelib.pruning.schedules import (
    LAB_METHODS,
    SCHEDULES,
    Schedule,
    get_schedule,
    iterate_schedule,
    prune_step,
)
from prunelib.pruning.sparsity import expected_sparsity, sparsity_report

FAMILY = MlpFamily()
TOY_TRAIN = TrainConfig(epochs=1, batch_size=16, lr=1e-2)
UNSTRUCTURED = sorted(n for n, s in SCHEDULES.items() if not s.structured)
STRUCTURED = sorted(n for n, s in SCHEDULES.items() if s.structured)


class NoUnits(MlpFamily):
    """The MLP family without structured pruning (the contract's defaults)."""

    name = "mlp-no-units"
    structure = Family.structure
    structured_step = Family.structured_step
    shrink = Family.shrink


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.clone() for n, t in effective_parameters(model)}


def survivors_equal(model: nn.Module, reference: dict[str, torch.Tensor]) -> bool:
    masks, now = named_masks(model), weights(model)
    return all(
        torch.equal(now[n][masks[n] == 1], reference[n][masks[n] == 1])
        if n in masks
        else torch.equal(now[n], reference[n])
        for n in now
    )


def remaining_counts(total: int, amount: float, steps: int) -> list[int]:
    """Weights left after 0..steps global steps under the counting rule: round(amount * remaining)."""
    left = [total]
    for _ in range(steps):
        left.append(left[-1] - round(amount * left[-1]))
    return left


def neuron_counts(widths: dict[str, int], amount: float, steps: int) -> list[dict[str, int]]:
    """Hidden neurons left per layer after 0..steps structured steps: round(amount * remaining), keep one."""
    left = [dict(widths)]
    for _ in range(steps):
        left.append({n: r - min(round(amount * r), r - 1) for n, r in left[-1].items()})
    return left


def trained(splits: Splits, seed: int = 0, model: str = "lenet300") -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The family's model built from ``seed``, its initial weights, then trained dense on ``splits``."""
    net = FAMILY.build(model, splits, seed)
    init = initial_state(net)
    FAMILY.train(net, splits, TOY_TRAIN, seed, "dense")
    return net.eval(), init


def walk(model, init, splits, schedule, amount, steps, hparams=TOY_TRAIN, seed=0, family=FAMILY, embeddings=False):
    return iterate_schedule(family, model, init, splits, hparams, schedule, amount, steps, seed, embeddings)


# ---------------------------------------------------------------- the table of schedules
def test_the_schedules() -> None:
    flags = {name: (s.criterion, s.rewind, s.retrain, s.structured) for name, s in SCHEDULES.items()}
    assert flags == {
        "no-retrain": ("magnitude", False, False, False),
        "imp-rewind": ("magnitude", True, True, False),
        "imp-finetune": ("magnitude", False, True, False),
        "imp-late-rewind": ("magnitude", True, True, False),
        "imp-lr-rewind": ("magnitude", False, True, False),
        "random": ("random", False, False, False),
        "layerwise": ("layerwise", False, False, False),
        "structured-no-retrain": ("l2-units", False, False, True),
        "structured-imp-rewind": ("l2-units", True, True, True),
        "structured-imp-finetune": ("l2-units", False, True, True),
    }
    assert LAB_METHODS == ("no-retrain", "imp-rewind", "imp-finetune", "random")
    assert Schedule("custom", "magnitude", False, False).structured is False
    assert all(SCHEDULES[n].name == n and get_schedule(n) is SCHEDULES[n] for n in SCHEDULES)


def test_unknown_method_lists_the_schedules() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'obd'.*imp-rewind"):
        get_schedule("obd")


# ---------------------------------------------------------------- iterate_schedule
@pytest.mark.parametrize("name", UNSTRUCTURED)
@pytest.mark.parametrize("amount, steps", [(0.33, 4), (0.5, 1), (0.9, 3)])
def test_iterations_0_to_n_reach_the_expected_sparsity(
    make_splits: Callable[..., Splits], name: str, amount: float, steps: int
) -> None:
    splits = make_splits(n=32, features=6)
    model, init = trained(splits)
    prunable = FAMILY.prunable(model)
    total = sparsity_report(model, prunable).prunable_total
    assert total == 6 * 300 + 300 * 100 + 100 * 3
    left = remaining_counts(total, amount, steps)
    seen = []
    for k, current in walk(model, init, splits, get_schedule(name), amount, steps):
        assert current is model  # one model walks the schedule
        report = sparsity_report(current, FAMILY.prunable(current))
        if name == "layerwise":  # the same rule applied to each layer on its own
            per_layer = [m.weight.numel() for m, _ in prunable]
            assert report.prunable_zeros == sum(n - remaining_counts(n, amount, k)[k] for n in per_layer)
        else:
            assert report.prunable_zeros == total - left[k]
        assert abs(report.sparsity - expected_sparsity(amount, k)) <= 3 * k / total
        seen.append(k)
    assert seen == list(range(steps + 1))


def test_a_resumed_walk_continues_where_it_stopped(make_splits: Callable[..., Splits]) -> None:
    """Steps 2..3 walked from a copy of iteration 1 equal steps 2..3 of one whole walk (the resume of a killed build)."""
    import copy

    splits = make_splits(n=32, features=6)
    model, init = trained(splits)
    whole = {k: copy.deepcopy(m.state_dict()) for k, m in walk(model, init, splits, get_schedule("imp-rewind"), 0.5, 3)}
    model, init = trained(splits)
    resumed_from = copy.deepcopy(dict(walk(model, init, splits, get_schedule("imp-rewind"), 0.5, 1))[1])
    steps = iterate_schedule(
        FAMILY, resumed_from, init, splits, TOY_TRAIN, get_schedule("imp-rewind"), 0.5, 3, 0, start=2
    )
    resumed = {k: copy.deepcopy(m.state_dict()) for k, m in steps}
    assert sorted(resumed) == [2, 3]
    assert all(torch.equal(whole[k][n], resumed[k][n]) for k in (2, 3) for n in whole[k])
    with pytest.raises(ValueError, match="start 5 outside 0..4"):
        next(iterate_schedule(FAMILY, model, init, splits, TOY_TRAIN, get_schedule("imp-rewind"), 0.5, 3, 0, start=5))


def test_zero_iterations_yield_only_the_dense_model(make_splits: Callable[..., Splits]) -> None:
    splits = make_splits()
    model, init = trained(splits)
    before = weights(model)
    steps = list(walk(model, init, splits, get_schedule("imp-rewind"), 0.5, 0))
    assert [k for k, _ in steps] == [0] and named_masks(model) == {}
    assert all(torch.equal(t, before[n]) for n, t in weights(model).items())


@pytest.mark.parametrize("structured", [False, True], ids=["weights", "neurons"])
@pytest.mark.parametrize("rewind", [False, True], ids=["keep", "rewind"])
@pytest.mark.parametrize("retrain", [False, True], ids=["no-retrain", "retrain"])
def test_rewind_and_retrain_flags_do_what_they_say(
    make_splits: Callable[..., Splits], rewind: bool, retrain: bool, structured: bool
) -> None:
    splits = make_splits(n=48, features=6)
    model, init = trained(splits)
    criterion = "l2-units" if structured else "magnitude"
    schedule = Schedule("custom", criterion, rewind=rewind, retrain=retrain, structured=structured)
    steps = walk(model, init, splits, schedule, 0.4, 2)
    _, current = next(steps)  # k = 0: the trained dense model
    before = weights(current)
    for _, current in steps:
        reference = init if rewind else before
        assert survivors_equal(current, reference) is (not retrain)
        if retrain:  # retrained from the rewound (or pruned) weights: not left where pruning put them
            assert not survivors_equal(current, init) and not survivors_equal(current, before)
        before = weights(current)


@pytest.mark.parametrize("method", ["imp-rewind", "imp-finetune", "structured-imp-rewind", "structured-imp-finetune"])
def test_retraining_keeps_pruned_weights_at_zero_and_masks_monotone(
    make_splits: Callable[..., Splits], method: str
) -> None:
    splits = make_splits(n=48, features=6)
    model, init = trained(splits)
    before: dict[str, torch.Tensor] = {}
    for _k, current in walk(model, init, splits, get_schedule(method), 0.5, 3):
        masks, now = named_masks(current), weights(current)
        assert all(bool((now[n][m == 0] == 0).all()) for n, m in masks.items())
        assert all(bool((masks[n] <= m).all()) for n, m in before.items())  # a pruned entry never comes back
        assert set(before) <= set(masks)
        before = masks


def test_imp_rewind_without_epochs_restores_init_exactly(make_splits: Callable[..., Splits]) -> None:
    splits = make_splits(n=32, features=6)
    model, init = trained(splits)
    for k, current in walk(model, init, splits, get_schedule("imp-rewind"), 0.5, 3, hparams=TrainConfig(epochs=0)):
        if k:
            masks, now = named_masks(current), weights(current)
            for name, value in now.items():  # survivors are the initial values bit for bit, the rest zero
                expected = init[name] * masks[name] if name in masks else init[name]
                assert torch.equal(value, expected), (k, name)


def test_schedules_are_deterministic_given_the_seed(make_splits: Callable[..., Splits]) -> None:
    splits = make_splits(n=48, features=6)
    runs = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 5)):
        model, init = trained(splits)
        for _ in walk(model, init, splits, get_schedule("random"), 0.5, 2, seed=seed):
            pass
        runs[label] = named_masks(model)
    assert all(torch.equal(runs["a"][n], runs["b"][n]) for n in runs["a"])
    assert not all(torch.equal(runs["a"][n], runs["c"][n]) for n in runs["a"])  # random scores follow the seed


def test_embeddings_are_pruned_only_when_asked() -> None:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 30, (40, 5), generator=gen)
    labels = torch.randint(0, 2, (40,), generator=gen)
    split = Split(tokens, labels)
    splits = Splits("toy-tokens", split, split, split, 2, 5, tuple(f"w{i}" for i in range(30)))
    for embeddings in (False, True):
        model = FAMILY.build("sst2-mlp", splits, 0)
        init = initial_state(model)
        prunable = FAMILY.prunable(model, embeddings)
        total = sparsity_report(model, prunable).prunable_total
        steps = list(walk(model, init, splits, get_schedule("no-retrain"), 0.5, 2, embeddings=embeddings))
        assert [k for k, _ in steps] == [0, 1, 2] and steps[-1][1] is model
        assert ("embedding.embedding.weight" in named_masks(model)) is embeddings
        assert sparsity_report(model, prunable).prunable_zeros == total - remaining_counts(total, 0.5, 2)[2]


# ---------------------------------------------------------------- structured schedules
@pytest.mark.parametrize("name", STRUCTURED)
def test_structured_schedules_remove_1_minus_1_minus_a_to_the_k_of_the_neurons(
    make_splits: Callable[..., Splits], name: str
) -> None:
    splits = make_splits(n=32, features=6)
    model, init = trained(splits)
    amount, steps = 0.4, 2
    widths = FAMILY.units_remaining(model)
    assert widths == {"layers.0": 300, "layers.2": 100}
    left = neuron_counts(widths, amount, steps)
    x = splits.test.x
    for k, current in walk(model, init, splits, get_schedule(name), amount, steps):
        assert FAMILY.units_remaining(current) == left[k]
        for layer, width in widths.items():  # within the rounding of each step
            assert abs(left[k][layer] / width - (1 - amount) ** k) <= 0.5 / (amount * width)
        total = sum(widths.values())
        assert FAMILY.unit_sparsity(current) == pytest.approx(1 - sum(left[k].values()) / total)
        assert sorted(named_masks(current)) == (
            [] if k == 0 else ["layers.0.bias", "layers.0.weight", "layers.2.bias", "layers.2.weight", "out.weight"]
        )
        small = FAMILY.shrink(current)  # physically smaller, same outputs as the masked model
        assert [m.out_features for m in small.layers if isinstance(m, nn.Linear)] == list(left[k].values())
        with torch.no_grad():
            torch.testing.assert_close(small.eval()(x), current.eval()(x), rtol=1e-5, atol=1e-6)


def test_structured_rewind_puts_survivors_back_to_init(make_splits: Callable[..., Splits]) -> None:
    """structured-imp-rewind without retraining epochs: after each step survivors are exactly the initial weights."""
    splits = make_splits(n=32, features=6)
    model, init = trained(splits)
    steps = walk(model, init, splits, get_schedule("structured-imp-rewind"), 0.5, 2, hparams=TrainConfig(epochs=0))
    seen = 0
    for k, current in steps:
        if k:
            seen += 1
            assert survivors_equal(current, init)
            small = FAMILY.shrink(current)  # the shrunk survivors are the initial rows (and columns) too
            alive0, alive2 = current.layers[0].weight_mask.any(1), current.layers[2].weight_mask.any(1)
            assert int(alive0.sum()) == 300 // 2**k
            assert torch.equal(small.layers[0].weight, init["layers.0.weight"][alive0])
            assert torch.equal(small.layers[0].bias, init["layers.0.bias"][alive0])
            assert torch.equal(small.layers[2].weight, init["layers.2.weight"][alive2][:, alive0])
            assert torch.equal(small.out.weight, init["out.weight"][:, alive2])
    assert seen == 2


def test_structured_schedule_needs_a_family_with_units(make_splits: Callable[..., Splits], make_mlp) -> None:
    splits = make_splits(n=16, features=6)
    model, init = trained(splits)
    family = NoUnits()
    assert not family.structured and FAMILY.structured
    assert "structured" in family.supports(method="structured-no-retrain")
    assert FAMILY.supports(method="structured-no-retrain") == ""
    with pytest.raises(Unsupported, match="mlp-no-units"):
        list(walk(model, init, splits, get_schedule("structured-no-retrain"), 0.5, 1, family=family))
    assert named_masks(model) == {}
    with pytest.raises(TypeError, match="MLP"):  # the MLP family's units are an MLP's hidden neurons
        prune_step(FAMILY, make_mlp((6, 5, 3)), get_schedule("structured-no-retrain"), 0.5, 0)
