"""Several seeds of a sweep: counting them, per-iteration means and t intervals, the pessimistic bound, a gate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from prunelib.families.contract import Metric
from prunelib.results.seeds import (
    METRIC_HIGH,
    METRIC_LOW,
    SEEDS_N,
    mean_over_seeds,
    pessimistic,
    seed_bands,
    seed_count,
    separated,
    several_seeds,
)

ACC = Metric("accuracy", higher_is_better=True)
WER = Metric("wer", higher_is_better=False, high=math.inf)


def seeded(per_seed: dict[int, list[float]], method: str = "imp-rewind", metric: str = "accuracy") -> pd.DataFrame:
    """One row per (seed, iteration); amount 0.5 per iteration."""
    rows = [
        {
            "method": method,
            "iteration": i,
            "seed": seed,
            "sparsity": 1 - 0.5**i,
            metric: v,
            "latency_median_s": 1e-3 * (1 + seed),
            "name": f"s{seed}",
        }
        for seed, values in per_seed.items()
        for i, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_seed_count() -> None:
    assert seed_count(pd.DataFrame({"iteration": [0, 1]})) == 1
    assert seed_count(pd.DataFrame({"seed": [math.nan, math.nan]})) == 1
    assert seed_count(seeded({0: [0.9], 1: [0.8], 2: [0.7]})) == 3
    assert not several_seeds(seeded({4: [0.9, 0.8]})) and several_seeds(seeded({0: [0.9], 1: [0.8]}))


def test_one_seed_comes_back_unchanged() -> None:
    one = seeded({0: [0.98, 0.97, 0.9]})
    assert mean_over_seeds(one, "accuracy") is one
    assert pessimistic(one, ACC).tolist() == one["accuracy"].tolist()


def test_mean_and_t_interval_per_iteration() -> None:
    values = {0: [0.98, 0.96], 1: [0.97, 0.95], 2: [0.99, 0.94]}
    out = mean_over_seeds(seeded(values), "accuracy")
    assert out["iteration"].tolist() == [0, 1] and (out[SEEDS_N] == 3).all() and "seed" not in out
    x = np.array([0.96, 0.95, 0.94])
    low, high = sps.t.interval(0.95, 2, loc=x.mean(), scale=sps.sem(x))
    it1 = out.set_index("iteration").loc[1]
    assert it1["accuracy"] == pytest.approx(0.95)
    assert (it1[METRIC_LOW], it1[METRIC_HIGH]) == (pytest.approx(low), pytest.approx(high))
    assert it1["latency_median_s"] == pytest.approx(2e-3)  # other numbers: median over the seeds
    assert it1["name"] == "s0"  # text: the first seed's
    bands = seed_bands(seeded(values), "accuracy")
    assert list(bands.columns) == ["method", "iteration", "sparsity", "n", "mean", "low", "high"]
    assert bands["low"].iloc[1] == pytest.approx(low)


def test_pessimistic_is_the_worse_end() -> None:
    out = mean_over_seeds(seeded({0: [0.2, 0.3], 1: [0.22, 0.36]}, metric="wer"), "wer")
    assert pessimistic(out, WER).tolist() == pytest.approx(out[METRIC_HIGH].tolist())
    assert pessimistic(out, Metric("wer", True, high=math.inf)).tolist() == pytest.approx(out[METRIC_LOW].tolist())


def test_missing_iteration_or_value_raises() -> None:
    with pytest.raises(ValueError, match="iteration"):
        mean_over_seeds(pd.DataFrame({"seed": [0, 1], "accuracy": [0.9, 0.8]}), "accuracy")
    with pytest.raises(ValueError, match="wer"):
        seed_bands(seeded({0: [0.9]}), "wer")
    twice = pd.concat([seeded({0: [0.9, 0.8], 1: [0.9, 0.7]})] * 2, ignore_index=True)  # e.g. two runtimes
    with pytest.raises(ValueError, match="one row per"):
        mean_over_seeds(twice, "accuracy")


def test_separated_compares_a_lower_bound_with_an_upper_bound_at_high_sparsity() -> None:
    """The bench gate: IMP with rewind's lower bound at >= 95 % sparsity above no-retrain's upper bound."""
    imp = seeded(
        {0: [0.98, 0.97, 0.97, 0.96, 0.95], 1: [0.98, 0.975, 0.97, 0.965, 0.955], 2: [0.98, 0.97, 0.965, 0.96, 0.95]}
    )
    weak = seeded(
        {0: [0.98, 0.9, 0.6, 0.3, 0.2], 1: [0.98, 0.92, 0.5, 0.35, 0.25], 2: [0.98, 0.91, 0.55, 0.32, 0.9]},
        method="no-retrain",
    )
    rows = pd.concat([imp, weak], ignore_index=True)
    gate = separated(rows, ACC, "imp-rewind", "no-retrain", min_sparsity=0.9)
    assert gate["iteration"].tolist() == [4] and gate["sparsity"].iloc[0] == pytest.approx(0.9375)
    at4 = gate.set_index("iteration").loc[4]
    # no-retrain's seeds at iteration 4 (0.2, 0.25, 0.9) are spread: its upper bound is above IMP's lower bound
    assert not at4["holds"] and at4["worse_bound"] > at4["better_bound"]
    assert (gate["better_n"] == 3).all() and (gate["worse_n"] == 3).all()
    at3 = separated(rows, ACC, "imp-rewind", "no-retrain", min_sparsity=0.85).set_index("iteration").loc[3]
    assert at3["holds"] and at3["better_bound"] > at3["worse_bound"]
    one = separated(rows[rows["seed"] == 0], ACC, "imp-rewind", "no-retrain", 0.85)
    assert len(one) and not one["holds"].any()  # one seed shows no separation
