"""Change points: the noise-aware compare's rules between consecutive runs of one machine, both directions, each with its test."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from prunelib.history import changes
from prunelib.history.table import build_history, wide
from prunelib.report.compare import build_parser
from tests.history.fixture_runs import write_history


def test_thresholds_are_compares_defaults() -> None:
    args = build_parser().parse_args(["a.json", "b.json"])
    assert changes.LATENCY_LIMIT_PCT == args.max_latency_increase_pct
    assert changes.METRIC_LIMIT_POINTS == args.max_accuracy_drop_points == args.max_wer_rise_points


def test_changes_of_the_fixture_history(tmp_path: Path) -> None:
    f = write_history(tmp_path)
    h = build_history([f["storage"], f["reports"], f["laptop"]])
    found = changes.find_changes(wide(h.table), h.rounds)
    assert list(found["after_datetime"]) == sorted(found["after_datetime"], reverse=True)
    pi = found[found["machine"].str.startswith("Cortex")]
    slower = pi[pi["direction"] == "slower"]
    assert len(slower) == 12 and slower["evidence"].str.startswith("Welch t p=").all()  # every Pi benchmark, 3rd run
    worse = pi[pi["direction"] == "worse"]
    assert set(worse["benchmark"].str.split("/").str[2]) == {"imp-rewind"} and len(worse) == 2
    assert worse["before_report"].str.contains("reports").all()
    laptop = found[found["machine"].str.startswith("Intel")]
    assert set(laptop["direction"]) == {"faster"} and laptop["evidence"].str.startswith("Mann-Whitney U p=").all()


def _rows(medians: list[float], iqr: float, accuracy: list[float] | None = None) -> pd.DataFrame:
    n = len(medians)
    return pd.DataFrame(
        {
            "run": [f"r{i}" for i in range(n)],
            "datetime": pd.date_range("2026-01-01", periods=n, tz="UTC"),
            "machine": "m",
            "benchmark": "b",
            "report": "",
            "source": "",
            "throttled": False,
            "latency_median_s": medians,
            "latency_iqr_s": iqr,
            "metric_name": "accuracy",
            "metric_value": accuracy or [0.9] * n,
            "higher_is_better": True,
        }
    )


@pytest.mark.parametrize(
    "medians, iqr, flagged",
    [
        ([1.0, 1.09], 0.0, 0),
        ([1.0, 1.11], 0.0, 1),
        ([1.0, 1.3], 0.4, 0),
        ([1.0, 0.8], 0.01, 1),
        ([1.0, 1.0, 1.5], 0.0, 1),
    ],
    ids=["within-10pct", "past-10pct", "within-iqr", "faster", "only-consecutive"],
)
def test_latency_rule(medians: list[float], iqr: float, flagged: int) -> None:
    found = changes.find_changes(_rows(medians, iqr))  # no mean, stddev or rounds: the effect size decides
    assert len(found) == flagged and (found["evidence"] == changes.NO_ROUNDS).all()


@pytest.mark.parametrize("std, flagged", [(0.01, True), (2.0, False)], ids=["tight", "noisy"])
def test_a_latency_change_needs_the_test_to_reject(std: float, flagged: bool) -> None:
    """+50 % passes the effect size both times; Welch's t from (mean, stddev, 20 rounds) decides."""
    rows = _rows([1.0, 1.5], 0.0).assign(latency_mean_s=[1.0, 1.5], latency_std_s=std, rounds=20)
    found = changes.find_changes(rows)
    assert len(found) == int(flagged)
    if flagged:
        assert found["evidence"].iloc[0].startswith("Welch t p=")
    rounds = {("r0", "b"): (1.0, 1.01, 0.99) * 7, ("r1", "b"): (1.5, 1.51, 1.49) * 7}
    by_rounds = changes.find_changes(rows, rounds)  # raw rounds: Mann-Whitney U, whatever the stddev says
    assert len(by_rounds) == 1 and by_rounds["evidence"].iloc[0].startswith("Mann-Whitney U p=")
    assert len(changes.find_changes(rows, rounds, changes.Rule(alpha=1e-12))) == 0


def test_metric_rule_and_custom_rule() -> None:
    rows = _rows([1.0, 1.0, 1.0], 0.0, accuracy=[0.90, 0.895, 0.93])
    found = changes.find_changes(rows)
    assert list(found["direction"]) == ["better"] and found["change"].iloc[0] == "+3.50 points"
    assert len(changes.find_changes(rows, rule=changes.Rule(metric_points=0.4))) == 2
    with pytest.raises(ValueError, match="latency_pct"):
        changes.Rule(latency_pct=-1)
    with pytest.raises(ValueError, match="alpha must be a significance level"):
        changes.Rule(alpha=1.5)
    assert "10 %" in changes.DEFAULT_RULE.describe()
