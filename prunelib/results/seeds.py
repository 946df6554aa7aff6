"""Several seeds of one sweep: the metric per iteration as a mean with a 95 % Student-t interval.

Rows of a sweep run with several seeds (results rows from ``extra_info``, or a CLI results frame)
repeat every (method, iteration) once per seed, told apart by the schema's ``seed`` key. Nothing
here drops a row of the input: ``results.csv`` keeps one row per seed, and these functions make
the views tables, plots, the knee and gates read.

Rules, one place:

- the metric of a (method, iteration) over its seeds is the mean, with the 95 % Student-t interval
  of :func:`prunelib.measure.stats.t_interval` (``low``, ``high``);
- with one seed there is no interval: ``low`` and ``high`` are NaN and ``n`` is 1, and
  :func:`mean_over_seeds` returns its input unchanged, so one-seed tables, plots and knees are
  exactly those of before seeds;
- the *pessimistic bound* is ``low`` for a higher-is-better metric (accuracy) and ``high`` for a
  lower-is-better one (WER); the mean when there is no interval;
- other numeric columns of a (method, iteration) (sparsity, latency figures, sizes) are the median
  over its seeds; text columns are the first seed's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from prunelib.families.contract import Metric
from prunelib.measure.stats import CONFIDENCE, t_interval

#: The schema's key (``EXTRA_INFO_KEYS``) that tells the seeds of one sweep apart.
SEED = "seed"
#: Keys one band is taken over (those present in the rows).
BAND_KEYS: tuple[str, ...] = ("method", "iteration")
#: Columns :func:`mean_over_seeds` adds beside the metric (which holds the mean).
SEEDS_N, METRIC_LOW, METRIC_HIGH = "seeds", "metric_low", "metric_high"
#: Columns of :func:`seed_bands` after its keys.
BAND_COLUMNS: tuple[str, ...] = ("sparsity", "n", "mean", "low", "high")


def seed_count(rows: pd.DataFrame) -> int:
    """Distinct seeds in ``rows`` (1 when there is no ``seed`` column or no seed is recorded)."""
    if SEED not in rows:
        return 1
    return max(1, int(pd.to_numeric(rows[SEED], errors="coerce").dropna().nunique()))


def several_seeds(rows: pd.DataFrame) -> bool:
    """Whether ``rows`` hold two seeds or more (so bands and intervals apply)."""
    return seed_count(rows) >= 2


def _keys(rows: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """The ``by`` keys present; raises ValueError without ``iteration`` or when a seed repeats a key's row."""
    keys = [k for k in by if k in rows]
    if "iteration" not in keys:
        raise ValueError(f"rows need an 'iteration' column to be grouped over seeds; have {list(rows.columns)}")
    if SEED in rows and rows.duplicated([*keys, SEED]).any():
        raise ValueError(
            f"one row per ({', '.join(keys)}, seed) expected, e.g. runtime torch, batch 1, fp32 "
            "(prunelib.report.rows.lab_rows); other runtimes' rows would count as extra seeds"
        )
    return keys


def seed_bands(
    rows: pd.DataFrame, value: str, by: Sequence[str] = BAND_KEYS, confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Per (method, iteration) (the ``by`` keys present): the seeds' ``n``, ``mean``, ``low`` and ``high`` of ``value``.

    ``sparsity`` is the median over the seeds (NaN without a sparsity column). Works with one seed
    too (``n`` 1, NaN bounds). Sorted by the keys.

    Raises:
        ValueError: ``value`` or ``iteration`` missing.
    """
    if value not in rows:
        raise ValueError(f"rows lack the column {value!r}; have {list(rows.columns)}")
    keys = _keys(rows, by)
    out = []
    for key, part in rows.groupby(keys, sort=True, dropna=False):
        band = t_interval(pd.to_numeric(part[value], errors="coerce").to_numpy(dtype=float), confidence)
        sparsity = pd.to_numeric(part["sparsity"], errors="coerce").median() if "sparsity" in part else math.nan
        out.append((*(key if isinstance(key, tuple) else (key,)), sparsity, band.n, band.mean, band.low, band.high))
    return pd.DataFrame(out, columns=[*keys, *BAND_COLUMNS])


def mean_over_seeds(
    rows: pd.DataFrame, metric: str, by: Sequence[str] = BAND_KEYS, confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """One row per (method, iteration): ``metric`` the mean over seeds, with ``seeds``, ``metric_low``, ``metric_high``.

    ``rows`` itself (not a copy with new columns) when it holds at most one seed. Other numeric
    columns are the median over the seeds, others the first seed's; ``seed`` is dropped.
    """
    if not several_seeds(rows) or metric not in rows:
        return rows
    keys = _keys(rows, by)
    bands = seed_bands(rows, metric, keys, confidence).set_index(keys)
    numeric = [
        c
        for c in rows.columns
        if c not in (*keys, SEED) and pd.api.types.is_numeric_dtype(rows[c]) and not pd.api.types.is_bool_dtype(rows[c])
    ]
    other = [c for c in rows.columns if c not in (*keys, SEED, *numeric)]
    grouped = rows.groupby(keys, sort=True, dropna=False)
    out = grouped[numeric].median()
    if other:
        out = out.join(grouped[other].first())
    out[metric] = bands["mean"]
    out[SEEDS_N] = bands["n"].astype(int)
    out[METRIC_LOW] = bands["low"]
    out[METRIC_HIGH] = bands["high"]
    ordered = [c for c in rows.columns if c in out.columns or c in keys]
    return out.reset_index()[[*ordered, SEEDS_N, METRIC_LOW, METRIC_HIGH]]


def pessimistic(rows: pd.DataFrame, metric: Metric) -> pd.Series:
    """Per row of :func:`mean_over_seeds`: the interval's worse end for ``metric`` (``metric_low`` when
    higher is better, else ``metric_high``), the metric itself where there is no interval (one seed)."""
    value = pd.to_numeric(rows[metric.name], errors="coerce")
    end = METRIC_LOW if metric.higher_is_better else METRIC_HIGH
    if end not in rows:
        return value
    bound = pd.to_numeric(rows[end], errors="coerce")
    return bound.where(bound.notna(), value)


def separated(
    rows: pd.DataFrame,
    metric: Metric,
    better: str,
    worse: str,
    min_sparsity: float = 0.0,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Does method ``better`` beat ``worse`` beyond the seeds' noise, iteration by iteration?

    ``rows``: one per (method, iteration, seed) of one (dataset, model), e.g.
    ``prunelib.report.rows.lab_rows(benchmark_rows(bench))`` of a run's JSON, or the CLI's results
    frames with a ``method`` and ``seed`` column each.

    For each iteration both methods ran at sparsity >= ``min_sparsity`` (``better``'s median over
    seeds): ``better_bound`` is ``better``'s pessimistic end (its interval's lower bound for
    accuracy, upper for WER), ``worse_bound`` is ``worse``'s optimistic end, and ``holds`` says
    ``better_bound`` is strictly better. E.g. a gate "IMP-rewind's lower bound at >= 95 % sparsity
    stays above no-retrain's upper bound": ``separated(rows, metric, "imp-rewind", "no-retrain",
    0.95)["holds"].all()`` (check the frame is not empty). Bounds are NaN with one seed, and
    ``holds`` is then False: one seed shows no separation.
    """
    need = {"method", "iteration", metric.name}
    if not need <= set(rows.columns):
        raise ValueError(f"rows need columns {sorted(need)}; have {list(rows.columns)}")
    bands = seed_bands(rows[rows["method"].astype(str).isin([better, worse])], metric.name, BAND_KEYS, confidence)
    b = bands[bands["method"].astype(str) == better].set_index("iteration")
    w = bands[bands["method"].astype(str) == worse].set_index("iteration")
    common = b.index.intersection(w.index)
    b, w = b.loc[common], w.loc[common]
    keep = pd.to_numeric(b["sparsity"], errors="coerce") >= min_sparsity - 1e-12
    b, w = b[keep], w[keep]
    pess, opt = ("low", "high") if metric.higher_is_better else ("high", "low")
    out = pd.DataFrame(
        {
            "iteration": b.index.astype(int),
            "sparsity": b["sparsity"].to_numpy(dtype=float),
            "better_n": b["n"].to_numpy(dtype=int),
            "worse_n": w["n"].to_numpy(dtype=int),
            "better_bound": b[pess].to_numpy(dtype=float),
            "worse_bound": w[opt].to_numpy(dtype=float),
        }
    )
    gap = out["better_bound"] - out["worse_bound"]
    out["holds"] = (gap > 0) if metric.higher_is_better else (gap < 0)
    return out.reset_index(drop=True)
