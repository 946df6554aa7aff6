"""Speed-up judgement: ratios of medians, with their bootstrap interval, against fixed and FLOP-relative targets."""

from __future__ import annotations

import numpy as np
import pytest

from prunelib.measure.targets import Hold, Target, Timing, judge


def rounds(fastest: float, median: float, n: int = 201) -> list[float]:
    """``n`` rounds from ``fastest`` up, median ``median``, a little spread (the middle half within 2 %)."""
    x = np.concatenate([[fastest], np.linspace(0.99 * median, 1.01 * median, n - 2), [3 * median]])
    return sorted(x.tolist())


TIMINGS = {
    ("torch", "dense"): Timing.of(rounds(0.9, 1.0), 1000),
    ("torch", "half"): Timing.of(rounds(0.5, 0.6), 500),
    ("torch", "tenth"): Timing.of(rounds(0.2, 0.25), 100),
}


def test_flop_fraction_target_scales_with_the_ideal_ratio() -> None:
    table, failures = judge("m", TIMINGS, [Target("torch", "half", "torch", "flop-fraction", 0.8)])
    row = table.iloc[0]
    assert row["speedup"] == pytest.approx(1.67) and row["ideal_flop_ratio"] == 2.0 and row["required"] == 1.6
    assert row["speedup_of_minima"] == pytest.approx(1.8) and bool(row["met"]) and not failures


def test_a_missed_target_is_reported_with_model_variant_and_runtime() -> None:
    table, failures = judge("sew", TIMINGS, [Target("torch", "tenth", "torch", "speedup", 5.0)])
    assert not bool(table.iloc[0]["met"])
    assert len(failures) == 1 and failures[0].startswith("sew tenth/torch: 95 % CI ")
    assert failures[0].endswith("(median ratio 4.00x), lower bound < required 5.00x")


def test_a_target_is_met_only_by_the_lower_bound_of_the_interval() -> None:
    """A median ratio at the target is not enough when the rounds cannot tell it from less."""
    rng = np.random.default_rng(0)
    noisy = {
        ("torch", "dense"): Timing.of(rng.lognormal(np.log(2.0), 0.5, 15), 1000),
        ("torch", "half"): Timing.of(rng.lognormal(np.log(1.0), 0.5, 15), 500),
    }
    ratio = noisy[("torch", "dense")].median_s / noisy[("torch", "half")].median_s
    target = Target("torch", "half", "torch", "speedup", 0.95 * ratio)
    table, failures = judge("m", noisy, [target])
    row = table.iloc[0]
    assert row["speedup_low"] < target.value < row["speedup"] <= row["speedup_high"]
    assert not bool(row["met"]) and failures


def test_without_rounds_there_is_no_interval_and_the_target_is_missed() -> None:
    bare = {("torch", "dense"): Timing(0.9, 1.0, 1000), ("torch", "half"): Timing(0.5, 0.6, 500)}
    table, failures = judge("m", bare, [Target("torch", "half", "torch", "speedup", 1.0)])
    assert table.iloc[0]["speedup_shown"] == "n/a" and not bool(table.iloc[0]["met"])
    assert failures == ["m half/torch: 1.67x with no interval (fewer than 2 rounds on a side), required 1.00x"]


def test_the_shown_speed_up_says_when_no_change_was_measurable() -> None:
    same = {("torch", "dense"): TIMINGS[("torch", "dense")], ("torch", "same"): TIMINGS[("torch", "dense")]}
    table, _ = judge("m", same, [Target("torch", "same", "torch", "report", 1.0)])
    row = table.iloc[0]
    assert row["speedup_shown"] == f"no measurable change (95 % CI {row['speedup_low']:.2f}-{row['speedup_high']:.2f})"
    assert row["speedup_low"] <= 1.0 <= row["speedup_high"]
    table, _ = judge("m", TIMINGS, [Target("torch", "half", "torch", "report", 1.0)])
    assert table.iloc[0]["speedup_shown"].startswith("1.67 (95 % CI 1.6")


def test_a_timing_of_rounds_has_their_fastest_and_median() -> None:
    t = Timing.of([3.0, 1.0, 2.0], 7)
    assert (t.fastest_s, t.median_s, t.flops, t.rounds) == (1.0, 2.0, 7, (3.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="at least one round"):
        Timing.of([], 7)


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
    assert not bool(row["gated"]) and row["not_gated_because"] == "reported only"


def with_dense_bytes(n: int | None) -> dict:
    """:data:`TIMINGS` with the dense baseline's weights counted at ``n`` bytes."""
    dense = TIMINGS[("torch", "dense")]
    return {**TIMINGS, ("torch", "dense"): Timing.of(dense.rounds, dense.flops, weight_bytes=n)}


MIB = 1024**2
MEMORY_BOUND = Target("torch", "tenth", "torch", "speedup", 5.0, regime="memory-bound")  # measured 4.00x: missed


def test_a_memory_bound_target_is_not_gated_where_the_dense_weights_fit_in_cache() -> None:
    table, failures = judge("m", with_dense_bytes(6 * MIB), [MEMORY_BOUND], cache_bytes=32 * MIB)
    row = table.iloc[0]
    assert not failures and not bool(row["met"]) and not bool(row["gated"])  # still judged, shown as missed
    assert row["not_gated_because"] == (
        "memory-bound target; dense weights (6.0 MiB) fit in this CPU's last-level cache (32.0 MiB)"
    )


@pytest.mark.parametrize(("weights", "cache"), [(6 * MIB, 1 * MIB), (None, 32 * MIB), (6 * MIB, None)])
def test_a_memory_bound_target_is_gated_on_the_device_or_when_a_size_is_unknown(weights, cache) -> None:
    """The Pi 4 (1 MiB L2 under 6 MiB of weights) gates it; so does a machine that cannot say."""
    table, failures = judge("m", with_dense_bytes(weights), [MEMORY_BOUND], cache_bytes=cache)
    assert bool(table.iloc[0]["gated"]) and table.iloc[0]["not_gated_because"] == ""
    assert len(failures) == 1 and failures[0].startswith("m tenth/torch: 95 % CI ")


def test_an_any_regime_target_is_gated_whatever_the_cache() -> None:
    target = Target("torch", "tenth", "torch", "speedup", 5.0)
    _, failures = judge("m", with_dense_bytes(6 * MIB), [target], cache_bytes=32 * MIB)
    assert len(failures) == 1


def test_an_unknown_regime_is_rejected() -> None:
    with pytest.raises(ValueError, match="regime must be one of any, memory-bound"):
        Target("torch", "half", "torch", "speedup", 2.0, regime="cache-bound")


def test_a_hold_is_a_fraction_and_a_non_negative_margin() -> None:
    assert Hold("imp-rewind", 0.9, 0.01).up_to == 0.9
    for bad in [(0.0, 0.01), (1.0, 0.01), (0.9, -0.1)]:
        with pytest.raises(ValueError, match="invalid hold"):
            Hold("imp-rewind", *bad)
