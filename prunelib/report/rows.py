"""A pytest-benchmark JSON as rows: one per benchmark, its extra_info and timing stats as columns."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from prunelib.results.schema import row_metrics

#: extra_info keys every benchmark entry carries, in JSON of every age (the metric's own key is named by
#: ``metric``; see :mod:`prunelib.results.schema`, whose ``EXTRA_INFO_KEYS`` newer entries carry in full).
STABLE_KEYS: tuple[str, ...] = (
    "dataset",
    "model",
    "method",
    "iteration",
    "amount",
    "sparsity",
    "sparsity_model",
    "params_total",
    "params_nonzero",
    "disk_dense_bytes",
    "disk_sparse_bytes",
    "runtime",
    "batch_size",
    "threads",
    "seed",
    "torch_version",
    "onnxruntime_version",
)

#: Runtimes that run the model (other timed entries, e.g. ``compact-load``, are not inference).
INFERENCE_RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime", "torch-sparse", "executorch")


#: pytest-benchmark stats (seconds) → result columns.
STATS_COLUMNS: dict[str, str] = {
    "mean": "latency_mean_s",
    "stddev": "latency_std_s",
    "median": "latency_median_s",
    "min": "latency_min_s",
    "max": "latency_max_s",
    "iqr": "latency_iqr_s",
    "q1": "latency_q1_s",
    "q3": "latency_q3_s",
    "rounds": "rounds",
    "ops": "ops_per_s",
}

#: Keys that name one table of the lab: one (dataset, model, method) sweep.
SWEEP_KEYS: tuple[str, ...] = ("dataset", "model", "method")


def scalar(value: Any) -> Any:
    """A CSV-friendly value: containers become JSON text."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def benchmark_entries(bench: Any) -> list[dict[str, Any]]:
    """The ``benchmarks`` list of a pytest-benchmark JSON dict; [] when absent or malformed."""
    if not isinstance(bench, dict):
        raise TypeError(f"bench must be a dict (pytest-benchmark JSON), got {type(bench).__name__}")
    entries = bench.get("benchmarks")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def benchmark_rows(bench: dict[str, Any]) -> pd.DataFrame:
    """One row per benchmark entry: name, every extra_info key, and timing stats in seconds.

    Every :data:`STABLE_KEYS` column exists (NaN where an entry lacks it); ``has_stats`` says
    whether the entry carried a usable mean (not with ``--benchmark-disable``).
    """
    records = []
    for entry in benchmark_entries(bench):
        extra: dict[str, Any] = entry["extra_info"] if isinstance(entry.get("extra_info"), dict) else {}
        stats: dict[str, Any] = entry["stats"] if isinstance(entry.get("stats"), dict) else {}
        rec: dict[str, Any] = {
            "name": entry.get("name"),
            "fullname": entry.get("fullname"),
            "group": entry.get("group"),
        }
        rec.update({k: scalar(v) for k, v in extra.items() if k not in rec})
        for stat, column in STATS_COLUMNS.items():
            rec[column] = number(stats.get(stat))
        rec["has_stats"] = math.isfinite(rec["latency_mean_s"])
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    for col in ("name", "fullname", "group", *STABLE_KEYS, *STATS_COLUMNS.values(), "has_stats"):
        if col not in df:
            df[col] = pd.Series(
                [math.nan] * len(df), dtype="float64" if col not in ("name", "fullname", "group") else "object"
            )
    return df


def is_fp32(rows: pd.DataFrame) -> pd.Series:
    """Rows whose precision is fp32 or not recorded (the lab measured fp32)."""
    if "precision" not in rows:
        return pd.Series(True, index=rows.index)
    return rows["precision"].isna() | (rows["precision"].astype(str) == "fp32")


def dedupe(rows: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, int]:
    """One row per ``keys``: the one run with most threads (then the first); returns (rows, dropped)."""
    if rows.empty:
        return rows, 0
    ordered = rows.assign(_t=pd.to_numeric(rows["threads"], errors="coerce").fillna(-1)).sort_values(
        "_t", ascending=False, kind="stable"
    )
    kept = ordered.drop_duplicates(subset=keys, keep="first").drop(columns="_t").sort_index()
    return kept, len(rows) - len(kept)


def lab_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows the lab's tables are made of: runtime torch, batch size 1, fp32, one per iteration and seed.

    Several seeds of a sweep stay one row each (:mod:`prunelib.results.seeds` makes their means and
    intervals); rows without a seed count as one seed.
    """
    batch = pd.to_numeric(rows["batch_size"], errors="coerce")
    sel = rows[(rows["runtime"].astype(str) == "torch") & (batch == 1) & is_fp32(rows)]
    sel = sel.dropna(subset=["dataset", "model", "method", "iteration"])
    kept, _ = dedupe(sel, [*SWEEP_KEYS, "iteration", "seed"])
    return kept


def schedule_frame(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of one sweep in the shape :func:`prunelib.results.tables.wide_table` reads, sorted by iteration."""
    cols = [
        "iteration",
        "sparsity",
        "sparsity_model",
        metric,
        "latency_mean_s",
        "latency_std_s",
        "latency_median_s",
        "latency_iqr_s",
        "rounds",
        "params_total",
        "params_nonzero",
        "disk_dense_bytes",
        "disk_sparse_bytes",
    ]
    cols += [c for c in ("disk_compact_bytes", "flops", "neuron_sparsity") if c in rows and rows[c].notna().any()]
    cols += ["seed"] if "seed" in rows else []  # several seeds: one row each, the tables take their mean
    out = rows.reindex(columns=cols).copy()
    for c in cols:
        out[c] = pd.to_numeric(out[c], errors="coerce")
    order = ["iteration", "seed"] if "seed" in out else ["iteration"]
    return out.sort_values(order, kind="stable").reset_index(drop=True)


def missing_notes(bench: dict[str, Any], rows: pd.DataFrame) -> list[str]:
    """Plain sentences saying what this run lacks, for the README."""
    notes: list[str] = []
    raw = bench.get("benchmarks")
    if not isinstance(raw, list):
        notes.append("The JSON has no `benchmarks` list.")
    elif len(raw) != len(rows):
        notes.append(f"{len(raw) - len(rows)} benchmark entries were not objects and were skipped.")
    if rows.empty:
        notes.append(
            "No benchmark entries: nothing was timed (was `--benchmark-disable` or `--benchmark-skip` used, "
            "or did every benchmark fail?). Only the machine description is written."
        )
        return notes
    no_stats = int((~rows["has_stats"].astype(bool)).sum())
    if no_stats:
        notes.append(
            f"{no_stats} of {len(rows)} entries have no timing stats (e.g. `--benchmark-disable`): latency is n/a for them."
        )
    no_median = int((rows["has_stats"].astype(bool) & rows["latency_median_s"].isna()).sum())
    if no_median:
        notes.append(
            f"{no_median} timed entries have no median latency (JSON written without it): tables, plots and the "
            "knee show mean latencies for their model, and speed-ups without an interval."
        )
    lacking = {k: int(rows[k].isna().sum()) for k in STABLE_KEYS}
    metric_missing = int(row_metrics(rows)["value"].isna().sum())
    if metric_missing:
        lacking["the metric (accuracy, wer, ...)"] = metric_missing
    lacking = {k: n for k, n in lacking.items() if n}
    if lacking:
        notes.append("Entries lacking extra_info keys: " + ", ".join(f"`{k}` ({n})" for k, n in lacking.items()) + ".")
    untabled = rows[rows[["dataset", "model", "method", "iteration"]].isna().any(axis=1)]
    if len(untabled):
        notes.append(f"{len(untabled)} entries lack dataset/model/method/iteration and appear only in `results.csv`.")
    not_fp32 = int((~is_fp32(rows)).sum())
    if not_fp32:
        notes.append(
            f"{not_fp32} entries at reduced precision (fp16/int8) are left out of the lab tables and plots; see `results.csv` and the precision table."
        )
    return notes


def bench_from_session(session: Any) -> dict[str, Any]:
    """The pytest-benchmark JSON dict of a finished session, as ``--benchmark-json`` would write it.

    For ``pytest_sessionfinish`` when no JSON option was given. Uses the plugin's own hooks
    (so ``pytest_benchmark_update_machine_info`` applies). Under ``--benchmark-disable`` the
    plugin records nothing and ``benchmarks`` is empty.
    """
    config = session.config
    bs = getattr(config, "_benchmarksession", None)
    if bs is None:
        return {
            "machine_info": {},
            "commit_info": {},
            "benchmarks": [],
            "datetime": datetime.now(timezone.utc).isoformat(),
            "version": None,
        }
    machine_info = bs.get_machine_info()
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    return config.hook.pytest_benchmark_generate_json(
        config=config, benchmarks=bs.benchmarks, include_data=False, machine_info=machine_info, commit_info=commit_info
    )


def runtime_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Median latency (µs) at batch 1, fp32, per (method, iteration) and per runtime and thread count.

    One column per ``runtime / N thread(s)`` present (torch, ONNX Runtime, ExecuTorch, ...), so the
    runtimes compare side by side at every sparsity; empty when no batch-1 timing was recorded.
    """
    batch = pd.to_numeric(rows["batch_size"], errors="coerce")
    sel = rows[(batch == 1) & is_fp32(rows) & rows["runtime"].astype(str).isin(INFERENCE_RUNTIMES)]
    sel = sel.dropna(subset=["method", "iteration", "latency_median_s"])
    if sel.empty:
        return pd.DataFrame()
    threads = pd.to_numeric(sel["threads"], errors="coerce").fillna(1).astype(int)
    sel = sel.assign(
        column=sel["runtime"].astype(str) + " / " + threads.astype(str) + "t",
        latency_us=1e6 * pd.to_numeric(sel["latency_median_s"], errors="coerce"),
        sparsity_pct=(100 * pd.to_numeric(sel["sparsity"], errors="coerce")).round(1),
    )
    table = sel.pivot_table(
        index=["method", "iteration", "sparsity_pct"], columns="column", values="latency_us", aggfunc="first"
    )
    return table.round(1).reset_index().rename(columns={"sparsity_pct": "Sparsity (%)"})
