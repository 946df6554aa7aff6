"""The lab's results table: one row per pruning iteration, in the units the lab reported."""
from __future__ import annotations

import pandas as pd

#: Schedule columns every sweep produces (``wer`` replaces ``accuracy`` for speech models).
SCHEDULE_COLUMNS: tuple[str, ...] = (
    "iteration",
    "sparsity",
    "sparsity_model",
    "accuracy",
    "latency_mean_s",
    "latency_std_s",
    "params_total",
    "params_nonzero",
    "disk_dense_bytes",
    "disk_sparse_bytes",
)


def metric_column(df: pd.DataFrame) -> str:
    """``"wer"`` for speech results, else ``"accuracy"``."""
    return "wer" if "wer" in df.columns else "accuracy"


def lab_table(df: pd.DataFrame) -> pd.DataFrame:
    """Iteration | Sparsity (%) | Accuracy (or WER) | Latency (s) | Disk Size (MB), as the lab printed it.

    Disk size is the lab's figure: the state dict with 2-D weights stored as sparse COO
    (``disk_sparse_bytes``), in MB of 10^6 bytes. Columns present in ``df`` beyond the lab's
    (dense and compact sizes, latency std) follow.
    """
    metric = metric_column(df)
    out = pd.DataFrame(
        {
            "Iteration": df["iteration"].astype(int),
            "Sparsity (%)": (100 * df["sparsity"]).round(1),
            "WER" if metric == "wer" else "Accuracy": df[metric].round(4),
            "Latency (s)": df["latency_mean_s"].map(lambda v: float(f"{v:.3g}")),
            "Disk Size (MB)": (df["disk_sparse_bytes"] / 1e6).round(3),
        }
    )
    if "latency_std_s" in df:
        out["Latency std (s)"] = df["latency_std_s"].map(lambda v: float(f"{v:.2g}"))
    if "disk_dense_bytes" in df:
        out["Dense size (MB)"] = (df["disk_dense_bytes"] / 1e6).round(3)
    if "disk_compact_bytes" in df:
        out["Compact size (MB)"] = (df["disk_compact_bytes"] / 1e6).round(3)
    return out.reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``table`` (no index)."""
    return table.to_markdown(index=False) + "\n"
