"""Correctness gates over the cached sweeps: what CI's quick mode asserts before anything is timed.

The sparsity schedule, monotone masks, rewinding, the cache's honesty, and the metric the lab
reported; a functional regression in training or pruning fails here in minutes. Every gate
reads the family's metric and its direction, so it holds for any family.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from prunelib.families.registry import get_family
from prunelib.fingerprint import file_sha256
from prunelib.plugin.records import record_extra
from prunelib.pruning.criteria import named_masks
from prunelib.pruning.params import effective_parameters
from prunelib.pruning.sparsity import expected_sparsity
from prunelib.pruning.structured import count_to_prune
from prunelib.results.seeds import seed_bands, separated
from prunelib.storage.checkpoint import read_tensors
from prunelib.storage.entries import read_manifest
from prunelib.sweep.cache import load_model, masks_equal, replay_rewind_step
from prunelib.sweep.metrics import static_metrics
from prunelib.sweep.suite import metric_floor

#: How far the measured sparsity may sit from 1-(1-a)^k: per-step rounding to whole weights.
SPARSITY_ATOL = 2e-3
#: Seeds the noise-aware lottery gate runs at least (the run's own when it has this many).
GATE_SEEDS = 3


def test_sparsity_follows_the_schedule(sweep_spec, suite) -> None:
    sweep, amount = suite.sweep(sweep_spec), sweep_spec.amount
    if sweep_spec.schedule.structured:
        loaded = suite.loaded(sweep_spec)
        want = loaded.family.units_remaining(load_model(sweep, loaded, 0))
        for k in range(1, sweep_spec.iterations + 1):
            alive = loaded.family.units_remaining(load_model(sweep, loaded, k))
            if sweep_spec.unit_scope == "global":  # all units ranked together; no group loses its last
                total = sum(want.values())
                assert sum(alive.values()) >= total - round(amount * total) and min(alive.values()) >= 1, (
                    f"it{k}: units left {alive} from {want}"
                )
                want = alive
                continue
            want = {g: n - count_to_prune(amount, n) for g, n in want.items()}
            assert alive == want, f"it{k}: units left {alive}, the schedule says {want}"
        return
    for k, measured in zip(sweep.metrics["iteration"], sweep.metrics["sparsity"]):
        want = expected_sparsity(amount, int(k))
        assert measured == pytest.approx(want, abs=SPARSITY_ATOL), (
            f"it{k}: sparsity {measured:.4f}, schedule {want:.4f}"
        )


def test_masks_are_binary_and_never_regrow(sweep_spec, suite) -> None:
    sweep, loaded = suite.sweep(sweep_spec), suite.loaded(sweep_spec)
    previous = None
    for k in range(sweep_spec.iterations + 1):
        masks = named_masks(load_model(sweep, loaded, k))
        for name, mask in masks.items():
            assert torch.all((mask == 0) | (mask == 1)), f"it{k}: mask {name} is not binary"
            if previous is not None and name in previous:
                assert torch.all(mask <= previous[name]), f"it{k}: a pruned weight of {name} came back"
        previous = masks


def test_cached_checkpoints_reproduce_their_metrics(sweep_spec, suite) -> None:
    """Every cached checkpoint still has the sha256 its entry recorded, and re-measured scores what was reported.

    Every iteration is re-measured (not only the first and last): evaluation costs far less than
    the training that made the checkpoint, and it catches a wrong number whatever its cause, a
    tampered checkpoint or a metrics table that no longer matches its checkpoints.
    """
    sweep, loaded = suite.sweep(sweep_spec), suite.loaded(sweep_spec)
    family, name = loaded.family, loaded.family.metric.name
    recorded = read_manifest(sweep.folder)["files"]
    for k in range(sweep_spec.iterations + 1):
        path = sweep.checkpoint(k)
        assert file_sha256(path) == recorded[path.name], (
            f"it{k} of {sweep_spec.label}: {path} changed since it was measured"
        )
        model = load_model(sweep, loaded, k)
        got = static_metrics(family, model, loaded.data, sweep_spec.schedule.structured, sweep_spec.precision)[name]
        assert got == pytest.approx(sweep.row(k)[name], abs=1e-9), f"it{k} of {sweep_spec.label}"


def test_rewinding_restores_initial_weights(sweep_spec, suite) -> None:
    """Replaying a prune + rewind from the cached checkpoint gives the initial weights under the cached masks."""
    if not sweep_spec.schedule.rewind:
        pytest.skip(f"{sweep_spec.method} does not rewind")
    sweep, loaded = suite.sweep(sweep_spec), suite.loaded(sweep_spec)
    initial = read_tensors(sweep.rewind_target)  # late rewinding: the dense run's epoch-k weights
    for k in sorted({1, sweep_spec.iterations}):
        replayed, cached = replay_rewind_step(sweep, loaded, k)
        assert masks_equal(replayed, cached), f"it{k}: replayed masks differ from the cached checkpoint's"
        masks = named_masks(replayed)
        for name, value in effective_parameters(replayed):
            mask = masks.get(name, torch.ones_like(value))
            assert torch.equal(value, initial[name] * mask), f"it{k}: {name} is not the initial weights under its mask"


def _dense_spec(suite, pair):
    specs = suite.specs_of(pair)
    if not specs:
        pytest.skip(f"no sweep of {pair.id} in this run")
    return specs[0]


def test_dense_accuracy_floor(pair, suite) -> None:
    """The dense model reaches the family's floor for this pair (for WER: stays under its ceiling)."""
    floor = metric_floor(pair.family, pair.dataset, pair.model, suite.opts.quick)
    if floor is None:
        pytest.skip(f"no floor known for {pair.dataset}/{pair.model}")
    spec = _dense_spec(suite, pair)
    metric = suite.loaded(spec).family.metric
    dense = suite.sweep(spec).row(0)[metric.name]
    assert metric.loss(floor, dense) <= 0, f"{pair.id}: dense {metric.name} {dense:.4f} misses the floor {floor}"


def _curve(suite, pair, method):
    spec = next((s for s in suite.specs_of(pair) if s.method == method), None)
    if spec is None:
        pytest.skip(f"method {method} not in this run")
    return suite.loaded(spec).family.metric, suite.sweep(spec).metrics.set_index("iteration")


def test_rewinding_beats_no_retraining_at_high_sparsity(pair, suite) -> None:
    """The lottery-ticket result: IMP with rewinding keeps the metric where one-shot pruning collapses.

    Held where the family expects it (``Family.lottery``): a law of the lab's MLPs, not of every model."""
    family = get_family(pair.family)
    if (pair.dataset, pair.model) not in family.lottery:
        pytest.skip(f"family {pair.family!r} does not claim the lottery-ticket result for {pair.id}")
    metric, rewind = _curve(suite, pair, "imp-rewind")
    _, oneshot = _curve(suite, pair, "no-retrain")
    dense = rewind.loc[0, metric.name]
    moderate = rewind[rewind["sparsity"] <= 0.87]
    lost = moderate[metric.name].map(lambda v: metric.loss(dense, v))
    assert (lost <= 0.02).all(), f"imp-rewind loses > 2 points by 87 % sparsity:\n{moderate}"
    high = rewind.index[rewind["sparsity"] >= 0.95]
    if len(high) == 0:
        pytest.skip("this run does not reach 95 % sparsity")
    last = high.max()
    gap = metric.loss(rewind.loc[last, metric.name], oneshot.loc[last, metric.name])
    assert gap >= 0.20, f"at {rewind.loc[last, 'sparsity']:.1%} imp-rewind beats no-retrain by only {gap:.3f}"


def test_rewinding_beats_no_retraining_beyond_the_seeds_noise(pair, suite, request) -> None:
    """The lottery result beyond noise: over 3 seeds, IMP rewind's pessimistic bound at >= 95 % sparsity
    (its 95 % interval's lower end for accuracy) beats no-retrain's optimistic bound, at every such iteration.

    Runs the run's seeds when ``--prune-seeds`` gives at least :data:`GATE_SEEDS`, else the first seed
    and the ones after it. The seeds' bands go to the report (``seed-gate-<pair>``).
    """
    family = get_family(pair.family)
    if (pair.dataset, pair.model) not in family.lottery:
        pytest.skip(f"family {pair.family!r} does not claim the lottery-ticket result for {pair.id}")
    opts = suite.opts
    first = {s.method: s for s in suite.specs_of(pair) if s.seed == opts.seed}
    if not {"imp-rewind", "no-retrain"} <= set(first):
        pytest.skip("imp-rewind and no-retrain are not both in this run")
    seeds = opts.seeds if len(opts.seeds) >= GATE_SEEDS else tuple(range(opts.seed, opts.seed + GATE_SEEDS))
    rows = pd.concat(
        [
            suite.sweep(dataclasses.replace(first[method], seed=seed)).metrics.assign(method=method, seed=seed)
            for method in ("imp-rewind", "no-retrain")
            for seed in seeds
        ],
        ignore_index=True,
    )
    metric = family.metric
    bands = seed_bands(rows, metric.name).assign(dataset=pair.dataset, model=pair.model)
    record_extra(request.config, f"seed-gate-{pair.dataset}-{pair.model}", bands)
    gate = separated(rows, metric, "imp-rewind", "no-retrain", min_sparsity=0.95)
    if gate.empty:
        pytest.skip("this run does not reach 95 % sparsity")
    assert (gate["better_n"] == len(seeds)).all() and (gate["worse_n"] == len(seeds)).all(), gate
    assert gate["holds"].all(), f"over seeds {seeds}, imp-rewind does not beat no-retrain beyond noise:\n{gate}"


def test_random_pruning_is_worse_than_magnitude(pair, suite) -> None:
    metric, randomly = _curve(suite, pair, "random")
    _, oneshot = _curve(suite, pair, "no-retrain")
    later = randomly.index[randomly.index > 0]
    worse = [metric.loss(oneshot.loc[k, metric.name], randomly.loc[k, metric.name]) for k in later]
    assert all(w >= -0.01 for w in worse), f"random pruning beats magnitude pruning: {worse}"
    assert sum(worse) > 0, "random pruning is not worse than magnitude pruning on average"


def test_the_metric_holds_where_the_family_claims(pair, suite) -> None:
    """Each of the family's claims (``Family.holds``): a method stays within a margin of dense up to a sparsity.

    Unstructured methods count weights (``sparsity``), structured ones units (``neuron_sparsity``);
    every iteration up to the first that reaches the claim's sparsity is checked.
    """
    holds = get_family(pair.family).holds.get((pair.dataset, pair.model), ())
    ran = {s.method: s for s in suite.specs_of(pair)}
    checked = [h for h in holds if h.method in ran]
    if not checked:
        pytest.skip(f"no claim of family {pair.family!r} on {pair.id} for the methods of this run")
    failures, unreached = [], []
    for hold in checked:
        spec = ran[hold.method]
        metric, curve = suite.loaded(spec).family.metric, suite.sweep(spec).metrics.set_index("iteration")
        column = "neuron_sparsity" if spec.schedule.structured else "sparsity"
        reached = curve.index[curve[column] >= hold.up_to - 1e-9]
        if len(reached) == 0:
            unreached.append(f"{hold.method} reaches only {curve[column].max():.1%} (claim: {hold.up_to:.0%})")
            continue
        dense, upto = curve.loc[0, metric.name], curve.loc[: reached.min()]
        worst = max(metric.loss(dense, v) for v in upto[metric.name])
        if worst > hold.within + 1e-9:
            failures.append(
                f"{hold.method} loses {worst:.3f} of {metric.name} by {upto[column].iloc[-1]:.1%} "
                f"(claim: within {hold.within} up to {hold.up_to:.0%})\n{upto[[column, metric.name]]}"
            )
    assert not failures, "\n".join(failures)
    if unreached:
        pytest.skip("; ".join(unreached))
