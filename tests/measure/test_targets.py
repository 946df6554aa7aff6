"""Speed-up judgement: ratios of medians against fixed and FLOP-relative targets."""

from __future__ import annotations

import pytest

from prunelib.measure.targets import Hold, Target, Timing, judge

TIMINGS = {
    ("torch", "dense"): Timing(0.9, 1.0, 1000),
    ("torch", "half"): Timing(0.5, 0.6, 500),
    ("torch", "tenth"): Timing(0.2, 0.25, 100),
}


def test_flop_fraction_target_scales_with_the_ideal_ratio() -> None:
    table, failures = judge("m", TIMINGS, [Target("torch", "half", "torch", "flop-fraction", 0.8)])
    row = table.iloc[0]
    assert row["speedup"] == pytest.approx(1.67) and row["ideal_flop_ratio"] == 2.0 and row["required"] == 1.6
    assert row["speedup_of_minima"] == pytest.approx(1.8) and bool(row["met"]) and not failures


def test_a_missed_target_is_reported_with_model_variant_and_runtime() -> None:
    table, failures = judge("sew", TIMINGS, [Target("torch", "tenth", "torch", "speedup", 5.0)])
    assert not bool(table.iloc[0]["met"])
    assert failures == ["sew tenth/torch: 4.00x < required 5.00x"]


def test_targets_without_timings_are_left_out() -> None:
    table, failures = judge("m", TIMINGS, [Target("onnxruntime", "half", "onnxruntime", "speedup", 1.0)])
    assert table.empty and not failures


def test_invalid_targets_are_rejected() -> None:
    with pytest.raises(ValueError, match="target"):
        Target("torch", "half", "torch", "ratio", 1.0)
    with pytest.raises(ValueError, match="target"):
        Target("torch", "half", "torch", "speedup", 0.0)


def test_a_report_target_is_shown_and_never_fails() -> None:
    table, failures = judge("m", TIMINGS, [Target("torch", "half", "torch", "report", 1.0)])
    row = table.iloc[0]
    assert row["speedup"] == pytest.approx(1.67) and row["met"] is None and not failures
    assert row["required"] != row["required"]  # NaN: nothing is required


def test_a_hold_is_a_fraction_and_a_non_negative_margin() -> None:
    assert Hold("imp-rewind", 0.9, 0.01).up_to == 0.9
    for bad in [(0.0, 0.01), (1.0, 0.01), (0.9, -0.1)]:
        with pytest.raises(ValueError, match="invalid hold"):
            Hold("imp-rewind", *bad)
