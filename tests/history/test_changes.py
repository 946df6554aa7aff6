"""Change points: compare's thresholds between consecutive runs of one machine, both directions, p-values where rounds exist."""

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
    assert len(slower) == 12 and (slower["evidence"] == changes.NO_ROUNDS).all()  # every Pi benchmark, 3rd run
    worse = pi[pi["direction"] == "worse"]
    assert set(worse["benchmark"].str.split("/").str[2]) == {"imp-rewind"} and len(worse) == 2
    assert worse["before_report"].str.contains("reports").all()
    laptop = found[found["machine"].str.startswith("Intel")]
    assert set(laptop["direction"]) == {"faster"} and laptop["evidence"].str.startswith("Mann-Whitney p=").all()


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
    assert len(changes.find_changes(_rows(medians, iqr))) == flagged


def test_metric_rule_and_custom_rule() -> None:
    rows = _rows([1.0, 1.0, 1.0], 0.0, accuracy=[0.90, 0.895, 0.93])
    found = changes.find_changes(rows)
    assert list(found["direction"]) == ["better"] and found["change"].iloc[0] == "+3.50 points"
    assert len(changes.find_changes(rows, rule=changes.Rule(metric_points=0.4))) == 2
    with pytest.raises(ValueError, match="latency_pct"):
        changes.Rule(latency_pct=-1)
    assert "10 %" in changes.DEFAULT_RULE.describe()
