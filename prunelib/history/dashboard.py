"""A static dashboard of a history: ``DIR/index.html`` and ``DIR/plotly.min.js``, opened from ``file://``.

Drawn by Plotly (``pip install 'prunelib[history]'``); its JavaScript is written once beside the
page and referenced relatively, so the page needs no server and no network. Per machine (a
selector shows one machine at a time; runs of two machines never share a line):

- the runs (time, commit, versions, report folder);
- the changes, newest first (:mod:`prunelib.history.changes`), linking both runs' report folders;
- per (dataset, model, method): accuracy (or WER) against sparsity, one line per run, the latest highlighted;
- per (dataset, model, method, runtime, batch, precision): median latency over runs, one line per
  iteration with its IQR (q1 to q3) as a band, changes marked;
- per (dataset, model, method): sizes on disk over runs at each run's last iteration.

Output is deterministic for the same runs (sorted machines, runs, benchmarks; fixed chart ids).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import pandas as pd

from prunelib.fileio import write_text_atomic
from prunelib.history.changes import DEFAULT_RULE, Rule, find_changes
from prunelib.history.table import History, wide
from prunelib.results.schema import label

ASSET = "plotly.min.js"
CONFIG = {"displaylogo": False, "responsive": True, "displayModeBar": False}  # zoom: drag; reset: double-click
SIZES = {
    "disk_dense_bytes": "dense (state_dict)",
    "disk_sparse_bytes": "sparse (COO)",
    "disk_compact_bytes": "compact file",
    "disk_bound_bytes": "entropy bound",
}
SERIES = ["dataset", "model", "method", "runtime", "batch_size", "precision"]
SWEEP = ["dataset", "model", "method"]
LATEST, OLDER = "#d62728", "rgba(110,110,110,0.45)"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:8px}.chart{height:340px}.note{background:#f6f6f6;padding:.6em 1em;max-width:980px}
.slower,.worse{color:#b00}.faster,.better{color:#070}"""
SCRIPT = """<script>
function prunelibShow(id){document.querySelectorAll('.machine').forEach(function(d){
 var on=d.dataset.machine===id; d.style.display=on?'':'none';
 if(on){d.querySelectorAll('.js-plotly-plot').forEach(function(p){Plotly.Plots.resize(p);});}});}
var sel=document.getElementById('machine');
sel.addEventListener('change',function(){prunelibShow(sel.value);});
prunelibShow(sel.value);
</script>"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None or (isinstance(value, float) and value != value) else str(value))


def _link(target: str, out_dir: Path, text: str) -> str:
    """A relative link from the page to ``target`` (a report folder's README, else the run's JSON file)."""
    if not target:
        return "n/a"
    path = Path(target)
    path = path / "README.md" if path.is_dir() else path
    rel = os.path.relpath(path.resolve(), out_dir.resolve())
    return f'<a href="{html.escape(Path(rel).as_posix())}">{_esc(text)}</a>'


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(title: str, x: str, y: str, **more: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "template": "none",  # the default template adds ~7 KB to every chart
        "xaxis": {"title": {"text": x}, "gridcolor": "#eee"},
        "yaxis": {"title": {"text": y}, "gridcolor": "#eee"},
        "margin": {"l": 70, "r": 20, "t": 40, "b": 50},
        "legend": {"font": {"size": 11}},
        **more,
    }


def curve_figure(rows: pd.DataFrame, title: str) -> Any:
    """Metric vs sparsity of one sweep on one machine: one line per run, the latest thick and red."""
    import plotly.graph_objects as go

    metric = str(rows["metric_name"].dropna().iloc[0]) if rows["metric_name"].notna().any() else "metric"
    runs = list(dict.fromkeys(rows.sort_values("datetime", kind="stable")["run"]))
    fig = go.Figure()
    for run in runs:
        part = rows[rows["run"] == run].sort_values("sparsity", kind="stable")
        latest = run == runs[-1]
        fig.add_trace(
            go.Scatter(
                x=(100 * part["sparsity"]).round(2).tolist(),
                y=(100 * part["metric_value"]).round(3).tolist(),
                mode="lines+markers",
                name=f"{run} (latest)" if latest else run,
                line={"color": LATEST if latest else OLDER, "width": 3 if latest else 1.2},
                marker={"size": 6 if latest else 4},
            )
        )
    return fig.update_layout(**_layout(title, "sparsity (%)", f"{label(metric)} (%)"))


def latency_figure(rows: pd.DataFrame, changes: pd.DataFrame, title: str) -> Any:
    """Median latency over runs of one series: a line and an IQR band per iteration, changes marked."""
    import plotly.graph_objects as go

    fig = go.Figure()
    timed = rows.dropna(subset=["latency_median_s"]).sort_values("datetime", kind="stable")
    for i, (iteration, part) in enumerate(timed.groupby("iteration", sort=True)):
        color = PALETTE[i % len(PALETTE)]
        x = part["datetime"].map(lambda t: t.isoformat()).tolist()
        sparsity = part["sparsity"].dropna()
        name = f"it{int(iteration):02d}" + (f" ({100 * sparsity.iloc[-1]:.0f} %)" if len(sparsity) else "")
        band = part.dropna(subset=["latency_q1_s", "latency_q3_s"]) if "latency_q1_s" in part else part.iloc[0:0]
        if len(band):
            bx = band["datetime"].map(lambda t: t.isoformat()).tolist()
            fig.add_trace(
                go.Scatter(
                    x=bx + bx[::-1],
                    y=(1e3 * band["latency_q3_s"]).round(5).tolist()
                    + (1e3 * band["latency_q1_s"]).round(5).tolist()[::-1],
                    fill="toself",
                    mode="lines",
                    fillcolor=_rgba(color, 0.18),
                    line={"width": 0},
                    hoverinfo="skip",
                    name=f"{name} IQR",
                    legendgroup=name,
                    showlegend=False,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=(1e3 * part["latency_median_s"]).round(5).tolist(),
                mode="lines+markers",
                name=name,
                legendgroup=name,
                line={"color": color},
                text=[f"{r} · {c[:10]}" for r, c in zip(part["run"], part["commit"])],
                hovertemplate="%{text}<br>median %{y:.4g} ms<extra>" + html.escape(name) + "</extra>",
            )
        )
    if len(changes):
        at = timed.set_index(["run", "benchmark"])["latency_median_s"]
        hits = [(c, at.get((c["after_run"], c["benchmark"]))) for _, c in changes.iterrows()]
        hits = [(c, v) for c, v in hits if v is not None and v == v]
        fig.add_trace(
            go.Scatter(
                x=[c["after_datetime"].isoformat() for c, _ in hits],
                y=[round(1e3 * v, 5) for _, v in hits],
                mode="markers",
                name="detected change",
                marker={"symbol": "x", "size": 13, "color": "#b00", "line": {"width": 2}},
                text=[f"{c['direction']} {c['change']} ({c['evidence']})" for c, _ in hits],
                hovertemplate="%{text}<extra>change</extra>",
            )
        )
    return fig.update_layout(**_layout(title, "run time (UTC)", "median latency (ms), band: IQR"))


def size_figure(rows: pd.DataFrame, title: str) -> Any:
    """Sizes on disk over runs of one sweep, at each run's last iteration."""
    import plotly.graph_objects as go

    last = rows.sort_values(["datetime", "iteration"], kind="stable").groupby("run", sort=False).tail(1)
    last = last.sort_values("datetime", kind="stable")
    fig = go.Figure()
    for column, name in SIZES.items():
        if column in last and last[column].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=last["datetime"].map(lambda t: t.isoformat()).tolist(),
                    y=(last[column] / 1e6).round(5).tolist(),
                    mode="lines+markers",
                    name=name,
                    text=[f"{r} · it{int(i):02d}" for r, i in zip(last["run"], last["iteration"])],
                    hovertemplate="%{text}<br>%{y:.4g} MB<extra>" + name + "</extra>",
                )
            )
    return fig.update_layout(**_layout(title + " (last iteration)", "run time (UTC)", "size on disk (MB)"))


def _lab(rows: pd.DataFrame) -> pd.DataFrame:
    """One fp32 row per (run, sweep, iteration) for curves and sizes: torch at batch 1 preferred."""
    fp32 = rows[(rows["precision"] == "fp32")].dropna(subset=[*SWEEP, "iteration"])
    rank = (fp32["runtime"] != "torch").astype(int) * 2 + (pd.to_numeric(fp32["batch_size"], errors="coerce") != 1)
    return (
        fp32.assign(_rank=rank.astype(int))
        .sort_values(["_rank", "benchmark"], kind="stable")
        .drop_duplicates(["run", *SWEEP, "iteration"])
        .drop(columns="_rank")
    )


def _table(headers: list[str], body: list[list[str]], empty: str) -> str:
    if not body:
        return f"<p><em>{_esc(empty)}</em></p>"
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


class _Charts:
    """Numbers the charts of a page, so ids are the same each time it is built."""

    def __init__(self) -> None:
        self.count = 0

    def html(self, fig: Any) -> str:
        self.count += 1
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{self.count}", config=CONFIG)
        return f'<div class="chart">{div}</div>'


def _runs_table(rows: pd.DataFrame, runs: pd.DataFrame, out: Path) -> str:
    hot = rows.groupby("run")["throttled"].sum() if len(rows) else pd.Series(dtype=int)
    body = [
        [
            _esc(r["run"]),
            _esc(r["commit"][:12]) + (" (dirty)" if r["dirty"] else ""),
            _esc(r["torch_version"]),
            _esc(r["onnxruntime_version"]),
            _esc(r["prunelib_version"]),
            f"board throttled in {int(hot[r['run']])} entries" if int(hot.get(r["run"], 0)) else "",
            _link(r["report"] or r["source"], out, "report" if r["report"] else Path(r["source"]).name),
        ]
        for _, r in runs.sort_values("datetime", ascending=False, kind="stable").iterrows()
    ]
    headers = ["run (UTC)", "commit", "torch", "onnxruntime", "prunelib", "note", "report / file"]
    return _table(headers, body, "no runs")


def _changes_table(changes: pd.DataFrame, out: Path) -> str:
    body = [
        [
            _esc(c["after_run"]),
            _esc(c["benchmark"]),
            _esc(c["quantity"]),
            f'<span class="{_esc(c["direction"])}">{_esc(c["direction"])}</span>',
            f"{_esc(c['before'])} → {_esc(c['after'])}",
            _esc(c["change"]),
            _esc(c["evidence"]),
            _link(c["before_report"] or c["before_source"], out, c["before_run"]),
            _link(c["after_report"] or c["after_source"], out, c["after_run"]),
        ]
        for _, c in changes.iterrows()
    ]
    headers = [
        "run",
        "benchmark",
        "what",
        "direction",
        "before → after",
        "change",
        "evidence",
        "earlier run",
        "later run",
    ]
    return _table(headers, body, "no change between consecutive runs of this machine")


def _machine_section(
    index: int, machine: str, rows: pd.DataFrame, runs: pd.DataFrame, changes: pd.DataFrame, out: Path, charts: _Charts
) -> str:
    """One machine's part of the page: curves, latency, sizes, then the changes and the runs."""
    lab = _lab(rows)
    parts = [
        f'<div class="machine" data-machine="m{index}">',
        f'<p>{len(runs)} runs on {_esc(machine)}; <a href="#changes-m{index}">{len(changes)} change(s)</a>.</p>',
        "<h2>Accuracy (or WER) against sparsity, one line per run (latest in red)</h2>",
        '<div class="charts">',
    ]
    for keys, part in lab.groupby(SWEEP, sort=True):
        if part["metric_value"].notna().any():
            parts.append(charts.html(curve_figure(part.dropna(subset=["metric_value"]), " / ".join(map(str, keys)))))
    parts += ["</div>", "<h2>Latency over runs (median, IQR band; × = detected change)</h2>", '<div class="charts">']
    timed = rows.dropna(subset=["latency_median_s"]) if "latency_median_s" in rows else rows.iloc[0:0]
    for keys, part in timed.groupby(SERIES, sort=True):
        mine = changes[changes["benchmark"].isin(part["benchmark"]) & changes["quantity"].str.startswith("latency")]
        title = " / ".join(map(str, keys[:4])) + f" / batch {keys[4]} / {keys[5]}"
        parts.append(charts.html(latency_figure(part, mine, title)))
    parts.append("</div>")
    if timed.empty:
        parts.append("<p><em>No timed entries (runs with --benchmark-disable record no latency).</em></p>")
    parts += ["<h2>Sizes on disk over runs</h2>", '<div class="charts">']
    for keys, part in lab.groupby(SWEEP, sort=True):
        if any(c in part and part[c].notna().any() for c in SIZES):
            parts.append(charts.html(size_figure(part, " / ".join(map(str, keys)))))
    parts += ["</div>", f'<h2 id="changes-m{index}">Changes, newest first</h2>', _changes_table(changes, out)]
    parts += [f"<h2>Runs on {_esc(machine)}, newest first</h2>", _runs_table(rows, runs, out), "</div>"]
    return "\n".join(parts)


def build_page(history: History, out_dir: Path, rule: Rule = DEFAULT_RULE) -> str:
    """The dashboard's HTML (referencing :data:`ASSET` beside it) for ``history`` written to ``out_dir``."""
    rows = wide(history.table)
    changes = find_changes(rows, history.rounds, rule)
    runs = history.runs
    machines = sorted(runs["machine"].unique()) if len(runs) else []
    newest = runs.sort_values("datetime", kind="stable")["machine"].iloc[-1] if len(runs) else None
    charts = _Charts()
    options = "".join(
        f'<option value="m{i}"{" selected" if m == newest else ""}>{_esc(m)} '
        f"({int((runs['machine'] == m).sum())} runs)</option>"
        for i, m in enumerate(machines)
    )
    sections = [
        _machine_section(
            i,
            m,
            rows[rows["machine"] == m],
            runs[runs["machine"] == m],
            changes[changes["machine"] == m],
            out_dir,
            charts,
        )
        for i, m in enumerate(machines)
    ]
    first, last = (runs["datetime"].min(), runs["datetime"].max()) if len(runs) else (None, None)
    span = f"{len(runs)} runs from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC" if len(runs) else "no runs"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>prunelib: runs over time</title>
<style>{STYLE}</style><script src="{ASSET}"></script></head><body>
<h1>prunelib: runs over time</h1>
<p>{_esc(span)}; {len(machines)} machine(s). A machine is CPU brand · architecture · OS from each run's machine_info.</p>
<p><label for="machine">Machine: </label><select id="machine">{options}</select></p>
<p class="note" id="how-changes"><strong>How a change is decided.</strong> {_esc(rule.describe())}</p>
{"".join(sections)}
{SCRIPT}
</body></html>
"""


def write_dashboard(history: History, out_dir: Path | str, rule: Rule = DEFAULT_RULE) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/plotly.min.js`` (atomically; other files untouched); returns the page.

    Raises:
        ImportError: plotly is not installed (``pip install 'prunelib[history]'``).
    """
    from plotly.offline import get_plotlyjs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = build_page(history, out, rule)
    asset = out / ASSET
    script = get_plotlyjs()
    if not asset.is_file() or asset.read_text(encoding="utf-8") != script:
        write_text_atomic(asset, script)
    return write_text_atomic(out / "index.html", page)
