"""The results schema, in one place: sweep columns, ``extra_info`` keys, table headers, and which metric a row holds.

Every sweep row (``results.csv``, the cache's ``metrics.csv``) and every benchmark's
``extra_info`` use these names. The primary metric's column is named by the family
(``accuracy``, ``wer``, or a user's own); rows say which one with the ``metric`` and
``higher_is_better`` keys. JSON written before those keys existed is read by
:func:`metric_of`'s legacy rule, the only place where the metric is inferred from columns.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from prunelib.families.contract import Metric
from prunelib.measure.thermal import EXTRA_INFO_KEYS as THERMAL_KEYS

#: Lab columns before the metric, and after it: one row per pruning iteration.
_BEFORE_METRIC = ("iteration", "sparsity", "sparsity_model")
_AFTER_METRIC = (
    "latency_mean_s",
    "latency_std_s",
    "latency_median_s",  # what tables, plots and speed-ups show (the mean and std stay for older readers)
    "latency_iqr_s",
    "params_total",
    "params_nonzero",
    "disk_dense_bytes",  # the lab's state_dict size (fp32) of the pruned model
    "disk_sparse_bytes",  # the lab's COO size: 2-D weights stored sparse
    "disk_compact_bytes",  # prunelib.storage.compact file at `precision` (structured: the shrunk model)
    "disk_bound_bytes",  # entropy bound of the same tensors
    "params_deployed",  # parameters of the model as it ships (structured: shrunk)
    "flops",  # multiply-adds of one forward pass of the deployed model on one example
    "neuron_sparsity",  # fraction of structured units removed (NaN for families without units)
    "precision",  # fp32 | fp16 | int8
)


def sweep_columns(metric: str) -> tuple[str, ...]:
    """Every column of a sweep's ``results.csv``, in order, with the family's metric column ``metric``."""
    return (*_BEFORE_METRIC, metric, *_AFTER_METRIC)


#: Static-metric columns copied from a checkpoint's cached row into ``extra_info``.
CHECKPOINT_KEYS: tuple[str, ...] = (
    "sparsity",
    "sparsity_model",
    "params_total",
    "params_nonzero",
    "disk_dense_bytes",
    "disk_sparse_bytes",
    "disk_compact_bytes",
    "disk_bound_bytes",
    "params_deployed",
    "flops",
    "neuron_sparsity",
)
#: ``extra_info`` keys every inference benchmark carries (its metric's key is named by ``metric``).
EXTRA_INFO_KEYS: tuple[str, ...] = (
    "family",
    "dataset",
    "model",
    "method",
    "iteration",
    "amount",
    "metric",
    "higher_is_better",
    *CHECKPOINT_KEYS,
    "runtime",
    "batch_size",
    "threads",
    "seed",
    "precision",
    "torch_version",
    "onnxruntime_version",
    *THERMAL_KEYS,  # the board around each timed benchmark (SoC temperature, clock, governor, throttling)
)
#: The metric of rows written before ``metric`` was recorded (``wer`` rows were speech, the rest accuracy).
LEGACY_METRICS = {
    "accuracy": Metric("accuracy", higher_is_better=True),
    "wer": Metric("wer", higher_is_better=False, high=math.inf),
}


def latency_stat(rows: pd.DataFrame) -> str:
    """Which latency ``rows`` are shown by: ``"median"`` (with its IQR), or ``"mean"`` (with its std).

    The median wherever every timed row has one; the mean for rows saved before medians were kept
    (a sweep's ``results.csv`` with only ``latency_mean_s``, JSON without a ``median``), so one
    table or plot never mixes the two. The columns are ``latency_<stat>_s`` and
    :data:`LATENCY_SPREAD` of it.
    """
    if "latency_median_s" not in rows:
        return "mean"
    median = pd.to_numeric(rows["latency_median_s"], errors="coerce")
    if (
        "latency_mean_s" in rows
        and (pd.to_numeric(rows["latency_mean_s"], errors="coerce").notna() & median.isna()).any()
    ):
        return "mean"
    return "median"


#: The spread shown beside each latency statistic.
LATENCY_SPREAD = {"median": "latency_iqr_s", "mean": "latency_std_s"}


def label(metric: str) -> str:
    """A table header for a metric name: ``WER`` for short names, ``Accuracy`` otherwise."""
    return metric.upper() if len(metric) <= 3 else metric.replace("_", " ").capitalize()


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def metric_of(rows: pd.DataFrame) -> Metric:
    """The primary metric of ``rows`` (one model's rows).

    From ``rows.attrs["metric"]`` (a :class:`Metric`), else the ``metric`` and
    ``higher_is_better`` columns, else, for results saved before those existed, ``wer`` when
    the rows hold WER values and ``accuracy`` otherwise.

    Raises:
        ValueError: the rows name more than one metric.
    """
    attr = rows.attrs.get("metric")
    if isinstance(attr, Metric):
        return attr
    if "metric" in rows and rows["metric"].notna().any():
        names = rows["metric"].dropna().astype(str).unique()
        if len(names) > 1:
            raise ValueError(f"rows mix metrics {sorted(names)}; pass one model's rows")
        name = str(names[0])
        if name in LEGACY_METRICS and "higher_is_better" not in rows:
            return LEGACY_METRICS[name]
        higher = _flag(rows["higher_is_better"].dropna().iloc[0]) if "higher_is_better" in rows else True
        return Metric(name, higher, low=-math.inf, high=math.inf)
    return LEGACY_METRICS["wer" if "wer" in rows and rows["wer"].notna().any() else "accuracy"]


def row_metrics(rows: pd.DataFrame) -> pd.DataFrame:
    """Per row: the primary metric's ``name``, ``value`` and ``higher_is_better``.

    Rows that name their metric use it; older rows are ``wer`` where they hold a WER value and
    ``accuracy`` otherwise (:data:`LEGACY_METRICS`).
    """
    names = rows["metric"] if "metric" in rows else pd.Series(None, index=rows.index, dtype=object)
    legacy = rows["wer"].notna() if "wer" in rows else pd.Series(False, index=rows.index)
    fallback = pd.Series("accuracy", index=rows.index, dtype=object).where(~legacy, "wer")
    names = names.where(names.notna(), fallback).astype(str)
    values = pd.Series(math.nan, index=rows.index, dtype=float)
    higher = pd.Series(True, index=rows.index, dtype=bool)
    for name in names.unique():
        at = names == name
        if name in rows:
            values[at] = pd.to_numeric(rows.loc[at, name], errors="coerce")
        if "higher_is_better" in rows and rows.loc[at, "higher_is_better"].notna().any():
            higher[at] = rows.loc[at, "higher_is_better"].map(lambda v: _flag(v) if v == v else True)
        elif name in LEGACY_METRICS:
            higher[at] = LEGACY_METRICS[name].higher_is_better
    return pd.DataFrame({"name": names, "value": values, "higher_is_better": higher})
