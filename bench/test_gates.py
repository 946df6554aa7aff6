"""Correctness gates over the cached sweeps: what CI's quick mode asserts before anything is timed.

The sparsity schedule, monotone masks, rewinding, the cache's honesty, and the accuracy the lab
reported; a functional regression in training or pruning fails here in minutes.
"""

from __future__ import annotations

import pytest
import torch

from prunelib.families.mlp.train import evaluate
from prunelib.pruning.criteria import named_masks
from prunelib.pruning.params import effective_parameters
from prunelib.pruning.schedules import get_schedule
from prunelib.pruning.sparsity import expected_sparsity
from prunelib.pruning.structured import neurons_remaining
from prunelib.sweep.cache import load_model, masks_equal, replay_rewind_step
from prunelib.sweep.suite import accuracy_floor

#: How far the measured sparsity may sit from 1-(1-a)^k: per-step rounding to whole weights.
SPARSITY_ATOL = 2e-3


def test_sparsity_follows_the_schedule(sweep_spec, suite) -> None:
    sweep, amount = suite.sweep(sweep_spec), sweep_spec.prune.amount
    if get_schedule(sweep_spec.prune.method).structured:
        splits = suite.splits(sweep_spec)
        widths = neurons_remaining(load_model(sweep, splits, 0))
        for k in range(1, sweep_spec.prune.iterations + 1):
            alive = neurons_remaining(load_model(sweep, splits, k))
            for layer, n in alive.items():
                want = widths[layer] * (1 - amount) ** k
                assert abs(n - want) <= k, f"{layer} at it{k}: {n} neurons left, schedule says {want:.1f}"
        return
    for k, measured in zip(sweep.metrics["iteration"], sweep.metrics["sparsity"]):
        want = expected_sparsity(amount, int(k))
        assert measured == pytest.approx(want, abs=SPARSITY_ATOL), (
            f"it{k}: sparsity {measured:.4f}, schedule {want:.4f}"
        )


def test_masks_are_binary_and_never_regrow(sweep_spec, suite) -> None:
    sweep, splits = suite.sweep(sweep_spec), suite.splits(sweep_spec)
    previous = None
    for k in range(sweep_spec.prune.iterations + 1):
        masks = named_masks(load_model(sweep, splits, k))
        for name, mask in masks.items():
            assert torch.all((mask == 0) | (mask == 1)), f"it{k}: mask {name} is not binary"
            if previous is not None and name in previous:
                assert torch.all(mask <= previous[name]), f"it{k}: a pruned weight of {name} came back"
        previous = masks


def test_cached_checkpoints_reproduce_their_metrics(sweep_spec, suite) -> None:
    """A checkpoint loaded from the cache scores what was recorded when it was made."""
    sweep, splits = suite.sweep(sweep_spec), suite.splits(sweep_spec)
    for k in sorted({0, sweep_spec.prune.iterations}):
        got = evaluate(load_model(sweep, splits, k), splits.test)
        assert got == pytest.approx(sweep.row(k)["accuracy"], abs=1e-9), f"it{k} of {sweep_spec.label}"


def test_rewinding_restores_initial_weights(sweep_spec, suite) -> None:
    """Replaying a prune + rewind from the cached checkpoint gives the initial weights under the cached masks."""
    if not get_schedule(sweep_spec.prune.method).rewind:
        pytest.skip(f"{sweep_spec.prune.method} does not rewind")
    from prunelib.storage.checkpoint import read_tensors

    sweep, splits = suite.sweep(sweep_spec), suite.splits(sweep_spec)
    initial = read_tensors(sweep.initial)
    for k in sorted({1, sweep_spec.prune.iterations}):
        replayed, cached = replay_rewind_step(sweep, splits, k)
        assert masks_equal(replayed, cached), f"it{k}: replayed masks differ from the cached checkpoint's"
        masks = named_masks(replayed)
        for name, value in effective_parameters(replayed):
            mask = masks.get(name, torch.ones_like(value))
            assert torch.equal(value, initial[name] * mask), f"it{k}: {name} is not the initial weights under its mask"


def test_dense_accuracy_floor(pair, suite) -> None:
    dataset, model = pair
    floor = accuracy_floor(dataset, model, suite.opts.quick)
    if floor is None:
        pytest.skip(f"no accuracy floor known for {dataset}/{model}")
    spec = next(s for s in suite.specs if (s.data.name, s.model) == pair)
    accuracy = suite.sweep(spec).row(0)["accuracy"]
    assert accuracy >= floor, f"{dataset}/{model}: dense accuracy {accuracy:.4f} < floor {floor}"


def _curve(suite, pair, method):
    spec = next((s for s in suite.specs if (s.data.name, s.model) == pair and s.prune.method == method), None)
    if spec is None:
        pytest.skip(f"method {method} not in this run")
    return suite.sweep(spec).metrics.set_index("iteration")


def test_rewinding_beats_no_retraining_at_high_sparsity(pair, suite) -> None:
    """The lottery-ticket result: IMP with rewinding keeps accuracy where one-shot pruning collapses."""
    rewind, oneshot = _curve(suite, pair, "imp-rewind"), _curve(suite, pair, "no-retrain")
    dense = rewind.loc[0, "accuracy"]
    moderate = rewind[rewind["sparsity"] <= 0.87]
    assert (moderate["accuracy"] >= dense - 0.02).all(), f"imp-rewind loses > 2 points by 87 % sparsity:\n{moderate}"
    high = rewind.index[rewind["sparsity"] >= 0.95]
    if len(high) == 0:
        pytest.skip("this run does not reach 95 % sparsity")
    last = high.max()
    gap = rewind.loc[last, "accuracy"] - oneshot.loc[last, "accuracy"]
    assert gap >= 0.20, f"at {rewind.loc[last, 'sparsity']:.1%} imp-rewind beats no-retrain by only {gap:.3f}"


def test_random_pruning_is_worse_than_magnitude(pair, suite) -> None:
    randomly, oneshot = _curve(suite, pair, "random"), _curve(suite, pair, "no-retrain")
    later = randomly.index[randomly.index > 0]
    assert (randomly.loc[later, "accuracy"] <= oneshot.loc[later, "accuracy"] + 0.01).all()
    assert randomly.loc[later, "accuracy"].mean() < oneshot.loc[later, "accuracy"].mean()
