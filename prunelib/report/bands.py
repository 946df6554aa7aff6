"""Seed bands on the report's figures: a shaded 95 % interval around a method's line of metric vs sparsity.

Kept apart from :mod:`prunelib.report.plots` (which calls it) so the figure builders stay small. The
rows are those of :func:`prunelib.results.seeds.mean_over_seeds`: with several seeds they carry
``metric_low`` and ``metric_high``; with one seed they do not, and nothing is drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from prunelib.results.seeds import METRIC_HIGH, METRIC_LOW, SEEDS_N

#: Opacity of a band: light enough that crossing lines of other methods stay readable.
BAND_ALPHA = 0.18


def band_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``rows`` that have an interval (two seeds or more, finite bounds); none without seed columns."""
    if METRIC_LOW not in rows or METRIC_HIGH not in rows:
        return rows.iloc[0:0]
    low = pd.to_numeric(rows[METRIC_LOW], errors="coerce")
    high = pd.to_numeric(rows[METRIC_HIGH], errors="coerce")
    seeds = pd.to_numeric(rows[SEEDS_N], errors="coerce") if SEEDS_N in rows else pd.Series(2, index=rows.index)
    return rows[np.isfinite(low) & np.isfinite(high) & (seeds >= 2)]


def draw_band(ax: Axes, rows: pd.DataFrame, color: Any, x: str = "sparsity") -> bool:
    """Shade ``metric_low``-``metric_high`` (in %) against ``x`` (a fraction, in %) of one method's rows, sorted by ``x``.

    Returns whether a band was drawn: only where the rows carry an interval from two seeds or more.
    Iterations without one leave a gap rather than a band of zero width.
    """
    if band_rows(rows).empty or x not in rows:
        return False
    m = rows.sort_values(x)
    seeds = pd.to_numeric(m[SEEDS_N], errors="coerce") if SEEDS_N in m else pd.Series(2, index=m.index)
    low = 100 * pd.to_numeric(m[METRIC_LOW], errors="coerce").where(seeds >= 2)
    high = 100 * pd.to_numeric(m[METRIC_HIGH], errors="coerce").where(seeds >= 2)
    ax.fill_between(
        100 * pd.to_numeric(m[x], errors="coerce"),
        low,
        high,
        color=color,
        alpha=BAND_ALPHA,
        linewidth=0,
        label="_band",  # underscore: not in the legend
    )
    return True


def band_note(rows: pd.DataFrame) -> str:
    """The legend title's note: ``" (band: 95 % t interval over N seeds)"`` when a band is drawn, else ``""``."""
    banded = band_rows(rows)
    if banded.empty:
        return ""
    counts = pd.to_numeric(banded[SEEDS_N], errors="coerce").dropna().astype(int) if SEEDS_N in banded else None
    if counts is None or counts.empty:
        return "; band: 95 % t interval over the seeds"
    low, high = int(counts.min()), int(counts.max())
    return f"; band: 95 % t interval over {low if low == high else f'{low}-{high}'} seeds"
