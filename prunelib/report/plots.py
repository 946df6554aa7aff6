"""Figures of a pruning run: metric vs sparsity, size and latency; runtimes; sizes; history.

Every builder is a pure function from result rows (:func:`prunelib.report.rows.benchmark_rows`) to a
:class:`matplotlib.figure.Figure` with a title, axis labels with units and a legend, built without
pyplot (no global state, no GUI backend); :func:`save_png` renders it with Agg, atomically.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import matplotlib

matplotlib.use("Agg")  # before anything may pick an interactive backend

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from prunelib.fileio import write_atomic  # noqa: E402
from prunelib.report.bands import band_note, draw_band
from prunelib.results.schema import label, latency_stat
from prunelib.results.seeds import mean_over_seeds

if TYPE_CHECKING:
    from matplotlib.legend import Legend
    from matplotlib.typing import RcKeyType

#: Fonts and sizes chosen to stay readable when a PNG is shown at half size in a README.
RC: dict[RcKeyType, Any] = {
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "axes.grid": True,
    "grid.alpha": 0.3,
}

#: Known methods in a fixed order, so a method has the same colour and marker in every plot.
METHOD_ORDER: tuple[str, ...] = (
    *("no-retrain", "imp-rewind", "imp-finetune", "random", "structured-no-retrain", "structured-imp-rewind"),
    *("structured-imp-finetune", "imp-late-rewind", "imp-lr-rewind", "layerwise"),
)
_COLORS = [matplotlib.colormaps["tab10"](i) for i in range(10)]
_MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">"]
#: Line styles for the storage formats on size plots (the lab's COO size is solid).
SIZE_STYLES: dict[str, tuple[str, str]] = {
    "disk_sparse_bytes": ("-", "COO, lab"),
    "disk_dense_bytes": ("--", "dense"),
    "disk_compact_bytes": (":", "compact"),
    "disk_bound_bytes": ("-.", "bound"),
}
RUNTIME_STYLES: dict[str, str] = {"torch": "-", "onnxruntime": "--", "torch-sparse": ":", "executorch": "-."}
DPI = 110
FIGSIZE = (7.5, 4.8)
WIDE_FIGSIZE = (12.0, 4.8)


def method_style(method: str) -> dict[str, Any]:
    """Colour and marker of ``method``: fixed for known methods, stable (by name) for others."""
    if method in METHOD_ORDER:
        i = METHOD_ORDER.index(method)
    else:
        i = sum(map(ord, str(method)))  # a plugin's own method: a colour of its own name (may repeat one)
    return {"color": _COLORS[i % 10], "marker": _MARKERS[i % len(_MARKERS)]}


def metric_label(metric: str) -> str:
    """Axis label of a metric column, in percent."""
    if not metric or not str(metric).isidentifier():
        raise ValueError(f"metric must be a column name such as 'accuracy' or 'wer', got {metric!r}")
    return f"{label(metric)} (%)"


def new_figure(ncols: int = 1, wide: bool = False) -> tuple[Figure, list[Axes]]:
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=WIDE_FIGSIZE if wide or ncols > 1 else FIGSIZE, dpi=DPI, layout="constrained")
        axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
        for ax in axes:
            ax.grid(True, alpha=0.3)
    return fig, axes


def methods_in(df: pd.DataFrame) -> list[str]:
    """Methods present in ``df``, known ones in :data:`METHOD_ORDER`, then others by name."""
    present = [str(m) for m in df["method"].dropna().unique()] if "method" in df else []
    return sorted(present, key=lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m))


def _finite(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    """Rows of ``df`` where every column in ``cols`` exists and is a finite number."""
    if any(c not in df for c in cols):
        return df.iloc[0:0]
    keep = np.ones(len(df), dtype=bool)
    for c in cols:
        vals = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        keep &= np.isfinite(vals)
    return df[keep]


def _sparsity_axis(ax: Axes, sparsity_pct: Iterable[float]) -> None:
    """Label the x axis as sparsity; spread the high end (log of weights remaining) when it reaches 90 %."""
    values = [float(v) for v in sparsity_pct if math.isfinite(float(v))]
    ax.set_xlabel("Sparsity (% of prunable weights removed)")
    if not values or max(values) < 90.0:
        return
    top = min(max(values), 99.99)
    floor = (100.0 - top) / 4

    def forward(s: np.ndarray) -> np.ndarray:
        return -np.log10(np.clip(100.0 - np.asarray(s, dtype=float), floor, 100.0))

    def inverse(y: np.ndarray) -> np.ndarray:
        return 100.0 - np.power(10.0, -np.asarray(y, dtype=float))

    ax.set_xscale("function", functions=(forward, inverse))
    ticks = [t for t in (0, 50, 80, 90, 95, 98, 99, 99.5, 99.8, 99.9) if t <= top + 1e-9]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    lo, hi = float(forward(np.array(min(values + [0.0])))), float(forward(np.array(top)))
    margin = 0.04 * (hi - lo)
    ax.set_xlim(float(inverse(np.array(lo - margin))), float(inverse(np.array(hi + margin))))
    ax.set_xlabel("Sparsity (%; axis stretched toward 100 %)")


class _PlainLogFormatter(ticker.LogFormatterSciNotation):
    """Log-axis tick labels as plain numbers ("0.2", "50") where matplotlib would write 2x10^-1."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _log(ax: Axes, axis: str) -> None:
    """Log scale on ``axis`` ("x" or "y") with plain-number tick labels."""
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    scale = ax.xaxis if axis == "x" else ax.yaxis
    scale.set_major_formatter(_PlainLogFormatter())
    scale.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _legend(ax: Axes, title: str | None = None) -> None:
    """Legend inside the axes for a few lines, outside on the right for many (so it hides no data)."""
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) > 6:
        ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=True)
    elif handles:
        ax.legend(title=title, loc="best", frameon=True)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
        ax.plot([], [], label="no data")
        ax.legend(title=title, loc="upper right")


def _sorted(df: pd.DataFrame, by: str = "sparsity") -> pd.DataFrame:
    return df.sort_values(by) if by in df else df


def metric_vs_sparsity_figure(rows: pd.DataFrame, metric: str, title: str) -> Figure:
    """Accuracy (or WER) vs sparsity, one line per method; ``rows`` one per (method, iteration[, seed]): with several
    seeds, the mean over them and a band spanning its 95 % t interval (:mod:`prunelib.report.bands`)."""
    fig, (ax,) = new_figure()
    data = _finite(mean_over_seeds(rows, metric), "sparsity", metric)
    for method in methods_in(data):
        m = _sorted(data[data["method"] == method])
        ax.plot(100 * m["sparsity"].astype(float), 100 * m[metric].astype(float), label=method, **method_style(method))
        draw_band(ax, m, method_style(method)["color"])
    _sparsity_axis(ax, (100 * data["sparsity"].astype(float)).tolist() if len(data) else [])
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{title}: {label(metric)} vs sparsity")
    _legend(ax, "method" + band_note(data))
    return fig


def metric_vs_disk_figure(rows: pd.DataFrame, metric: str, title: str) -> Figure:
    """Accuracy (or WER) vs size on disk (MB, log x): solid = lab's sparse COO, dashed dense, dotted compact."""
    fig, (ax,) = new_figure()
    data = _finite(mean_over_seeds(rows, metric), metric)
    for method in methods_in(data):
        m = data[data["method"] == method]
        for col, (style, fmt) in SIZE_STYLES.items():
            if col == "disk_bound_bytes":
                continue  # a bound is not a file a model is stored in
            part = _sorted(_finite(m, col, metric), col)
            if part.empty:
                continue
            style_kw = method_style(method)
            ax.plot(
                part[col].astype(float) / 1e6,
                100 * part[metric].astype(float),
                linestyle=style,
                label=f"{method} ({fmt})",
                alpha=1.0 if col == "disk_sparse_bytes" else 0.75,
                **style_kw,
            )
    _log(ax, "x")
    ax.set_xlabel("Size on disk (MB, log scale)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{title}: {label(metric)} vs disk size")
    _legend(ax, "method (storage)")
    return fig


def metric_vs_latency_figure(rows: pd.DataFrame, metric: str, title: str) -> Figure:
    """Accuracy (or WER) vs median latency (ms, log x; the mean for rows saved without one), one line per method."""
    fig, (ax,) = new_figure()
    stat = latency_stat(rows)
    data = _finite(mean_over_seeds(rows, metric), f"latency_{stat}_s", metric)
    for method in methods_in(data):
        m = _sorted(data[data["method"] == method])
        x = 1e3 * m[f"latency_{stat}_s"].astype(float)
        ax.plot(x, 100 * m[metric].astype(float), label=method, **method_style(method))
    _log(ax, "x")
    ax.set_xlabel(f"Latency, {stat} per batch (ms, log scale)")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{title}: {label(metric)} vs latency")
    _legend(ax, "method")
    return fig


def runtime_latency_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Latency vs sparsity per runtime (line style; ``"<runtime> / <N>t"``: a marker per thread count) and
    method (colour), batch 1 and the largest batch, from the rows of one (dataset, model) at one precision.
    The median (the mean for rows saved without one); a shaded band spans each line's quartiles when recorded."""
    lat = f"latency_{latency_stat(rows)}_s"
    data = _finite(rows, "sparsity", lat, "batch_size")
    batches = sorted({int(b) for b in data["batch_size"]}) if len(data) else []
    shown = [b for b in (1, max(batches) if batches else None) if b in batches]
    shown = list(dict.fromkeys(shown)) or [1]
    fig, axes = new_figure(ncols=len(shown), wide=True)
    for ax, batch in zip(axes, shown):
        part = data[data["batch_size"].astype(int) == batch] if len(data) else data
        for method in methods_in(part):
            for runtime in sorted(part.loc[part["method"] == method, "runtime"].dropna().astype(str).unique()):
                m = _sorted(part[(part["method"] == method) & (part["runtime"].astype(str) == runtime)])
                style = method_style(method)
                if " / " in runtime:  # "torch / 4t": one line per thread count, told apart by the marker
                    style["marker"] = _MARKERS[int(runtime.rsplit(" / ", 1)[1].rstrip("t") or 0) % len(_MARKERS)]
                x = 100 * m["sparsity"].astype(float)
                linestyle = RUNTIME_STYLES.get(runtime.split(" / ")[0], "-.")
                ax.plot(x, 1e3 * m[lat].astype(float), linestyle=linestyle, label=f"{method} / {runtime}", **style)
                if lat == "latency_median_s" and not _finite(m, "latency_q1_s", "latency_q3_s").empty:
                    q1, q3 = (1e3 * pd.to_numeric(m[q], errors="coerce") for q in ("latency_q1_s", "latency_q3_s"))
                    ax.fill_between(x, q1, q3, color=style["color"], alpha=0.15, linewidth=0)
        _sparsity_axis(ax, (100 * part["sparsity"].astype(float)).tolist() if len(part) else [])
        _log(ax, "y")
        ax.set_ylabel(f"Latency per batch of {batch}, {lat.split('_')[1]} (ms, log)")
        ax.set_title(f"batch {batch}" + (" (latency)" if batch == 1 else " (throughput)"))
    labels: dict[str, Any] = {}
    for ax in axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(text, handle)
    if labels:
        fig.legend(list(labels.values()), list(labels.keys()), title="method / runtime", loc="outside right upper")
    else:
        _legend(axes[0], "method / runtime")
    fig.suptitle(f"{title}: latency per runtime (line style = runtime; marker = threads when several)")
    return fig


def speedup_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Speed-up over the dense model (median latency at sparsity 0 / median latency; means for rows saved without
    medians) and, where recorded, FLOPs vs sparsity. The knee table says which speed-ups are measurable."""
    has_flops = "flops" in rows and not _finite(rows, "flops", "sparsity").empty
    fig, axes = new_figure(ncols=2 if has_flops else 1)
    ax = axes[0]
    lat = f"latency_{latency_stat(rows)}_s"
    data = _finite(rows, "sparsity", lat)
    for method in methods_in(data):
        m = _sorted(data[data["method"] == method])
        dense = m[m["sparsity"].astype(float) == m["sparsity"].astype(float).min()][lat].astype(float)
        if dense.empty:
            continue
        ax.plot(
            100 * m["sparsity"].astype(float),
            float(dense.iloc[0]) / m[lat].astype(float),
            label=method,
            **method_style(method),
        )
    ax.axhline(1.0, color="gray", linewidth=1, linestyle=":")
    _sparsity_axis(ax, (100 * data["sparsity"].astype(float)).tolist() if len(data) else [])
    ax.set_ylabel("Speed-up vs dense (x)")
    ax.set_title(f"latency speed-up (ratio of {lat.split('_')[1]}s)")
    _legend(ax, "method")
    if has_flops:
        ax2 = axes[1]
        fl = _finite(rows, "sparsity", "flops")
        for method in methods_in(fl):
            m = _sorted(fl[fl["method"] == method])
            ax2.plot(
                100 * m["sparsity"].astype(float), m["flops"].astype(float) / 1e6, label=method, **method_style(method)
            )
        _sparsity_axis(ax2, (100 * fl["sparsity"].astype(float)).tolist())
        _log(ax2, "y")
        ax2.set_ylabel("FLOPs per sample (millions, log)")
        ax2.set_title("FLOPs")
        _legend(ax2, "method")
    fig.suptitle(f"{title}: speed-up" + (" and FLOPs" if has_flops else "") + " vs sparsity")
    return fig


def disk_vs_sparsity_figure(rows: pd.DataFrame, title: str) -> Figure:
    """Size on disk (MB, log y) vs sparsity: colour = method, line style = storage (dense/COO/compact/bound)."""
    fig, (ax,) = new_figure()
    data = _finite(rows, "sparsity")
    for method in methods_in(data):
        m = data[data["method"] == method]
        for col, (style, fmt) in SIZE_STYLES.items():
            part = _sorted(_finite(m, col, "sparsity"))
            if part.empty:
                continue
            ax.plot(
                100 * part["sparsity"].astype(float),
                part[col].astype(float) / 1e6,
                linestyle=style,
                label=f"{method} ({fmt})",
                **method_style(method),
            )
    _sparsity_axis(ax, (100 * data["sparsity"].astype(float)).tolist() if len(data) else [])
    _log(ax, "y")
    ax.set_ylabel("Size on disk (MB, log scale)")
    ax.set_title(f"{title}: disk size vs sparsity")
    _legend(ax, "method (storage)")
    return fig


def sensitivity_figure(frame: pd.DataFrame, metric: str, title: str) -> Figure:
    """Per-group sensitivity: accuracy (or WER) vs sparsity of that group alone, one line per group."""
    fig, (ax,) = new_figure()
    data = _finite(frame, "sparsity", metric)
    groups = sorted(data["group"].dropna().astype(str).unique()) if "group" in data else []
    for i, group in enumerate(groups):
        m = _sorted(data[data["group"].astype(str) == group])
        ax.plot(
            100 * m["sparsity"].astype(float),
            100 * m[metric].astype(float),
            label=group,
            color=_COLORS[i % 10],
            marker=_MARKERS[i % len(_MARKERS)],
        )
    _sparsity_axis(ax, (100 * data["sparsity"].astype(float)).tolist() if len(data) else [])
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{title}: sensitivity ({label(metric)} vs sparsity per group)")
    _legend(ax, "group")
    return fig


def _history_keys(history: pd.DataFrame, limit: int) -> list[str]:
    """Up to ``limit`` keys, those whose latency (relative) or metric (points) moved most across runs."""
    keys = list(dict.fromkeys(history["key"].astype(str)))
    if len(keys) <= limit:
        return keys

    def spread(key: str) -> float:
        k = history[history["key"].astype(str) == key]
        lat = pd.to_numeric(k["latency_median_s"], errors="coerce").dropna()
        move = (lat.max() / lat.min() - 1) if len(lat) and lat.min() > 0 else 0.0
        if "metric_value" in k:
            vals = pd.to_numeric(k["metric_value"], errors="coerce").dropna()
            move += 10 * (vals.max() - vals.min()) if len(vals) else 0.0  # 1 point ~ 10 % latency
        return float(move)

    return sorted(keys, key=spread, reverse=True)[:limit]


def history_figure(history: pd.DataFrame, title: str = "Run history", max_keys: int = 10) -> Figure:
    """Median latency (ms) and accuracy/WER (%) per key across runs; colour = key, shared legend below.

    ``history``: one row per (run, key) with ``run_index``, ``run_label``, ``key``,
    ``latency_median_s``, ``metric`` and ``metric_value``. With more than ``max_keys`` keys,
    only those that moved most are drawn (the title says so).
    """
    fig, (ax_lat, ax_met) = new_figure(ncols=2, wide=True)
    fig.set_size_inches(WIDE_FIGSIZE[0], WIDE_FIGSIZE[1] + 1.5)
    all_keys = list(dict.fromkeys(history["key"].astype(str))) if "key" in history else []
    keys = _history_keys(history, max_keys) if all_keys else []
    handles: dict[str, Any] = {}
    for i, key in enumerate(keys):
        k = history[history["key"].astype(str) == key].sort_values("run_index")
        style: dict[str, Any] = {"color": _COLORS[i % 10], "marker": _MARKERS[i % len(_MARKERS)]}
        lat = _finite(k, "latency_median_s")
        if not lat.empty:
            (h,) = ax_lat.plot(lat["run_index"], 1e3 * lat["latency_median_s"].astype(float), **style)
            handles.setdefault(key, h)
        met = _finite(k, "metric_value")
        if not met.empty:
            (h,) = ax_met.plot(met["run_index"], 100 * met["metric_value"].astype(float), **style)
            handles.setdefault(key, h)
    runs = history[["run_index", "run_label"]].drop_duplicates().sort_values("run_index") if len(history) else None
    for ax in (ax_lat, ax_met):
        if runs is not None:
            ax.set_xticks(runs["run_index"].tolist())
            ax.set_xticklabels(runs["run_label"].astype(str).tolist(), rotation=20, ha="right", fontsize=8)
        ax.set_xlabel("Run (index: date)")
    _log(ax_lat, "y")
    ax_lat.set_ylabel("Median latency per batch (ms, log)")
    ax_lat.set_title("latency")
    names = sorted(history["metric"].dropna().astype(str).unique()) if "metric" in history else []
    ax_met.set_ylabel(" / ".join(label(n) for n in names) + " (%)" if names else "metric (%)")
    ax_met.set_title("primary metric per key")
    if handles:
        fig.legend(
            list(handles.values()), list(handles.keys()), title="key", loc="outside lower center", ncols=2, fontsize=8
        )
    else:
        _legend(ax_lat, "key")
    shown = f" ({len(keys)} of {len(all_keys)} keys: largest changes)" if len(keys) < len(all_keys) else ""
    fig.suptitle(title + shown)
    return fig


def figure_texts(fig: Figure) -> dict[str, Any]:
    """Title, axis labels and legend labels of ``fig`` (for tests and for alt text)."""
    axes = fig.get_axes()
    suptitle = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
    return {
        "title": suptitle or (axes[0].get_title() if axes else ""),
        "figure_legend": [t.get_text() for leg in fig.legends for t in leg.get_texts()],
        "axes": [
            {
                "title": ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "legend": [t.get_text() for t in cast("Legend", ax.get_legend()).get_texts()]
                if ax.get_legend()
                else [],
            }
            for ax in axes
        ],
    }


def save_png(fig: Figure, path: Path | str) -> Path:
    """Render ``fig`` to ``path`` as PNG (Agg) atomically; returns ``path``."""
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
