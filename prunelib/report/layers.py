"""Where pruning removed work: a bar chart per layer of the multiply-adds and parameters removed.

Drawn from an extra table named ``layer-costs`` or ``layer-costs-<what>`` (columns of
:func:`prunelib.measure.flops.layer_costs`), one per structured sweep of the run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from prunelib.report.plots import new_figure

LAYER_COSTS = "layer-costs"
COLUMNS = ("layer", "macs_dense", "macs_kept", "macs_removed", "params_dense", "params_kept", "params_removed")


def is_layer_costs(name: str) -> bool:
    """Extra tables named ``layer-costs`` or ``layer-costs-<what>`` get a bar chart."""
    return name == LAYER_COSTS or name.startswith(LAYER_COSTS + "-")


def check_layer_costs(name: str, frame: pd.DataFrame) -> None:
    """``ValueError`` naming the table and the missing columns when ``frame`` cannot be drawn."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"extra[{name!r}] needs columns {list(COLUMNS)}; missing {missing}")


def layer_costs_figure(frame: pd.DataFrame, title: str) -> Figure:
    """Two panels of horizontal bars per layer: MACs and parameters, kept and removed (stacked)."""
    fig, axes = new_figure(ncols=2)
    layers = frame["layer"].astype(str).tolist()
    y = np.arange(len(layers))
    for ax, what, label in zip(axes, ("macs", "params"), ("multiply-adds", "parameters (nonzero)")):
        kept, removed = frame[f"{what}_kept"].astype(float), frame[f"{what}_removed"].astype(float)
        ax.barh(y, kept, color="#1f77b4", label="kept")
        ax.barh(y, removed, left=kept, color="#d62728", alpha=0.7, label="removed")
        ax.set_yticks(y, layers, fontsize=7)
        ax.invert_yaxis()  # forward order, top to bottom
        total = float(frame[f"{what}_dense"].sum())
        share = float(removed.sum()) / total if total else 0.0
        ax.set_xlabel(label)
        ax.set_title(f"{label}: {share:.0%} removed")
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: per layer, dense vs pruned")
    return fig
