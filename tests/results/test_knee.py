"""Knee finder: the monotone rule, WER direction, ratios, validation; a property over random sweeps."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from prunelib.results.knee import KNEE_COLUMNS, find_knee, knee_table


def sweep(metric_values: list[float], metric: str = "accuracy", method: str | None = None) -> pd.DataFrame:
    """A sweep with amount 0.2 per iteration, latency falling and size shrinking with sparsity."""
    n = len(metric_values)
    sparsity = [1 - 0.8**i for i in range(n)]
    df = pd.DataFrame(
        {
            "iteration": list(range(n)),
            "sparsity": sparsity,
            metric: metric_values,
            "latency_mean_s": [0.002 * (1 - 0.5 * s) for s in sparsity],
            "disk_dense_bytes": [1_000_000] * n,
            "disk_sparse_bytes": [int(5_000_000 * (1 - s)) for s in sparsity],
        }
    )
    if method is not None:
        df["method"] = method
    return df


def test_knee_is_last_iteration_within_tolerance() -> None:
    out = find_knee(sweep([0.98, 0.985, 0.975, 0.971, 0.95, 0.90]))
    assert list(out.columns) == [c for c in KNEE_COLUMNS if c != "method"]
    row = out.iloc[0]
    assert row["knee_iteration"] == 3
    assert row["knee_sparsity"] == pytest.approx(1 - 0.8**3)
    assert row["change_points"] == pytest.approx(-0.9)
    assert "first failing iteration 4" in row["note"]


def test_monotone_rule_ignores_a_later_recovery() -> None:
    # iteration 2 fails; iteration 3 is back within a point but must not become the knee
    out = find_knee(sweep([0.98, 0.978, 0.95, 0.979, 0.97]))
    assert out.iloc[0]["knee_iteration"] == 1


def test_exactly_at_tolerance_passes() -> None:
    out = find_knee(sweep([0.98, 0.97, 0.9699]), tolerance=0.01)
    assert out.iloc[0]["knee_iteration"] == 1


def test_wer_must_not_rise_more_than_tolerance() -> None:
    out = find_knee(sweep([0.20, 0.19, 0.205, 0.211, 0.25], metric="wer"), tolerance=0.01)
    row = out.iloc[0]
    assert row["metric"] == "wer" and row["knee_iteration"] == 2
    assert row["dense_metric"] == pytest.approx(0.20)


def test_ratios_are_against_the_dense_model() -> None:
    row = find_knee(sweep([0.98] * 5)).iloc[0]
    s = 1 - 0.8**4
    assert row["knee_iteration"] == 4 and row["note"] == "all iterations pass"
    assert row["latency_ratio"] == pytest.approx(1 - 0.5 * s)
    assert row["speedup"] == pytest.approx(1 / (1 - 0.5 * s))
    assert row["size_ratio"] == pytest.approx(int(5_000_000 * (1 - s)) / 1_000_000)
    assert math.isnan(row["compact_size_ratio"])  # no compact size recorded


def test_per_method() -> None:
    df = pd.concat([sweep([0.98, 0.97, 0.96], method="no-retrain"), sweep([0.98, 0.98, 0.979], method="imp-rewind")])
    out = find_knee(df).set_index("method")
    assert out.loc["no-retrain", "knee_iteration"] == 1
    assert out.loc["imp-rewind", "knee_iteration"] == 2


def test_unordered_rows_are_walked_by_sparsity() -> None:
    df = sweep([0.98, 0.975, 0.95, 0.94]).sample(frac=1.0, random_state=3)
    assert find_knee(df).iloc[0]["knee_iteration"] == 1


def test_missing_dense_row_or_metric_is_a_note() -> None:
    no_dense = find_knee(sweep([0.98, 0.97, 0.96]).iloc[1:]).iloc[0]
    assert "no dense row" in no_dense["note"] and math.isnan(no_dense["knee_sparsity"])
    nan_dense = find_knee(sweep([math.nan, 0.97])).iloc[0]
    assert "missing" in nan_dense["note"]
    nan_mid = find_knee(sweep([0.98, math.nan, 0.98])).iloc[0]
    assert nan_mid["knee_iteration"] == 0  # unknown accuracy cannot be shown to be within tolerance


@pytest.mark.parametrize("tol", [-0.01, math.nan, math.inf, "x"])
def test_bad_tolerance_raises(tol: object) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        find_knee(sweep([0.98, 0.97]), tolerance=tol)  # type: ignore[arg-type]


def test_bad_frames_raise() -> None:
    with pytest.raises(ValueError, match="iteration"):
        find_knee(pd.DataFrame({"sparsity": [0.0], "accuracy": [0.9]}))
    with pytest.raises(ValueError, match="needs its metric column 'accuracy'"):  # no metric named: the legacy rule
        find_knee(pd.DataFrame({"iteration": [0], "sparsity": [0.0]}))
    with pytest.raises(ValueError, match="needs its metric column 'f1'"):
        find_knee(pd.DataFrame({"iteration": [0], "sparsity": [0.0], "metric": ["f1"], "higher_is_better": [True]}))
    with pytest.raises(ValueError, match="duplicated iterations: \\[1\\]"):
        find_knee(pd.concat([sweep([0.98, 0.97]), sweep([0.98, 0.97]).iloc[1:]]))
    with pytest.raises(TypeError):
        find_knee([1, 2])  # type: ignore[arg-type]


def test_knee_table_is_readable() -> None:
    df = pd.concat([sweep([0.98, 0.975, 0.95], method="no-retrain"), sweep([0.98, 0.98], method="imp-rewind")])
    table = knee_table(find_knee(df))
    assert list(table.columns[:3]) == ["Method", "Dense Accuracy (%)", "Knee iteration"]
    assert "Compact size / dense" not in table.columns
    assert table.set_index("Method").loc["no-retrain", "Knee sparsity (%)"] == 20.0


@settings(max_examples=60, deadline=None)
@given(
    drops=st.lists(st.floats(-0.02, 0.05, allow_nan=False), min_size=1, max_size=12),
    tol=st.floats(0.0, 0.03),
)
@example(drops=[0.01, 0.0, 0.02], tol=0.01)
def test_knee_and_every_lower_sparsity_pass_and_the_next_fails(drops: list[float], tol: float) -> None:
    values = [0.9] + [0.9 - d for d in drops]
    row = find_knee(sweep(values), tolerance=tol).iloc[0]
    k = int(row["knee_iteration"])
    assert all(v >= 0.9 - tol - 1e-9 for v in values[: k + 1])
    if k + 1 < len(values):
        assert values[k + 1] < 0.9 - tol - 1e-9


# ---------------------------------------------------------------- speed-up shown as evidence
def timed(df: pd.DataFrame, median: list[float], iqr: list[float], rounds: int = 200) -> pd.DataFrame:
    return df.assign(latency_median_s=median, latency_iqr_s=iqr, rounds=rounds)


def test_a_speed_up_is_shown_with_its_interval_when_the_interval_excludes_one() -> None:
    df = timed(sweep([0.98, 0.98, 0.98]), [2e-3, 1.5e-3, 1e-3], [1e-4, 1e-4, 1e-4])
    row = find_knee(df).iloc[0]
    assert row["latency_stat"] == "median" and row["speedup"] == pytest.approx(2.0)
    assert row["latency_knee_s"] == 1e-3 and row["speedup_ci_method"] == "approx"
    assert 1.0 < row["speedup_low"] < 2.0 < row["speedup_high"]
    cell = knee_table(find_knee(df))["Speed-up (x)"].iloc[0]
    assert cell == f"2.00 (approx. 95 % CI {row['speedup_low']:.2f}-{row['speedup_high']:.2f})"


def test_noise_as_large_as_the_change_shows_no_measurable_change() -> None:
    """The mean of noisy rounds made dense kernels look 0.9-2.2x faster; the medians' interval holds 1.0."""
    df = timed(sweep([0.98, 0.98, 0.98]), [3.0e-5, 3.0e-5, 2.9e-5], [2e-6, 2e-6, 2e-6], rounds=20)
    df["latency_mean_s"] = [6.6e-5, 4.0e-5, 3.0e-5]  # a few slow rounds in the dense model's 0.25 s
    row = find_knee(df).iloc[0]
    assert row["speedup"] == pytest.approx(3.0 / 2.9) and row["speedup_low"] < 1.0 < row["speedup_high"]
    cell = knee_table(find_knee(df))["Speed-up (x)"].iloc[0]
    assert cell.startswith("no measurable change (approx. 95 % CI ")


def test_a_sweep_saved_without_medians_compares_means_and_says_so() -> None:
    row = find_knee(sweep([0.98] * 3)).iloc[0]
    assert row["latency_stat"] == "mean" and math.isnan(row["speedup_low"]) and row["speedup_ci_method"] == "none"
    cell = knee_table(find_knee(sweep([0.98] * 3)))["Speed-up (x)"].iloc[0]
    assert cell == f"{row['speedup']:.2f} (means; no interval)"


def test_medians_without_rounds_or_iqr_are_shown_without_an_interval() -> None:
    df = sweep([0.98] * 3).assign(latency_median_s=[2e-3, 1.5e-3, 1e-3])
    cell = knee_table(find_knee(df))["Speed-up (x)"].iloc[0]
    assert cell == "2.00 (no interval: rounds or IQR not saved)"


# ---------------------------------------------------------------- several seeds: the pessimistic bound
def seeded_sweep(spread: list[float], metric: str = "accuracy") -> pd.DataFrame:
    """Three seeds of one sweep; at iteration i the seeds sit at mean - spread[i], mean, mean + spread[i]."""
    means = [0.98, 0.978, 0.975, 0.973, 0.95]
    if metric == "wer":
        means = [0.2, 0.202, 0.205, 0.207, 0.23]
    frames = []
    for k in (-1, 0, 1):
        f = sweep(means, metric)
        frames.append(f.assign(seed=k + 1, **{metric: f[metric] + k * pd.Series(spread)}))
    return pd.concat(frames, ignore_index=True)


def test_with_three_seeds_the_knee_uses_the_lower_bound() -> None:
    tight = seeded_sweep([0.0, 0.001, 0.001, 0.001, 0.001])
    wide = seeded_sweep([0.0, 0.001, 0.006, 0.001, 0.001])  # iteration 2's mean is the same, its seeds spread
    by_mean = find_knee(tight.groupby("iteration", as_index=False).mean(numeric_only=True).drop(columns="seed"))
    assert by_mean["knee_iteration"].iloc[0] == 3  # 0.973 is within 1 point of 0.98, 0.95 is not
    assert find_knee(tight)["knee_iteration"].iloc[0] == 3
    knee = find_knee(wide).iloc[0]
    assert knee["knee_iteration"] == 1  # lower bound at iteration 2: 0.975 - 4.30 * 0.006 / sqrt(3) < 0.97
    assert knee["seeds"] == 3 and "lower bound" in knee["judged_by"]
    assert "first failing iteration 2 (accuracy lower bound, paired by seed, 0.960" in knee["note"]
    assert knee["knee_metric"] == pytest.approx(0.978)  # the mean is reported
    assert knee["knee_metric_low"] < 0.978 < knee["knee_metric_high"]
    assert list(find_knee(wide).columns) == [
        *KNEE_COLUMNS[1:],
        "seeds",
        "knee_metric_low",
        "knee_metric_high",
        "judged_by",
    ]
    table = knee_table(find_knee(wide))
    assert table["Seeds"].tolist() == [3] and table["Knee Accuracy 95 % interval (%)"].iloc[0].startswith("97.")


def test_with_three_seeds_wer_uses_the_upper_bound() -> None:
    knee = find_knee(seeded_sweep([0.0, 0.001, 0.006, 0.001, 0.001], "wer")).iloc[0]
    assert knee["knee_iteration"] == 1 and "upper bound" in knee["judged_by"]


def test_one_seed_knee_has_no_seed_columns() -> None:
    one = sweep([0.98, 0.975, 0.96]).assign(seed=0)
    assert list(find_knee(one).columns) == list(KNEE_COLUMNS[1:])  # no method column
    pd.testing.assert_frame_equal(find_knee(one), find_knee(sweep([0.98, 0.975, 0.96])))


def test_two_rows_of_one_seed_and_iteration_raise() -> None:
    twice = pd.concat([seeded_sweep([0.0] * 5), seeded_sweep([0.0] * 5).iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="duplicated iterations"):
        find_knee(twice)


def test_seeds_are_paired_with_their_own_dense_model() -> None:
    """Three dense models 2 points apart (as quick LeNets are), each losing the same: the spread of the
    dense models is not noise in the change, so the knee is where the mean's is, and the dense row passes."""
    shifted = seeded_sweep([0.0] * 5)
    shifted["accuracy"] += (shifted["seed"] - 2) * 0.02  # each seed's whole curve 2 points above the last
    knee = find_knee(shifted).iloc[0]
    assert knee["knee_iteration"] == 3 and "paired by seed" in knee["judged_by"]
    assert knee["knee_metric_low"] < 0.95  # the metric's own interval is wide; the paired change's is not
    noisy = shifted.copy()
    noisy.loc[(noisy["iteration"] == 2) & (noisy["seed"] == 1), "accuracy"] -= 0.03  # one seed's change drops
    assert find_knee(noisy).iloc[0]["knee_iteration"] == 1
