"""The knee of a sparsity sweep: how far a method prunes before accuracy leaves the dense model's.

Rule (monotone): walk the iterations in order of increasing sparsity; an iteration *passes*
when its accuracy is at least ``dense - tolerance`` (for WER: at most ``dense + tolerance``),
where ``dense`` is iteration 0. The knee is the last iteration before the first one that
fails, so the knee and every lower-sparsity iteration pass. A later iteration that recovers
(noise, or retraining luck) does not move the knee: a deployment choosing "the sparsest model
still as good as dense" should not rely on a point whose neighbours below it are worse.
A missing (NaN) metric fails, since it cannot be shown to be within tolerance.

Latency at the knee is the median of its timed rounds; the speed-up over dense is the ratio of
medians with a 95 % interval (:mod:`prunelib.measure.stats`), shown only when the interval
excludes 1.0. Sweeps saved without medians fall back to the mean, with no interval, and say so.

Several seeds (:mod:`prunelib.results.seeds`): each iteration is judged by the pessimistic bound
of the 95 % Student-t interval of its *change from dense, paired by seed* (each seed's metric
minus that seed's own dense metric; the lower bound for accuracy, the upper for WER), added to
the dense mean. Pairing removes the spread of the dense models themselves (three quick LeNets
differ by several points), so the dense row always passes and noise cannot carry the knee further
than the seeds support. The knee's metric is still the mean; :data:`SEED_KNEE_COLUMNS` (the seeds
and the knee's metric interval) are added to the knee frame only then.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from prunelib.families.contract import Metric
from prunelib.measure.stats import NO_INTERVAL, RatioInterval, speedup_cell, speedup_interval_from_summary
from prunelib.results.schema import label, latency_stat, metric_of
from prunelib.results.seeds import (
    METRIC_HIGH,
    METRIC_LOW,
    SEEDS_N,
    mean_over_seeds,
    pessimistic,
    seed_bands,
    several_seeds,
)

#: Absolute slack on the comparison so 0.98 - 0.97 counts as exactly one point.
EPS = 1e-9

KNEE_COLUMNS: tuple[str, ...] = (
    "method",
    "metric",
    "tolerance_points",
    "dense_metric",
    "knee_iteration",
    "knee_sparsity",
    "knee_metric",
    "change_points",
    "latency_dense_s",
    "latency_knee_s",
    "latency_ratio",
    "speedup",
    "disk_dense_bytes",
    "disk_knee_sparse_bytes",
    "size_ratio",
    "disk_knee_compact_bytes",
    "compact_size_ratio",
    "iterations_checked",
    "note",
    "latency_stat",
    "speedup_low",
    "speedup_high",
    "speedup_ci_method",
)
#: Knee columns added when some method ran several seeds: how many, the knee's interval, what judged it.
SEED_KNEE_COLUMNS: tuple[str, ...] = ("seeds", "knee_metric_low", "knee_metric_high", "judged_by")


def _num(value: object) -> float:
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return f


def _ratio(num: float, den: float) -> float:
    return num / den if math.isfinite(num) and math.isfinite(den) and den > 0 else math.nan


def _speedup_interval(dense: pd.Series, knee: pd.Series) -> RatioInterval:
    """Dense over knee, from each row's median, IQR and rounds (the rounds themselves are not in the rows)."""

    def summary(r: pd.Series) -> tuple[float, float, float]:
        return (_num(r.get("latency_median_s")), _num(r.get("latency_iqr_s")), _num(r.get("rounds")))

    return speedup_interval_from_summary(summary(dense), summary(knee))


def speedup_shown(knee: pd.Series) -> object:
    """The knee table's speed-up cell: the ratio with its interval, "no measurable change (...)", or,
    for latencies saved without a median, the ratio of means marked as having no interval."""
    ratio = _num(knee.get("speedup"))
    if not math.isfinite(ratio):
        return np.nan
    if str(knee.get("latency_stat", "mean")) != "median":
        return f"{ratio:.2f} (means; no interval)"
    interval = RatioInterval(
        ratio, _num(knee.get("speedup_low")), _num(knee.get("speedup_high")), str(knee.get("speedup_ci_method"))
    )
    return speedup_cell(interval) if interval.known else f"{ratio:.2f} (no interval: rounds or IQR not saved)"


def _knee_one(sweep: pd.DataFrame, chosen: Metric, tolerance: float) -> dict[str, object]:
    """Knee row of one method's sweep (one row per iteration)."""
    row: dict[str, object] = {c: math.nan for c in (*KNEE_COLUMNS, *SEED_KNEE_COLUMNS)}
    metric = chosen.name
    row.update(metric=metric, tolerance_points=100 * tolerance, note="", iterations_checked=0)
    seeded = several_seeds(sweep)
    dup = sweep.duplicated(["iteration", "seed"] if seeded else ["iteration"])
    if dup.any():
        dups = sorted(sweep.loc[dup, "iteration"].tolist())
        raise ValueError(f"one row per iteration expected (e.g. runtime torch, batch 1); duplicated iterations: {dups}")
    judged: pd.Series | None = None
    if seeded:
        judged = _paired_bound(sweep, chosen)
        sweep = mean_over_seeds(sweep, metric, by=("iteration",))
        end = "lower" if chosen.higher_is_better else "upper"
        row.update(
            seeds=int(sweep[SEEDS_N].min()),
            judged_by=f"{end} bound of the 95 % t interval of the change from dense, paired by seed",
        )
    dense_rows = sweep[sweep["iteration"].map(_num) == 0]
    if dense_rows.empty:
        row["note"] = f"no dense row (iteration 0); iterations present: {sorted(sweep['iteration'].tolist())}"
        return row
    dense = dense_rows.iloc[0]
    dense_metric = _num(dense[metric])
    row["dense_metric"] = dense_metric
    if not math.isfinite(dense_metric):
        row["note"] = f"dense {metric} is missing"
        return row
    ordered = sweep.assign(_s=sweep["sparsity"].map(_num)).sort_values(["_s", "iteration"], kind="stable")
    if judged is None:
        ordered = ordered.assign(_judged=pessimistic(ordered, chosen))
    else:
        ordered = ordered.assign(_judged=dense_metric + ordered["iteration"].map(_num).map(judged))
    knee = None
    checked = 0
    for _, r in ordered.iterrows():
        value = _num(r["_judged"])
        checked += 1
        ok = math.isfinite(value) and (chosen.loss(dense_metric, value) <= tolerance + EPS)
        if not ok:
            bound = f"{'lower' if chosen.higher_is_better else 'upper'} bound, paired by seed, " if seeded else ""
            row["note"] = f"first failing iteration {int(_num(r['iteration']))} ({metric} {bound}{value:.4f})"
            break
        knee = r
    row["iterations_checked"] = checked
    if knee is None:  # the dense row sits at the lowest sparsity, so this only happens if it is not at 0
        row["note"] = row["note"] or "no iteration passes"
        return row
    knee_metric = _num(knee[metric])
    stat = latency_stat(sweep)
    lat_dense, lat_knee = _num(dense.get(f"latency_{stat}_s")), _num(knee.get(f"latency_{stat}_s"))
    interval = _speedup_interval(dense, knee) if stat == "median" else NO_INTERVAL
    dense_bytes = _num(dense.get("disk_dense_bytes"))
    sparse_bytes = _num(knee.get("disk_sparse_bytes"))
    compact_bytes = _num(knee.get("disk_compact_bytes"))
    row.update(
        knee_iteration=int(_num(knee["iteration"])),
        knee_sparsity=_num(knee["sparsity"]),
        knee_metric=knee_metric,
        change_points=100 * (knee_metric - dense_metric),
        latency_dense_s=lat_dense,
        latency_knee_s=lat_knee,
        latency_ratio=_ratio(lat_knee, lat_dense),
        speedup=_ratio(lat_dense, lat_knee),
        disk_dense_bytes=dense_bytes,
        disk_knee_sparse_bytes=sparse_bytes,
        size_ratio=_ratio(sparse_bytes, dense_bytes),
        disk_knee_compact_bytes=compact_bytes,
        compact_size_ratio=_ratio(compact_bytes, dense_bytes),
        latency_stat=stat,
        speedup_low=interval.low,
        speedup_high=interval.high,
        speedup_ci_method=interval.method,
    )
    if seeded:
        row.update(knee_metric_low=_num(knee[METRIC_LOW]), knee_metric_high=_num(knee[METRIC_HIGH]))
    if not row["note"]:
        row["note"] = "all iterations pass"
    return row


def _paired_bound(sweep: pd.DataFrame, chosen: Metric) -> pd.Series:
    """Per iteration: the pessimistic end of the seeds' t interval of (metric - that seed's dense metric).

    A seed without a dense row gives NaN changes, so its iterations cannot pass.
    """
    values = pd.to_numeric(sweep[chosen.name], errors="coerce")
    dense = sweep[sweep["iteration"].map(_num) == 0]
    dense_by_seed = pd.Series(pd.to_numeric(dense[chosen.name], errors="coerce").to_numpy(), index=dense["seed"])
    changes = sweep.assign(_change=values - sweep["seed"].map(dense_by_seed), iteration=sweep["iteration"].map(_num))
    bands = seed_bands(changes, "_change", by=("iteration",)).set_index("iteration")
    end = bands["low"] if chosen.higher_is_better else bands["high"]
    return end.where(bands["n"] >= 2, bands["mean"])


def find_knee(df: pd.DataFrame, tolerance: float = 0.01, metric: Metric | None = None) -> pd.DataFrame:
    """The highest sparsity whose accuracy (and every lower sparsity's) stays within ``tolerance`` of dense.

    Args:
        df: a sweep, one row per iteration (per method when a ``method`` column is present),
            with ``iteration``, ``sparsity`` (fraction), ``accuracy`` or ``wer`` (fraction) and
            optionally ``seed`` (several seeds: one row per seed and iteration), ``latency_median_s``, ``latency_iqr_s`` and ``rounds`` (else
            ``latency_mean_s``), ``disk_dense_bytes``, ``disk_sparse_bytes``, ``disk_compact_bytes``.
        tolerance: allowed absolute change as a fraction (0.01 = 1 point): accuracy may drop,
            WER may rise, by at most this much.

    Returns:
        One row per method (columns :data:`KNEE_COLUMNS`, then :data:`SEED_KNEE_COLUMNS` when a
        method ran several seeds: see the module's docstring). Ratios are knee / dense model:
        ``latency_ratio`` (``speedup`` is its inverse; ``speedup_low``/``speedup_high`` its 95 %
        interval, ``speedup_ci_method`` how it was computed; ``latency_stat`` says whether
        medians or, for older sweeps, means were compared), ``size_ratio`` = knee's sparse COO size
        over the dense model's dense size, ``compact_size_ratio`` likewise. ``note`` says
        why a knee is missing or which iteration failed first.

    Raises:
        ValueError: tolerance negative or not finite, required columns missing, or a method
            with two rows for one iteration and seed.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    tol = _num(tolerance)
    if not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tolerance must be a finite fraction >= 0 (0.01 = 1 point), got {tolerance!r}")
    missing = [c for c in ("iteration", "sparsity") if c not in df]
    if missing:
        raise ValueError(f"sweep lacks columns {missing}; has {list(df.columns)}")
    chosen = metric or metric_of(df)
    if chosen.name not in df:
        raise ValueError(f"sweep needs its metric column {chosen.name!r}, got columns {list(df.columns)}")
    if "method" in df:
        parts = [(str(m), g) for m, g in df.groupby(df["method"].astype(str), sort=True)]
    else:
        parts = [("", df)]
    rows = []
    for method, sweep in parts:
        r = _knee_one(sweep, chosen, tol)
        r["method"] = method
        rows.append(r)
    seeded = any(isinstance(r["judged_by"], str) for r in rows)
    out = pd.DataFrame(rows, columns=list(KNEE_COLUMNS) + (list(SEED_KNEE_COLUMNS) if seeded else []))
    if "method" not in df:
        out = out.drop(columns="method")
    return out


def knee_table(knees: pd.DataFrame) -> pd.DataFrame:
    """Human-readable knee table (percent, ms, MB, ratios) for a report."""

    def pct(v: object) -> object:
        f = _num(v)
        return round(100 * f, 2) if math.isfinite(f) else np.nan

    def ms(v: object) -> object:
        f = _num(v)
        return float(f"{1e3 * f:.3g}") if math.isfinite(f) else np.nan

    def ratio(v: object) -> object:
        f = _num(v)
        return round(f, 3) if math.isfinite(f) else np.nan

    metric = str(knees["metric"].iloc[0]) if len(knees) else "accuracy"
    name = label(metric)
    table = pd.DataFrame(
        {
            **({"Method": knees["method"]} if "method" in knees else {}),
            f"Dense {name} (%)": knees["dense_metric"].map(pct),
            "Knee iteration": knees["knee_iteration"]
            .map(lambda v: int(v) if math.isfinite(_num(v)) else np.nan)
            .astype("Int64"),
            "Knee sparsity (%)": knees["knee_sparsity"].map(pct),
            f"Knee {name} (%)": knees["knee_metric"].map(pct),
            **(
                {
                    f"Knee {name} 95 % interval (%)": [
                        f"{100 * _num(lo):.2f}-{100 * _num(hi):.2f}" if math.isfinite(_num(lo)) else np.nan
                        for lo, hi in zip(knees["knee_metric_low"], knees["knee_metric_high"])
                    ],
                    "Seeds": knees["seeds"].map(lambda v: int(v) if math.isfinite(_num(v)) else np.nan).astype("Int64"),
                }
                if "judged_by" in knees
                else {}
            ),
            "Change (points)": knees["change_points"].map(
                lambda v: round(_num(v), 2) if math.isfinite(_num(v)) else np.nan
            ),
            "Latency (ms)": knees["latency_knee_s"].map(ms),
            "Speed-up (x)": [speedup_shown(r) for _, r in knees.iterrows()],
            "COO size / dense": knees["size_ratio"].map(ratio),
            "Compact size / dense": knees["compact_size_ratio"].map(ratio),
            "Note": knees["note"],
        }
    )
    if table["Compact size / dense"].isna().all():
        table = table.drop(columns="Compact size / dense")
    return table.reset_index(drop=True)
