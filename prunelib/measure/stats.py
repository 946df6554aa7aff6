"""Latency as evidence: median and IQR of timed rounds, an interval on a speed-up, a two-sample test.

One place for the statistics every latency figure of the lab goes through, so the report's
tables and knee, the speed-up judge (:mod:`prunelib.measure.targets`) and a noise-aware
``compare`` agree on what a number means:

- a latency is the *median* of its rounds, shown with its IQR (timing noise is one-sided and
  heavy-tailed: a few slow rounds move the mean, not the median);
- a speed-up (``median(baseline) / median(case)``) is *measured* only when its 95 % percentile
  bootstrap interval, resampling both sets of rounds with a fixed seed, excludes 1.0;
- where only summaries survive (JSON saved without ``--benchmark-save-data``), the interval is
  approximated from each median's asymptotic standard error, ``1.2533 * (IQR / 1.349) / sqrt(n)``,
  on the log scale (marked "approx." wherever it is shown);
- a metric over seeds is a mean with a Student-t interval (:func:`t_interval`), and two timings saved
  as summaries only (mean, stddev, rounds) are compared by Welch's t-test (:func:`welch_from_summary`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

#: Confidence of every interval shown or judged.
CONFIDENCE = 0.95
#: Bootstrap resamples and seed: fixed, so a table is the same every time it is rebuilt from the same rounds.
RESAMPLES = 2000
SEED = 20260
#: Rounds kept per sample for the bootstrap (evenly spaced order statistics beyond this: a thinned
#: sample has wider, never narrower, intervals).
MAX_BOOTSTRAP_ROUNDS = 4000


@dataclass(frozen=True)
class Summary:
    """Median, quartiles, IQR and mean (seconds) of ``rounds`` timed rounds."""

    median_s: float
    q1_s: float
    q3_s: float
    mean_s: float
    rounds: int

    @property
    def iqr_s(self) -> float:
        return self.q3_s - self.q1_s


def summarize(rounds: Sequence[float]) -> Summary:
    """The :class:`Summary` of timed rounds (seconds); NaN figures for no rounds.

    Quartiles are numpy's default (linear) percentiles, as pytest-benchmark's ``q1``/``q3``.
    """
    x = _rounds(rounds)
    if not len(x):
        return Summary(math.nan, math.nan, math.nan, math.nan, 0)
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    return Summary(float(med), float(q1), float(q3), float(x.mean()), len(x))


@dataclass(frozen=True)
class RatioInterval:
    """A speed-up ``baseline / case`` (ratio of medians) with its ``confidence`` interval ``low``-``high``.

    ``method`` is ``"bootstrap"`` (percentile bootstrap over the rounds) or ``"approx"``
    (normal approximation from medians, IQRs and round counts); NaN bounds when not computable.
    """

    ratio: float
    low: float
    high: float
    method: str = "bootstrap"
    confidence: float = CONFIDENCE

    @property
    def known(self) -> bool:
        return all(math.isfinite(v) for v in (self.ratio, self.low, self.high))

    @property
    def measurable(self) -> bool:
        """The interval excludes 1.0: a speed-up (or slow-down) was measured."""
        return self.known and (self.low > 1.0 or self.high < 1.0)


NO_INTERVAL = RatioInterval(math.nan, math.nan, math.nan, "none")


def _rounds(rounds: Sequence[float]) -> np.ndarray:
    x = np.asarray(rounds, dtype=float).ravel()
    return x[np.isfinite(x) & (x > 0)]


def _thin(x: np.ndarray) -> np.ndarray:
    """At most :data:`MAX_BOOTSTRAP_ROUNDS` evenly spaced order statistics of ``x`` (all of them when fewer)."""
    if len(x) <= MAX_BOOTSTRAP_ROUNDS:
        return x
    return np.sort(x)[np.linspace(0, len(x) - 1, MAX_BOOTSTRAP_ROUNDS).round().astype(int)]


def _ratio_of_medians(base: np.ndarray, case: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(base, axis=axis) / np.median(case, axis=axis)


def speedup_interval(
    baseline: Sequence[float],
    case: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> RatioInterval:
    """``median(baseline) / median(case)`` and its percentile bootstrap interval, both samples resampled.

    Deterministic for a given ``seed``. Needs at least two rounds on each side (else
    :data:`NO_INTERVAL`); non-finite and non-positive rounds are dropped.
    """
    base, cand = _rounds(baseline), _rounds(case)
    if len(base) < 2 or len(cand) < 2:
        return NO_INTERVAL
    ratio = float(np.median(base) / np.median(cand))
    if np.ptp(base) == 0 and np.ptp(cand) == 0:  # no spread at all: every resample gives the same ratio
        return RatioInterval(ratio, ratio, ratio, "bootstrap", confidence)
    res = sps.bootstrap(
        (_thin(base), _thin(cand)),
        _ratio_of_medians,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        batch=100,
        rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return RatioInterval(ratio, float(ci.low), float(ci.high), "bootstrap", confidence)


def _median_se(median: float, iqr: float, n: float) -> float:
    """Asymptotic standard error of a median, with the IQR standing in for 1.349 standard deviations."""
    return 1.2533 * (iqr / 1.349) / math.sqrt(n)


def speedup_interval_from_summary(
    baseline: tuple[float, float, float], case: tuple[float, float, float], confidence: float = CONFIDENCE
) -> RatioInterval:
    """The speed-up ``baseline / case`` from ``(median_s, iqr_s, rounds)`` of each side, approximated.

    Normal on the log scale, each median's standard error from its IQR and rounds
    (:func:`_median_se`); for JSON that kept summaries, not rounds. :data:`NO_INTERVAL` when a
    figure is missing or fewer than two rounds were timed.
    """
    (mb, ib, nb), (mc, ic, nc) = baseline, case
    values = (mb, ib, nb, mc, ic, nc)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return NO_INTERVAL
    if mb <= 0 or mc <= 0 or ib < 0 or ic < 0 or nb < 2 or nc < 2:
        return NO_INTERVAL
    ratio = mb / mc
    se_log = math.hypot(_median_se(mb, ib, nb) / mb, _median_se(mc, ic, nc) / mc)
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    return RatioInterval(ratio, ratio * math.exp(-z * se_log), ratio * math.exp(z * se_log), "approx", confidence)


def speedup_cell(interval: RatioInterval) -> str:
    """A table cell: ``"1.52 (95 % CI 1.31-1.78)"``, or ``"no measurable change (95 % CI 0.93-1.08)"``.

    Shown at two decimals: a change whose interval, so rounded, still holds 1.00 (under half a
    percent) is not shown as one. ``"n/a"`` when no interval could be computed; ``approx.`` marks
    an interval from summaries.
    """
    if not interval.known:
        return "n/a"
    approx = "approx. " if interval.method == "approx" else ""
    low, high = round(interval.low, 2), round(interval.high, 2)
    ci = f"({approx}{100 * interval.confidence:g} % CI {low:.2f}-{high:.2f})"
    if not interval.measurable or low <= 1.0 <= high:
        return f"no measurable change {ci}"
    return f"{interval.ratio:.2f} {ci}"


def differ(a: Sequence[float], b: Sequence[float], alpha: float = 1 - CONFIDENCE) -> tuple[bool, float]:
    """Two-sided Mann-Whitney U test of two sets of rounds: (the distributions differ at ``alpha``, p-value).

    (False, NaN) with fewer than two rounds on a side.
    """
    x, y = _rounds(a), _rounds(b)
    if len(x) < 2 or len(y) < 2:
        return False, math.nan
    p = float(sps.mannwhitneyu(x, y, alternative="two-sided").pvalue)
    return p < alpha, p


def rounds_for(per_call_s: float, budget_s: float, min_rounds: int, max_rounds: int) -> int:
    """Rounds to time: ``budget_s`` worth of calls of ``per_call_s``, within ``[min_rounds, max_rounds]``."""
    if min_rounds < 2 or max_rounds < min_rounds:
        raise ValueError(f"rounds must satisfy 2 <= min_rounds <= max_rounds, got {min_rounds}, {max_rounds}")
    if not (math.isfinite(per_call_s) and per_call_s > 0 and math.isfinite(budget_s) and budget_s >= 0):
        return min_rounds
    return int(min(max_rounds, max(min_rounds, math.ceil(budget_s / per_call_s))))


@dataclass(frozen=True)
class MeanInterval:
    """The mean of ``n`` values (one per seed) and its Student-t ``confidence`` interval ``low``-``high``.

    With fewer than two values there is no interval: ``low`` and ``high`` are NaN (``known`` is
    False) and ``mean`` is the value itself (NaN for none). Values that all agree give
    ``low == high == mean``.
    """

    n: int
    mean: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    @property
    def known(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def bound(self, higher_is_better: bool) -> float:
        """The pessimistic end: ``low`` for a higher-is-better metric, ``high`` otherwise; the mean without an interval."""
        if not self.known:
            return self.mean
        return self.low if higher_is_better else self.high


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> MeanInterval:
    """Mean of ``values`` (non-finite ones dropped) with its Student-t interval, ``n - 1`` degrees of freedom.

    ``mean +- t(0.5 + confidence / 2, n - 1) * s / sqrt(n)`` with ``s`` the sample standard deviation,
    as ``scipy.stats.t.interval(confidence, n - 1, mean, sem)``. See :class:`MeanInterval` for n < 2.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    x = _finite(values)
    n = len(x)
    if n == 0:
        return MeanInterval(0, math.nan, math.nan, math.nan, confidence)
    mean = float(x.mean())
    if n < 2:
        return MeanInterval(1, mean, math.nan, math.nan, confidence)
    sd = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n) if sd > 0 else 0.0
    return MeanInterval(n, mean, mean - half, mean + half, confidence)


def one_sample_p(values: Sequence[float], value: float) -> float:
    """Two-sided p-value of Student's one-sample t-test that ``values`` (seeds) have mean ``value``.

    ``value`` lies outside :func:`t_interval` at ``confidence`` exactly when this is below
    ``1 - confidence``. NaN with fewer than two values; 1.0 or 0.0 when the values do not vary.
    """
    x = _finite(values)
    if len(x) < 2 or not math.isfinite(value):
        return math.nan
    if float(x.std(ddof=1)) == 0:
        return 1.0 if float(x.mean()) == value else 0.0
    return float(sps.ttest_1samp(x, value).pvalue)


def welch_from_summary(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """Two-sided p-value of Welch's t-test that two timings have equal means, from ``(mean, stddev, rounds)`` each.

    For pytest-benchmark JSON saved without its rounds (``stddev`` is the sample standard deviation).
    NaN when a figure is missing or a side has fewer than two rounds; with no spread on either
    side, 1.0 for equal means and 0.0 otherwise.
    """
    (ma, sa, na), (mb, sb, nb) = a, b
    values = (ma, sa, na, mb, sb, nb)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) or na < 2 or nb < 2:
        return math.nan
    if sa < 0 or sb < 0:
        return math.nan
    if sa == 0 and sb == 0:
        return 1.0 if ma == mb else 0.0
    return float(sps.ttest_ind_from_stats(ma, sa, na, mb, sb, nb, equal_var=False).pvalue)


def pooled_summary(parts: Sequence[tuple[float, float, float]]) -> tuple[float, float, float]:
    """``(mean, stddev, rounds)`` of the rounds of several timings taken together, from their summaries alone.

    Exact for the mean and the sample standard deviation of the union (within-part plus
    between-part spread). Parts with a missing figure or no rounds are left out; NaN figures for none.
    """
    ok = [(m, s, n) for m, s, n in parts if all(math.isfinite(v) for v in (m, s, n)) and n >= 1]
    total = sum(n for _, _, n in ok)
    if not ok:
        return (math.nan, math.nan, 0.0)
    mean = sum(m * n for m, _, n in ok) / total
    if total < 2:
        return (mean, math.nan, float(total))
    ss = sum((n - 1) * s * s + n * (m - mean) ** 2 for m, s, n in ok)
    return (mean, math.sqrt(ss / (total - 1)), float(total))
