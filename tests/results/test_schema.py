"""The results schema: sweep columns, extra_info keys, table labels, and which metric a row holds (old JSON too)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from prunelib.families.contract import Metric
from prunelib.results.schema import (
    CHECKPOINT_KEYS,
    EXTRA_INFO_KEYS,
    LEGACY_METRICS,
    label,
    metric_of,
    row_metrics,
    sweep_columns,
)
from prunelib.sweep.metrics import size_metrics

FIXTURE = Path(__file__).resolve().parents[1] / "report" / "fixtures" / "bench-before-families.json"


def test_sweep_columns_put_the_metric_after_the_sparsities() -> None:
    cols = sweep_columns("wer")
    assert cols[:4] == ("iteration", "sparsity", "sparsity_model", "wer")
    assert cols[4:6] == ("latency_mean_s", "latency_std_s") and cols[-1] == "precision"
    assert len(set(cols)) == len(cols)
    assert sweep_columns("accuracy")[4:] == cols[4:] and "accuracy" not in cols


def test_checkpoint_keys_are_static_columns_and_extra_info_keys() -> None:
    columns = set(sweep_columns("accuracy"))
    assert set(CHECKPOINT_KEYS) <= columns and set(CHECKPOINT_KEYS) <= set(EXTRA_INFO_KEYS)
    assert {"latency_mean_s", "latency_std_s", "iteration", "precision"}.isdisjoint(CHECKPOINT_KEYS)
    assert {"family", "dataset", "model", "method", "metric", "higher_is_better", "runtime"} <= set(EXTRA_INFO_KEYS)
    assert len(set(EXTRA_INFO_KEYS)) == len(EXTRA_INFO_KEYS)
    assert not {"accuracy", "wer"} & set(EXTRA_INFO_KEYS)  # the metric's key is named by ``metric``


def test_size_metrics_fill_the_checkpoint_size_keys() -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    sizes = size_metrics(model, model, "fp32")
    assert set(sizes) <= set(CHECKPOINT_KEYS)


@pytest.mark.parametrize(
    "metric, want",
    [("wer", "WER"), ("cer", "CER"), ("f1", "F1"), ("accuracy", "Accuracy"), ("exact_match", "Exact match")],
)
def test_labels(metric: str, want: str) -> None:
    assert label(metric) == want


def test_metric_of_prefers_attrs_then_columns_then_the_legacy_rule() -> None:
    rows = pd.DataFrame({"iteration": [0, 1], "wer": [0.1, 0.2]})
    custom = Metric("cer", higher_is_better=False)
    rows.attrs["metric"] = custom
    assert metric_of(rows) is custom
    named = pd.DataFrame({"metric": ["f1", "f1"], "higher_is_better": [True, True], "f1": [0.5, 0.6]})
    got = metric_of(named)
    assert (got.name, got.higher_is_better) == ("f1", True)
    lower = pd.DataFrame({"metric": ["loss"], "higher_is_better": ["False"], "loss": [2.0]})  # CSV text
    assert metric_of(lower).higher_is_better is False and metric_of(lower).in_range(2.0)
    assert metric_of(pd.DataFrame({"metric": ["wer"], "wer": [0.3]})) == LEGACY_METRICS["wer"]
    assert metric_of(pd.DataFrame({"accuracy": [0.9]})) == LEGACY_METRICS["accuracy"]
    assert metric_of(pd.DataFrame({"wer": [0.2], "accuracy": [math.nan]})) == LEGACY_METRICS["wer"]
    assert metric_of(pd.DataFrame({"wer": [math.nan], "accuracy": [0.9]})) == LEGACY_METRICS["accuracy"]
    with pytest.raises(ValueError, match="mix metrics"):
        metric_of(pd.DataFrame({"metric": ["wer", "accuracy"]}))


def test_row_metrics_read_each_row_old_or_new() -> None:
    rows = pd.DataFrame(
        {
            "metric": [None, None, "wer", "f1"],
            "higher_is_better": [None, None, False, True],
            "accuracy": [0.9, math.nan, math.nan, math.nan],
            "wer": [math.nan, 0.25, 0.3, math.nan],
            "f1": [math.nan, math.nan, math.nan, 0.7],
        }
    )
    got = row_metrics(rows)
    assert got["name"].tolist() == ["accuracy", "wer", "wer", "f1"]
    assert got["value"].tolist() == [0.9, 0.25, 0.3, 0.7]
    assert got["higher_is_better"].tolist() == [True, False, False, True]
    assert got.index.equals(rows.index)


def test_row_metrics_of_rows_without_a_wer_column_or_rows() -> None:
    got = row_metrics(pd.DataFrame({"accuracy": [0.5, 0.75]}))
    assert got["name"].tolist() == ["accuracy"] * 2 and got["value"].tolist() == [0.5, 0.75]
    assert got["higher_is_better"].all()
    assert row_metrics(pd.DataFrame({"accuracy": []})).empty


def test_json_saved_before_families_reads_as_accuracy() -> None:
    bench = json.loads(FIXTURE.read_text(encoding="utf-8"))
    rows = pd.DataFrame([b["extra_info"] for b in bench["benchmarks"]])
    assert len(rows) == 18 and "metric" not in rows
    assert metric_of(rows) == LEGACY_METRICS["accuracy"]
    got = row_metrics(rows)
    assert (got["name"] == "accuracy").all() and got["higher_is_better"].all()
    assert got["value"].tolist() == rows["accuracy"].tolist()
