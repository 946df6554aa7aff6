"""Noise-aware verdicts of ``prunelib compare``: seeds' intervals for the metric, a two-sample test for latency.

Kept apart from :mod:`prunelib.report.compare` (which reads the runs and prints) so each stays small.

- **One row per key.** A run with several seeds holds every key (dataset/model/method/iteration/
  runtime/batch/precision) once per seed; :func:`per_key` makes one row of them: the metric's mean,
  the seeds' values, latency summaries pooled over the seeds' rounds.
- **Metric.** When the baseline has two seeds or more for a key, the last run's mean is flagged only
  when it lies beyond the baseline seeds' Student-t interval at ``1 - alpha`` on the worse side
  (below it for accuracy, above it for WER); its p-value is the one-sample t-test's, so "outside the
  interval" and "p < alpha" are the same statement. With one baseline seed the explicit threshold
  (``--max-accuracy-drop-points``, ``--max-wer-rise-points``) decides, as before seeds.
- **Latency.** Flagged only when the median grew past the minimum effect size
  (``--max-latency-increase-pct``) and beyond the two runs' IQRs combined (as before), AND a
  two-sided test rejects equal timings at ``alpha``: Mann-Whitney U over the saved rounds when
  both runs kept them (``--benchmark-save-data``), else Welch's t-test from each run's mean, stddev
  and rounds. JSON with neither (no rounds, no stddev) is judged by the effect size alone, and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prunelib.config import check_level
from prunelib.measure.stats import differ, one_sample_p, pooled_summary, t_interval, welch_from_summary
from prunelib.report.rows import benchmark_entries
from prunelib.results.schema import label

#: Default significance level of every test (``--alpha``).
ALPHA = 0.05
#: Names of the tests, as the table and regression lines print them.
MANN_WHITNEY, WELCH, ONE_SAMPLE_T, THRESHOLD, NO_TEST = (
    "Mann-Whitney U",
    "Welch t",
    "one-sample t",
    "threshold",
    "none",
)
#: Columns of :func:`per_key` besides the index ``key``.
KEY_COLUMNS: tuple[str, ...] = (
    "latency_median_s",
    "latency_iqr_s",
    "disk_sparse_bytes",
    "throttled",
    "metric",
    "metric_value",
    "higher_is_better",
    "seeds",
    "metric_values",
    "latency_mean_s",
    "latency_std_s",
    "rounds",
    "rounds_data",
)
#: Columns of :func:`per_key` holding a tuple per key (the seeds' values, the raw rounds): not for the history.
PER_SEED_COLUMNS: tuple[str, ...] = ("metric_values", "rounds_data")
#: Slack so that exactly-at-threshold changes (0.98 → 0.97 with a 1-point limit) pass.
EPS = 1e-9


def check_alpha(alpha: float) -> float:
    """``alpha`` when it is a level in (0, 1); raises ValueError otherwise."""
    return check_level("alpha", alpha)


def with_rounds(rows: pd.DataFrame, bench: dict[str, Any]) -> pd.DataFrame:
    """``rows`` (:func:`prunelib.report.rows.benchmark_rows` of ``bench``, same order) with ``rounds_data``:
    the entry's raw timed rounds (``stats.data``, kept with ``--benchmark-save-data``) as a tuple, or None."""
    data: list[tuple[float, ...] | None] = []
    for entry in benchmark_entries(bench):
        stats = entry.get("stats") if isinstance(entry.get("stats"), dict) else {}
        raw = stats.get("data") if isinstance(stats, dict) else None
        if isinstance(raw, list) and len(raw) >= 2 and all(isinstance(v, (int, float)) for v in raw):
            data.append(tuple(float(v) for v in raw))
        else:
            data.append(None)
    return rows.assign(rounds_data=data if len(data) == len(rows) else [None] * len(rows))


def _num(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows:
        return pd.Series(math.nan, index=rows.index, dtype=float)
    return pd.to_numeric(rows[column], errors="coerce")


def _one(part: pd.DataFrame) -> dict[str, Any]:
    """One key's row from its seeds' rows."""
    first = part.iloc[0]
    values = tuple(float(v) for v in _num(part, "metric_value") if math.isfinite(v))
    summary = pooled_summary(
        list(zip(_num(part, "latency_mean_s"), _num(part, "latency_std_s"), _num(part, "rounds"), strict=True))
    )
    data = list(part["rounds_data"]) if "rounds_data" in part else [None]
    return {
        "latency_median_s": float(_num(part, "latency_median_s").median()),
        "latency_iqr_s": float(_num(part, "latency_iqr_s").median()),
        "disk_sparse_bytes": float(_num(part, "disk_sparse_bytes").median()),
        "throttled": bool(part["throttled"].astype(bool).any()) if "throttled" in part else False,
        "metric": first["metric"],
        "metric_value": float(np.mean(values)) if values else math.nan,
        "higher_is_better": bool(first["higher_is_better"]),
        "seeds": len(part),
        "metric_values": values,
        "latency_mean_s": summary[0] if len(part) > 1 else float(_num(part, "latency_mean_s").iloc[0]),
        "latency_std_s": summary[1] if len(part) > 1 else float(_num(part, "latency_std_s").iloc[0]),
        "rounds": summary[2] if len(part) > 1 else float(_num(part, "rounds").iloc[0]),
        "rounds_data": None if any(d is None for d in data) else tuple(v for d in data if d is not None for v in d),
    }


def per_key(rows: pd.DataFrame, name: str = "run") -> tuple[pd.DataFrame, list[str]]:
    """One row per ``key`` of ``rows`` (columns :data:`KEY_COLUMNS`), its seeds taken together; and notes.

    ``rows`` carry ``key``, ``metric``, ``metric_value``, ``higher_is_better``, ``throttled`` and the
    timing columns. Rows repeating a (key, seed) are duplicates: the first is kept and a note says so.
    """
    seed = rows["seed"] if "seed" in rows else pd.Series(math.nan, index=rows.index)
    dup = pd.DataFrame({"key": rows["key"], "seed": pd.to_numeric(seed, errors="coerce")}).duplicated()
    notes = []
    if dup.any():
        notes.append(f"{name}: {int(dup.sum())} duplicate keys (kept the first), e.g. {rows.loc[dup, 'key'].iloc[0]}")
        rows = rows[~dup]
    records = {key: _one(part) for key, part in rows.groupby("key", sort=False)}
    table = pd.DataFrame.from_dict(records, orient="index", columns=list(KEY_COLUMNS))
    table.index.name = "key"
    return table, notes


@dataclass(frozen=True)
class Verdict:
    """Whether a change is flagged, by which ``test`` with which ``p_value`` (NaN for a threshold), and a ``reason``."""

    flagged: bool
    test: str
    p_value: float = math.nan
    reason: str = ""


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def metric_verdict(key: str, base: pd.Series, last: pd.Series, *, limit_points: float, alpha: float = ALPHA) -> Verdict:
    """The metric of ``key``: outside the baseline seeds' interval (two seeds or more), else past ``limit_points``.

    ``limit_points`` is the accuracy-drop or WER-rise limit that applies to the metric's direction.
    ``reason`` is the regression line (without ``REGRESSION``) when flagged.
    """
    bv, nv, higher = float(base["metric_value"]), float(last["metric_value"]), bool(last["higher_is_better"])
    change = 100 * (nv - bv)
    name = label(str(last["metric"]))
    head = f"{key}: {name} {change:+.2f} points ({_pct(bv)} -> {_pct(nv)})"
    values = tuple(base["metric_values"]) if isinstance(base["metric_values"], tuple) else ()
    if len(values) >= 2:
        band = t_interval(values, 1 - alpha)
        p = one_sample_p(values, nv)
        test = f"{ONE_SAMPLE_T} ({band.n} seeds)"
        worse = nv < band.low - EPS if higher else nv > band.high + EPS
        where = f"{'below' if higher else 'above'} the baseline's {band.n} seeds' {100 * (1 - alpha):g} % interval"
        reason = f"{head}, {where} {_pct(band.low)}-{_pct(band.high)}; {test} p={p:.3g}"
        return Verdict(bool(math.isfinite(change) and worse), test, p, reason)
    worse = -change > limit_points + EPS if higher else change > limit_points + EPS
    return Verdict(
        bool(math.isfinite(change) and worse),
        THRESHOLD,
        math.nan,
        f"{head}, limit {'-' if higher else '+'}{limit_points:g}",
    )


def latency_test(base: pd.Series, last: pd.Series, alpha: float = ALPHA) -> tuple[str, float]:
    """``(test, p)`` of the two runs' timings of one key: Mann-Whitney U over saved rounds when both have them,
    else Welch's t from (mean, stddev, rounds); ``("none", NaN)`` when neither can be computed."""
    a, b = base.get("rounds_data"), last.get("rounds_data")
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) >= 2 and len(b) >= 2:
        _, p = differ(a, b, alpha)
        if math.isfinite(p):
            return MANN_WHITNEY, p
    p = welch_from_summary(
        (float(base["latency_mean_s"]), float(base["latency_std_s"]), float(base["rounds"])),
        (float(last["latency_mean_s"]), float(last["latency_std_s"]), float(last["rounds"])),
    )
    return (WELCH, p) if math.isfinite(p) else (NO_TEST, math.nan)


def combined_iqr(base: pd.Series, last: pd.Series) -> float:
    """The two runs' latency IQRs added together (those recorded), seconds: the spread a change must exceed."""
    return float(sum(v for v in (float(base["latency_iqr_s"]), float(last["latency_iqr_s"])) if math.isfinite(v)))


def latency_verdict(
    key: str, base: pd.Series, last: pd.Series, *, pct: float, limit_pct: float, alpha: float, hot: list[str]
) -> Verdict:
    """The latency of ``key``: flagged when its median grew by more than ``limit_pct`` % and the combined IQR, a test
    rejects equal timings at ``alpha`` (:func:`latency_test`; no test possible: the effect size decides) and no
    run in ``hot`` (labels of runs whose board throttled) excuses it.

    ``reason`` is the regression line when flagged, else a note for a change passing the effect size that
    the test or the heat excuses, else ``""``.
    """
    test, p = latency_test(base, last, alpha) if math.isfinite(pct) else (NO_TEST, math.nan)
    lat_b, lat_n = float(base["latency_median_s"]), float(last["latency_median_s"])
    spread = combined_iqr(base, last)
    if not (math.isfinite(pct) and pct > limit_pct + EPS and (lat_n - lat_b) > spread):
        return Verdict(False, test, p)
    if test != NO_TEST and not p < alpha:
        why = f"is within the timing noise ({test_named(test, p)}, alpha {alpha:g}): not called a regression"
        return Verdict(False, test, p, f"{key}: median latency {pct:+.1f}% {why}")
    if hot:
        return Verdict(
            False,
            test,
            p,
            f"{key}: median latency {pct:+.1f}% is not called a regression: the board throttled or its clock "
            f"fell during {' and '.join(hot)} (extra_info 'throttled'); rerun cool, e.g. with --prune-cooldown",
        )
    return Verdict(
        True,
        test,
        p,
        f"{key}: median latency {pct:+.1f}% ({1e3 * lat_b:.3g} ms -> {1e3 * lat_n:.3g} ms, "
        f"combined IQR {1e3 * spread:.2g} ms), limit +{limit_pct:g}%; {test_named(test, p)}",
    )


def test_named(test: str, p: float) -> str:
    """How a regression line states its test: ``"Welch t p=0.0012"``, or that none could be run."""
    if test == NO_TEST:
        return "no test: rounds and stddev not saved"
    return f"{test} p={p:.2g}"


def _fmt(v: float, spec: str) -> str:
    return format(v, spec) if math.isfinite(v) else "n/a"


def change_table(changes: pd.DataFrame) -> pd.DataFrame:
    """The text table of ``prunelib compare`` from ``CompareResult.changes``: one row per key.

    ``latency test`` and ``latency p`` name the test behind the latency verdict and its p-value;
    ``metric test``, ``metric p`` and ``seeds`` appear when some baseline key ran two seeds or more.
    """
    c = changes
    table = pd.DataFrame(
        {
            "key": c["key"],
            "metric": c["metric"],
            "change (points)": c["metric_change_points"].map(lambda v: _fmt(v, "+.2f")),
            "median latency (ms)": [
                f"{1e3 * a:.3g} -> {1e3 * b:.3g}" if math.isfinite(a) and math.isfinite(b) else "n/a"
                for a, b in zip(c["baseline_latency_median_s"], c["last_latency_median_s"])
            ],
            "latency (%)": c["latency_change_pct"].map(lambda v: _fmt(v, "+.1f")),
            "disk size (%)": c["size_change_pct"].map(lambda v: _fmt(v, "+.1f")),
            "latency test": c["latency_test"],
            "latency p": c["latency_p_value"].map(lambda v: _fmt(v, ".2g")),
        }
    )
    if (pd.to_numeric(c["seeds_baseline"], errors="coerce") >= 2).any():
        table.insert(3, "metric test", c["metric_test"])
        table.insert(4, "metric p", c["metric_p_value"].map(lambda v: _fmt(v, ".2g")))
        table.insert(2, "seeds", [f"{a} -> {b}" for a, b in zip(c["seeds_baseline"], c["seeds_last"])])
    return table
