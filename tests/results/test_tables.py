"""The lab's table: columns, units and rounding from a sweep's raw columns; markdown output."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from prunelib.families.contract import Metric
from prunelib.results.schema import metric_of, sweep_columns
from prunelib.results.tables import lab_table, to_markdown, wide_table


def sweep_frame(metric: str = "accuracy", extra: dict | None = None) -> pd.DataFrame:
    rows = {
        "iteration": [0, 1, 2],
        "sparsity": [0.0, 0.33, 0.5511],
        "sparsity_model": [0.0, 0.329, 0.55],
        metric: [0.981234, 0.97651, 0.9],
        "latency_mean_s": [1.23456e-4, 9.87654e-5, 0.5],
        "latency_std_s": [1.2345e-6, 3.21e-6, 0.01234],
        "latency_median_s": [1.13456e-4, 9.57654e-5, 0.45],
        "latency_iqr_s": [2.345e-6, 1.21e-6, 0.02234],
        "params_total": [266_610] * 3,
        "params_nonzero": [266_610, 178_764, 119_888],
        "disk_dense_bytes": [1_067_456, 1_067_456, 1_067_456],
        "disk_sparse_bytes": [5_335_000, 3_576_321, 2_400_499],
    }
    rows.update(extra or {})
    return pd.DataFrame(rows)


def test_sweep_columns_are_the_lab_columns_then_the_deploy_columns() -> None:
    assert sweep_columns("accuracy") == (
        "iteration",
        "sparsity",
        "sparsity_model",
        "accuracy",
        "latency_mean_s",
        "latency_std_s",
        "latency_median_s",
        "latency_iqr_s",
        "params_total",
        "params_nonzero",
        "disk_dense_bytes",
        "disk_sparse_bytes",
        "disk_compact_bytes",
        "disk_bound_bytes",
        "params_deployed",
        "flops",
        "neuron_sparsity",
        "precision",
    )
    assert sweep_columns("wer")[3] == "wer" and "accuracy" not in sweep_columns("wer")
    assert sweep_columns("wer")[:3] + sweep_columns("wer")[4:] == sweep_columns("f1")[:3] + sweep_columns("f1")[4:]


def test_lab_table_columns_units_and_rounding() -> None:
    table = lab_table(sweep_frame())
    assert list(table.columns) == [
        "Iteration",
        "Sparsity (%)",
        "Accuracy",
        "Latency (s)",
        "Disk Size (MB)",
        "Latency IQR (s)",
        "Dense size (MB)",
    ]
    assert table["Iteration"].tolist() == [0, 1, 2]
    assert table["Sparsity (%)"].tolist() == [0.0, 33.0, 55.1]
    assert table["Accuracy"].tolist() == [0.9812, 0.9765, 0.9]
    assert table["Latency (s)"].tolist() == [1.13e-4, 9.58e-5, 0.45]  # the median, three significant digits
    assert table["Disk Size (MB)"].tolist() == [5.335, 3.576, 2.4]  # the lab's sparse COO figure, 10^6 bytes
    assert table["Latency IQR (s)"].tolist() == [2.3e-6, 1.2e-6, 0.022]
    assert table["Dense size (MB)"].tolist() == [1.067] * 3


@pytest.mark.parametrize("missing", ["column", "values"])
def test_a_sweep_saved_without_medians_shows_its_means_and_says_so(missing: str) -> None:
    df = sweep_frame()
    old = df.drop(columns=["latency_median_s", "latency_iqr_s"]) if missing == "column" else df
    if missing == "values":
        old = df.assign(latency_median_s=[1e-4, None, None])  # one table never mixes medians and means
    table = lab_table(old)
    assert "Latency (s)" not in table.columns and "Latency IQR (s)" not in table.columns
    assert table["Latency, mean (s)"].tolist() == [1.23e-4, 9.88e-5, 0.5]
    assert table["Latency std (s)"].tolist() == [1.2e-6, 3.2e-6, 0.012]


def test_untimed_rows_keep_the_median_header() -> None:
    untimed = sweep_frame().assign(latency_mean_s=math.nan, latency_median_s=math.nan)
    assert lab_table(untimed)["Latency (s)"].isna().all()


def test_lab_table_for_speech_and_compact_sizes() -> None:
    df = sweep_frame("wer", {"disk_compact_bytes": [400_000, 250_000, 1_999]})
    assert metric_of(df).name == "wer" and metric_of(sweep_frame()).name == "accuracy"
    table = lab_table(df)
    assert "WER" in table.columns and "Accuracy" not in table.columns
    assert table["Compact size (MB)"].tolist() == [0.4, 0.25, 0.002]


def test_lab_table_of_a_familys_own_metric() -> None:
    df = sweep_frame("top5_error")
    named = df.assign(metric="top5_error", higher_is_better=False)
    assert "Top5 error" in lab_table(named).columns  # the rows say which metric they hold
    table = lab_table(df, Metric("top5_error", higher_is_better=False, high=math.inf))
    assert list(table.columns)[:3] == ["Iteration", "Sparsity (%)", "Top5 error"]
    assert table["Top5 error"].tolist() == [0.9812, 0.9765, 0.9]
    assert "F1" in lab_table(sweep_frame("f1"), Metric("f1", higher_is_better=True)).columns
    with pytest.raises(KeyError):
        lab_table(sweep_frame(), Metric("wer", higher_is_better=False))  # a metric the rows do not hold
    attrs = sweep_frame("wer")
    attrs.attrs["metric"] = Metric("wer", higher_is_better=False, high=math.inf)
    assert "WER" in lab_table(attrs).columns


def test_lab_table_needs_only_the_lab_columns() -> None:
    minimal = sweep_frame()[["iteration", "sparsity", "accuracy", "latency_median_s", "disk_sparse_bytes"]]
    assert list(lab_table(minimal).columns) == [
        "Iteration",
        "Sparsity (%)",
        "Accuracy",
        "Latency (s)",
        "Disk Size (MB)",
    ]
    with pytest.raises(KeyError):
        lab_table(minimal.drop(columns=["disk_sparse_bytes"]))


def test_lab_table_resets_the_index() -> None:
    table = lab_table(sweep_frame().iloc[[2, 0]])
    assert table.index.tolist() == [0, 1] and table["Iteration"].tolist() == [2, 0]


def test_markdown_is_a_github_table_without_index() -> None:
    text = to_markdown(lab_table(sweep_frame()))
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 2 + 3
    assert lines[0].startswith("|") and "Sparsity (%)" in lines[0]
    assert set(lines[1]) <= set("|-: ")
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "55.1" in lines[4]


def test_wide_table_adds_compact_flops_and_neurons_when_present() -> None:
    df = sweep_frame(
        extra={
            "disk_compact_bytes": [1_067_000, 500_000, 250_000],
            "disk_bound_bytes": [1_066_000, 499_000, 249_000],
            "flops": [266_200, 125_600, 60_925],
            "neuron_sparsity": [0.0, 0.5, 0.75],
            "precision": ["fp32"] * 3,
        }
    )
    table = wide_table(df)
    assert list(table.columns) == [*lab_table(df).columns, "FLOPs (M)", "Neurons pruned (%)"]
    assert table["Compact size (MB)"].tolist() == [1.067, 0.5, 0.25]
    assert table["FLOPs (M)"].tolist() == [0.266, 0.126, 0.0609]
    assert table["Neurons pruned (%)"].tolist() == [0.0, 50.0, 75.0]
    no_neurons = df.assign(neuron_sparsity=float("nan")).iloc[[2, 0]]
    assert "Neurons pruned (%)" not in wide_table(no_neurons)
    assert wide_table(no_neurons)["FLOPs (M)"].tolist() == [0.0609, 0.266]  # rows follow the index reset
    assert list(wide_table(sweep_frame()).columns) == list(lab_table(sweep_frame()).columns)  # nothing to add
    text = to_markdown(wide_table(df))
    assert "FLOPs (M)" in text.splitlines()[0] and "0.0609" in text


# ---------------------------------------------------------------- several seeds
def three_seeds() -> pd.DataFrame:
    frames = []
    for seed, shift in ((0, -0.01), (1, 0.0), (2, 0.01)):
        f = sweep_frame()
        frames.append(f.assign(seed=seed, accuracy=f["accuracy"] + shift))
    return pd.concat(frames, ignore_index=True)


def test_several_seeds_give_the_mean_and_its_interval_beside_the_metric() -> None:
    table = wide_table(three_seeds())
    one = wide_table(sweep_frame())
    assert list(table.columns[:6]) == [
        "Iteration",
        "Sparsity (%)",
        "Accuracy",
        "Accuracy low",
        "Accuracy high",
        "Seeds",
    ]
    assert [c for c in table.columns if c not in ("Accuracy low", "Accuracy high", "Seeds")] == list(one.columns)
    assert table["Iteration"].tolist() == [0, 1, 2] and (table["Seeds"] == 3).all()
    assert table["Accuracy"].tolist() == one["Accuracy"].tolist()  # the mean of symmetric shifts
    half = 4.302653 * 0.01 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd of (-0.01, 0, 0.01) = 0.01
    assert table["Accuracy low"].iloc[0] == pytest.approx(round(0.981234 - half, 4))
    assert table["Accuracy high"].iloc[0] == pytest.approx(round(0.981234 + half, 4))


def test_one_seed_column_changes_nothing() -> None:
    pd.testing.assert_frame_equal(wide_table(sweep_frame().assign(seed=7)), wide_table(sweep_frame()))
