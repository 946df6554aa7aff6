"""Latency statistics on synthetic rounds: summaries, the bootstrap interval on a speed-up, the two-sample test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from prunelib.measure.stats import (
    NO_INTERVAL,
    MeanInterval,
    RatioInterval,
    differ,
    one_sample_p,
    pooled_summary,
    rounds_for,
    speedup_cell,
    speedup_interval,
    speedup_interval_from_summary,
    summarize,
    t_interval,
    welch_from_summary,
)


def lognormal_rounds(median_s: float, n: int, seed: int, sigma: float = 0.3) -> np.ndarray:
    """Rounds like a timer's: skewed to the slow side, with a few slow outliers."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(math.log(median_s), sigma, n)
    x[rng.choice(n, n // 50, replace=False)] *= 5  # other processes: 2 % of rounds five times slower
    return x


def test_summary_matches_numpy_percentiles_and_ignores_what_is_not_a_time() -> None:
    s = summarize([4.0, 1.0, 3.0, 2.0, math.nan, -1.0])
    assert (s.median_s, s.q1_s, s.q3_s, s.iqr_s, s.rounds) == (2.5, 1.75, 3.25, 1.5, 4)
    assert s.mean_s == 2.5
    empty = summarize([])
    assert empty.rounds == 0 and math.isnan(empty.median_s)


def test_identical_distributions_give_no_measurable_change() -> None:
    base, case = lognormal_rounds(1e-4, 800, seed=1), lognormal_rounds(1e-4, 800, seed=2)
    iv = speedup_interval(base, case)
    assert iv.low < 1.0 < iv.high and not iv.measurable
    assert speedup_cell(iv).startswith("no measurable change (95 % CI ")


def test_a_two_fold_shift_is_detected_and_shown_with_its_interval() -> None:
    base, case = lognormal_rounds(2e-4, 400, seed=3), lognormal_rounds(1e-4, 400, seed=4)
    iv = speedup_interval(base, case)
    assert iv.measurable and 1.8 < iv.low < iv.ratio < iv.high < 2.2
    assert speedup_cell(iv) == f"{iv.ratio:.2f} (95 % CI {iv.low:.2f}-{iv.high:.2f})"
    slower = speedup_interval(case, base)  # a slow-down is measured too
    assert slower.measurable and slower.high < 1.0


def test_the_interval_is_deterministic_for_a_seed_and_depends_on_it() -> None:
    base, case = lognormal_rounds(1.1e-4, 300, seed=5), lognormal_rounds(1e-4, 300, seed=6)
    assert speedup_interval(base, case) == speedup_interval(base, case)
    assert speedup_interval(base, case, seed=1) != speedup_interval(base, case, seed=2)


def test_more_rounds_narrow_the_interval() -> None:
    few = speedup_interval(lognormal_rounds(1e-4, 20, seed=7), lognormal_rounds(1e-4, 20, seed=8))
    many = speedup_interval(lognormal_rounds(1e-4, 2000, seed=7), lognormal_rounds(1e-4, 2000, seed=8))
    assert many.high - many.low < (few.high - few.low) / 3


def test_too_few_rounds_give_no_interval_and_rounds_without_spread_a_point() -> None:
    assert speedup_interval([1.0], [1.0, 2.0]) == NO_INTERVAL and speedup_cell(NO_INTERVAL) == "n/a"
    flat = speedup_interval([2.0] * 10, [1.0] * 10)
    assert (flat.ratio, flat.low, flat.high) == (2.0, 2.0, 2.0) and flat.measurable


@settings(max_examples=25, deadline=None)
@given(st.floats(0.3, 3.0), st.integers(0, 2**16))
def test_the_interval_holds_the_ratio_of_medians(shift: float, seed: int) -> None:
    base, case = lognormal_rounds(1e-3 * shift, 60, seed), lognormal_rounds(1e-3, 60, seed + 1)
    iv = speedup_interval(base, case, resamples=300)
    assert iv.ratio == pytest.approx(np.median(base) / np.median(case))
    assert iv.low <= iv.ratio <= iv.high


def test_the_summary_approximation_agrees_with_the_bootstrap() -> None:
    base, case = lognormal_rounds(1.5e-4, 1000, seed=9), lognormal_rounds(1e-4, 1000, seed=10)
    boot = speedup_interval(base, case)
    sb, sc = summarize(base), summarize(case)
    approx = speedup_interval_from_summary((sb.median_s, sb.iqr_s, sb.rounds), (sc.median_s, sc.iqr_s, sc.rounds))
    assert approx.method == "approx" and approx.ratio == pytest.approx(boot.ratio)
    assert approx.low == pytest.approx(boot.low, rel=0.02) and approx.high == pytest.approx(boot.high, rel=0.02)
    assert "approx. 95 % CI" in speedup_cell(approx)


def test_the_summary_approximation_needs_every_figure() -> None:
    assert speedup_interval_from_summary((1.0, 0.1, math.nan), (1.0, 0.1, 10)) == NO_INTERVAL
    assert speedup_interval_from_summary((1.0, 0.1, 1), (1.0, 0.1, 10)) == NO_INTERVAL
    assert speedup_interval_from_summary((0.0, 0.1, 10), (1.0, 0.1, 10)) == NO_INTERVAL


def test_mann_whitney_tells_a_shift_from_noise() -> None:
    same, p_same = differ(lognormal_rounds(1e-4, 300, seed=11), lognormal_rounds(1e-4, 300, seed=12))
    shifted, p_shift = differ(lognormal_rounds(1.3e-4, 300, seed=13), lognormal_rounds(1e-4, 300, seed=14))
    assert not same and p_same > 0.05 and shifted and p_shift < 1e-6
    assert differ([1.0], [1.0, 2.0]) == (False, pytest.approx(math.nan, nan_ok=True))


def test_rounds_follow_the_budget_within_bounds() -> None:
    assert rounds_for(1e-3, 0.25, 20, 1000) == 250
    assert rounds_for(0.5, 0.25, 20, 1000) == 20  # a slow call still gets its minimum
    assert rounds_for(1e-7, 0.25, 20, 1000) == 1000
    assert rounds_for(math.nan, 0.25, 20, 1000) == 20
    with pytest.raises(ValueError, match="min_rounds"):
        rounds_for(1e-3, 0.25, 1, 10)


def test_a_ratio_interval_is_measurable_only_when_it_excludes_one() -> None:
    assert RatioInterval(1.2, 1.01, 1.4).measurable and RatioInterval(0.8, 0.7, 0.99).measurable
    assert not RatioInterval(1.2, 0.99, 1.4).measurable and not NO_INTERVAL.measurable


def test_a_change_too_small_for_two_decimals_is_not_shown_as_one() -> None:
    tiny = RatioInterval(0.998, 0.9975, 0.9985)  # thousands of rounds: measurable, but under half a percent
    assert tiny.measurable and speedup_cell(tiny) == "no measurable change (95 % CI 1.00-1.00)"
    assert speedup_cell(RatioInterval(0.99, 0.985, 0.994)) == "0.99 (95 % CI 0.98-0.99)"


# ---------------------------------------------------------------- seeds' t interval, Welch from summaries


@pytest.mark.parametrize("values", [[0.97, 0.975, 0.981], [0.5, 0.9], [0.1, 0.2, 0.25, 0.4, 0.41]])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_t_interval_matches_scipys(values: list[float], confidence: float) -> None:
    x = np.asarray(values)
    low, high = sps.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    band = t_interval(values, confidence)
    assert band.n == len(x) and band.mean == pytest.approx(x.mean())
    assert (band.low, band.high) == (pytest.approx(low), pytest.approx(high))
    assert band.known and band.confidence == confidence


def test_t_interval_of_one_seed_has_no_bounds_and_agreeing_seeds_have_no_width() -> None:
    one = t_interval([0.9, math.nan])
    assert one.n == 1 and one.mean == 0.9 and math.isnan(one.low) and math.isnan(one.high) and not one.known
    assert one.bound(True) == 0.9 and one.bound(False) == 0.9  # no interval: the value itself
    same = t_interval([0.9, 0.9, 0.9])
    assert (same.low, same.mean, same.high) == (0.9, 0.9, 0.9)
    assert t_interval([]).n == 0 and math.isnan(t_interval([]).mean)
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1.0, 2.0], confidence=1.0)


def test_pessimistic_bound_is_low_for_accuracy_and_high_for_wer() -> None:
    band = MeanInterval(3, 0.5, 0.4, 0.6)
    assert band.bound(higher_is_better=True) == 0.4 and band.bound(higher_is_better=False) == 0.6


def test_one_sample_p_is_below_alpha_exactly_outside_the_interval() -> None:
    values = [0.97, 0.975, 0.981]
    band = t_interval(values, 0.95)
    assert one_sample_p(values, band.low - 1e-6) < 0.05 < one_sample_p(values, band.low + 1e-6)
    assert one_sample_p(values, band.high + 1e-6) < 0.05 < one_sample_p(values, band.mean)
    assert math.isnan(one_sample_p([0.9], 0.8))
    assert one_sample_p([0.9, 0.9], 0.9) == 1.0 and one_sample_p([0.9, 0.9], 0.8) == 0.0


def test_welch_from_summaries_matches_welch_on_the_rounds() -> None:
    a, b = lognormal_rounds(1e-3, 60, 1), lognormal_rounds(1.2e-3, 40, 2)
    expected = sps.ttest_ind(a, b, equal_var=False).pvalue
    p = welch_from_summary((a.mean(), a.std(ddof=1), len(a)), (b.mean(), b.std(ddof=1), len(b)))
    assert p == pytest.approx(expected)
    assert math.isnan(welch_from_summary((1.0, 0.1, 1), (1.0, 0.1, 10)))  # one round: no test
    assert math.isnan(welch_from_summary((1.0, math.nan, 10), (1.0, 0.1, 10)))
    assert welch_from_summary((1.0, 0.0, 5), (1.0, 0.0, 5)) == 1.0
    assert welch_from_summary((1.0, 0.0, 5), (2.0, 0.0, 5)) == 0.0


def test_pooled_summary_is_the_summary_of_the_union() -> None:
    parts = [lognormal_rounds(1e-3, n, seed) for n, seed in ((30, 1), (50, 2), (7, 3))]
    union = np.concatenate(parts)
    mean, sd, n = pooled_summary([(p.mean(), p.std(ddof=1), len(p)) for p in parts])
    assert (mean, sd, n) == (pytest.approx(union.mean()), pytest.approx(union.std(ddof=1)), len(union))
    assert math.isnan(pooled_summary([])[0])
