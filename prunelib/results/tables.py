"""The lab's results table: one row per pruning iteration, in the units the lab reported."""

from __future__ import annotations

import pandas as pd

from prunelib.families.contract import Metric
from prunelib.results.schema import LATENCY_SPREAD, label, latency_stat, metric_of
from prunelib.results.seeds import METRIC_HIGH, METRIC_LOW, SEEDS_N, mean_over_seeds


def lab_table(df: pd.DataFrame, metric: Metric | None = None) -> pd.DataFrame:
    """Iteration | Sparsity (%) | Accuracy (or WER, or the family's metric) | Latency (s) | Disk Size (MB), as the lab printed it.

    ``metric`` defaults to :func:`prunelib.results.schema.metric_of` of ``df``.

    Disk size is the lab's figure: the state dict with 2-D weights stored as sparse COO
    (``disk_sparse_bytes``), in MB of 10^6 bytes. Latency is the median of the timed rounds
    with its IQR beside it, or, for rows saved without a median, the mean with its std (the headers
    say which: :func:`prunelib.results.schema.latency_stat`). Columns present in ``df`` beyond the
    lab's (dense and compact sizes) follow.

    Several seeds (a ``seed`` column with two values or more): one row per iteration, the metric
    is the mean over the seeds, and ``<Metric> low``, ``<Metric> high`` (its 95 % Student-t
    interval) and ``Seeds`` follow it (:func:`prunelib.results.seeds.mean_over_seeds`); other
    figures are the median over the seeds. With one seed the table is as it always was.
    """
    name = (metric or metric_of(df)).name
    df = mean_over_seeds(df, name)
    stat = latency_stat(df)
    latency, spread = f"latency_{stat}_s", LATENCY_SPREAD[stat]
    median = stat == "median"
    out = pd.DataFrame(
        {
            "Iteration": df["iteration"].astype(int),
            "Sparsity (%)": (100 * df["sparsity"]).round(1),
            label(name): df[name].round(4),
            **(
                {
                    f"{label(name)} low": df[METRIC_LOW].round(4),
                    f"{label(name)} high": df[METRIC_HIGH].round(4),
                    "Seeds": df[SEEDS_N].astype(int),
                }
                if SEEDS_N in df
                else {}
            ),
            "Latency (s)" if median else "Latency, mean (s)": df[latency].map(lambda v: float(f"{v:.3g}")),
            "Disk Size (MB)": (df["disk_sparse_bytes"] / 1e6).round(3),
        }
    )
    if spread in df:
        out["Latency IQR (s)" if median else "Latency std (s)"] = df[spread].map(lambda v: float(f"{v:.2g}"))
    if "disk_dense_bytes" in df:
        out["Dense size (MB)"] = (df["disk_dense_bytes"] / 1e6).round(3)
    if "disk_compact_bytes" in df:
        out["Compact size (MB)"] = (df["disk_compact_bytes"] / 1e6).round(3)
    return out.reset_index(drop=True)


def wide_table(df: pd.DataFrame, metric: Metric | None = None) -> pd.DataFrame:
    """:func:`lab_table` (with its compact size when ``disk_compact_bytes`` exists) plus, when present,
    ``FLOPs (M)`` (multiply-adds of one deployed forward pass, 10^6, three significant digits) and
    ``Neurons pruned (%)`` (hidden neurons removed; only when some value is known)."""
    out = lab_table(df, metric)
    df = mean_over_seeds(df, (metric or metric_of(df)).name)
    if "flops" in df:
        out["FLOPs (M)"] = (df["flops"].astype(float) / 1e6).map(lambda v: float(f"{v:.3g}")).to_numpy()
    if "neuron_sparsity" in df and df["neuron_sparsity"].notna().any():
        out["Neurons pruned (%)"] = (100 * df["neuron_sparsity"].astype(float)).round(1).to_numpy()
    return out


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``table`` (no index)."""
    return table.to_markdown(index=False) + "\n"
