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
  on the log scale (marked "approx." wherever it is shown).
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
