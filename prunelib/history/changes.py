"""Change points of a history: where a benchmark's latency or metric moved between consecutive runs of one machine.

A change is decided as the noise-aware ``prunelib compare`` decides a regression
(:mod:`prunelib.report.noise`, compare's default thresholds), applied to each pair of consecutive
runs of the same machine and the same benchmark, in both directions:

- **latency**: the median moved by more than :data:`LATENCY_LIMIT_PCT` % (``--max-latency-increase-pct``)
  AND by more than the two runs' IQRs added together (the effect size), AND a test rejects equal
  timings at ``alpha`` (0.05, ``--alpha``): Mann-Whitney U over the raw rounds when both runs kept
  them (``--benchmark-json`` files, ``--benchmark-save-data``), else Welch's t from each run's mean,
  stddev and rounds (:func:`prunelib.report.noise.latency_test`). The change names its test and
  p-value; where neither test can be computed the effect size decides, and the change says so;
- **accuracy / WER** (the family's metric): it moved by more than :data:`METRIC_LIMIT_POINTS`
  percentage points (``--max-accuracy-drop-points`` / ``--max-wer-rise-points``); worse or better.
  A benchmark is one seed's, so compare's interval over seeds does not apply here.

A change on a run whose board throttled is marked so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from prunelib.report.noise import ALPHA, EPS, NO_TEST, check_alpha, latency_test, test_named
from prunelib.results.schema import label

#: ``prunelib compare``'s default ``--max-latency-increase-pct`` (tests check they stay equal).
LATENCY_LIMIT_PCT = 10.0
#: ``prunelib compare``'s default ``--max-accuracy-drop-points`` and ``--max-wer-rise-points``.
METRIC_LIMIT_POINTS = 1.0
NO_ROUNDS = "no test possible: no rounds or stddev saved (effect size only)"
CHANGE_COLUMNS: tuple[str, ...] = (
    "machine",
    "benchmark",
    "quantity",
    "direction",
    "before_run",
    "after_run",
    "before_datetime",
    "after_datetime",
    "before",
    "after",
    "change",
    "evidence",
    "before_report",
    "after_report",
    "before_source",
    "after_source",
)


@dataclass(frozen=True)
class Rule:
    """Thresholds of a change: latency in percent of the earlier median, the metric in percentage points."""

    latency_pct: float = LATENCY_LIMIT_PCT
    metric_points: float = METRIC_LIMIT_POINTS
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        for name in ("latency_pct", "metric_points"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        check_alpha(self.alpha)

    def describe(self) -> str:
        """One paragraph for the dashboard: how a change is decided."""
        return (
            f"A change is marked between two consecutive runs of the same machine and benchmark when the median "
            f"latency moved by more than {self.latency_pct:g} % and by more than the two runs' IQRs added together "
            f"and a test rejects equal timings at alpha {self.alpha:g} (Mann-Whitney U over the raw rounds where both "
            "runs saved them, else Welch's t from each run's mean, stddev and rounds), or when accuracy (WER) moved "
            f"by more than {self.metric_points:g} percentage point(s): the rules of the noise-aware 'prunelib "
            "compare' (--max-latency-increase-pct, --alpha, --max-accuracy-drop-points, --max-wer-rise-points), in "
            "both directions. Each change names its test and p-value."
        )


#: The rule with ``prunelib compare``'s default thresholds.
DEFAULT_RULE = Rule()


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.3g} ms"


def _latency_change(
    a: pd.Series, b: pd.Series, rounds: dict[tuple[str, str], tuple[float, ...]], rule: Rule
) -> dict[str, str] | None:
    m0, m1 = float(a.get("latency_median_s", math.nan)), float(b.get("latency_median_s", math.nan))
    if not (math.isfinite(m0) and math.isfinite(m1) and m0 > 0):
        return None
    pct = 100 * (m1 / m0 - 1)
    noise = sum(
        v
        for v in (float(a.get("latency_iqr_s", math.nan)), float(b.get("latency_iqr_s", math.nan)))
        if math.isfinite(v)
    )
    if not (abs(pct) > rule.latency_pct + EPS and abs(m1 - m0) > noise):
        return None
    timings = [
        pd.Series(
            {
                "rounds_data": rounds.get((r["run"], r["benchmark"])),
                **{k: r.get(k, math.nan) for k in ("latency_mean_s", "latency_std_s", "rounds")},
            },
            dtype=object,
        )
        for r in (a, b)
    ]
    test, p = latency_test(timings[0], timings[1], rule.alpha)
    if test != NO_TEST and not p < rule.alpha:
        return None  # within the timing noise
    evidence = test_named(test, p) if test != NO_TEST else NO_ROUNDS
    if bool(a.get("throttled")) or bool(b.get("throttled")):
        evidence += "; the board throttled (not called a regression)"
    return {
        "quantity": "latency (median)",
        "direction": "slower" if pct > 0 else "faster",
        "before": _ms(m0),
        "after": _ms(m1),
        "change": f"{pct:+.1f} % (IQRs {_ms(noise)})",
        "evidence": evidence,
    }


def _metric_change(a: pd.Series, b: pd.Series, rule: Rule) -> dict[str, str] | None:
    v0, v1 = float(a.get("metric_value", math.nan)), float(b.get("metric_value", math.nan))
    if not (math.isfinite(v0) and math.isfinite(v1)) or a.get("metric_name") != b.get("metric_name"):
        return None
    points = 100 * (v1 - v0)
    if abs(points) <= rule.metric_points + EPS:
        return None
    higher = b.get("higher_is_better")
    better = (points > 0) == (True if higher is None or pd.isna(higher) else bool(higher))
    return {
        "quantity": label(str(b["metric_name"])),
        "direction": "better" if better else "worse",
        "before": f"{100 * v0:.2f} %",
        "after": f"{100 * v1:.2f} %",
        "change": f"{points:+.2f} points",
        "evidence": f"threshold {rule.metric_points:g} point(s)",
    }


def find_changes(
    wide_rows: pd.DataFrame, rounds: dict[tuple[str, str], tuple[float, ...]] | None = None, rule: Rule = DEFAULT_RULE
) -> pd.DataFrame:
    """The changes (:data:`CHANGE_COLUMNS`), newest first, of a history's :func:`prunelib.history.table.wide` rows."""
    rounds = rounds or {}
    records = []
    if not wide_rows.empty:
        ordered = wide_rows.sort_values(["datetime", "run"], kind="stable")
        for (machine, benchmark), part in ordered.groupby(["machine", "benchmark"], sort=True):
            rows = [r for _, r in part.iterrows()]
            for a, b in zip(rows, rows[1:]):
                for found in (_latency_change(a, b, rounds, rule), _metric_change(a, b, rule)):
                    if found is None:
                        continue
                    records.append(
                        {
                            "machine": machine,
                            "benchmark": benchmark,
                            **found,
                            **{f"before_{k}": a[k] for k in ("run", "datetime", "report", "source")},
                            **{f"after_{k}": b[k] for k in ("run", "datetime", "report", "source")},
                        }
                    )
    out = pd.DataFrame.from_records(records, columns=list(CHANGE_COLUMNS))
    if out.empty:
        return out
    return out.sort_values(
        ["after_datetime", "machine", "benchmark", "quantity"], ascending=[False, True, True, True], kind="stable"
    ).reset_index(drop=True)
