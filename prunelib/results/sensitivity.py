"""Reading a sensitivity table: which groups tolerate pruning, and how much, from the numbers."""

from __future__ import annotations

import pandas as pd

from prunelib.families.contract import Metric
from prunelib.results.knee import EPS


def tolerated_sparsity(frame: pd.DataFrame, metric: Metric, tolerance: float = 0.01) -> pd.Series:
    """Per group, the highest sparsity level whose metric stays within ``tolerance`` of the group's dense value."""
    out = {}
    for group, part in frame.groupby("group", sort=False):
        part = part.sort_values("sparsity", kind="stable")
        dense = float(part[metric.name].iloc[0])
        worse = part[metric.name].map(lambda v, d=dense: metric.loss(d, float(v)))
        ok = part.loc[worse <= tolerance + EPS, "sparsity"]
        out[group] = float(ok.max()) if len(ok) else 0.0
    return pd.Series(out, name="tolerated_sparsity")


def sensitivity_summary(frame: pd.DataFrame, metric: Metric, tolerance: float = 0.01) -> str:
    """One sentence read off the numbers: groups from most to least sensitive.

    Groups rank by their mean loss over the sparsity levels (accuracy lost, or WER gained, against
    the group's dense value); the highest sparsity each tolerates within ``tolerance`` is shown too.
    """
    tolerated = tolerated_sparsity(frame, metric, tolerance)
    if tolerated.empty:
        return "_No sensitivity rows._"
    loss = {}
    for group, part in frame.groupby("group", sort=False):
        part = part.sort_values("sparsity", kind="stable")
        dense = float(part[metric.name].iloc[0])
        loss[group] = float(part[metric.name].map(lambda v, d=dense: metric.loss(d, float(v))).mean())
    order = sorted(loss, key=lambda g: loss[g], reverse=True)
    fmt = lambda g: (
        f"`{g}` (mean loss {100 * loss[g]:.1f} points; within {100 * tolerance:g} up to {100 * tolerated[g]:.0f} %)"
    )  # noqa: E731
    return (
        f"Groups by {metric.name} lost when pruned alone, averaged over the sparsity levels: "
        + ", ".join(fmt(g) for g in order)
        + f". Most sensitive: `{order[0]}`; most tolerant: `{order[-1]}`."
    )
