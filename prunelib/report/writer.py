"""A run's report: pytest-benchmark JSON in, a new folder of tables, plots and a README out.

Pure over the JSON (``--benchmark-json`` output, or the dict handed to
``pytest_benchmark_update_json``): it never imports a model. Each run gets its own folder
``<UTC timestamp>-<id>``, staged in a hidden folder and renamed into place when complete,
so nothing is overwritten and a reader never sees half a report; ``latest`` then points at it.
Entries without timing stats (``--benchmark-disable``) or without some keys are reported
with what they have, and the README says what is missing.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from prunelib.families.contract import Metric
from prunelib.fileio import write_text_atomic
from prunelib.measure.machine import machine_from_benchmark_info, machine_markdown
from prunelib.report import plots
from prunelib.results import knee as knee_mod
from prunelib.results.schema import label, metric_of, row_metrics
from prunelib.results.tables import to_markdown, wide_table

#: extra_info keys every benchmark entry should carry (``wer`` may replace ``accuracy``).
STABLE_KEYS: tuple[str, ...] = (
    "dataset",
    "model",
    "method",
    "iteration",
    "amount",
    "sparsity",
    "sparsity_model",
    "accuracy",
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
INFERENCE_RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime", "torch-sparse")
OPTIONAL_KEYS: tuple[str, ...] = ("wer", "disk_compact_bytes", "disk_bound_bytes", "flops", "precision")
#: pytest-benchmark stats (seconds) → result columns.
STATS_COLUMNS: dict[str, str] = {
    "mean": "latency_mean_s",
    "stddev": "latency_std_s",
    "median": "latency_median_s",
    "min": "latency_min_s",
    "max": "latency_max_s",
    "iqr": "latency_iqr_s",
    "rounds": "rounds",
    "ops": "ops_per_s",
}
#: Keys that name one table of the lab: one (dataset, model, method) sweep.
SWEEP_KEYS: tuple[str, ...] = ("dataset", "model", "method")
SENSITIVITY = "sensitivity"


def _scalar(value: Any) -> Any:
    """A CSV-friendly value: containers become JSON text."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _number(value: Any) -> float:
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
        extra = entry.get("extra_info") if isinstance(entry.get("extra_info"), dict) else {}
        stats = entry.get("stats") if isinstance(entry.get("stats"), dict) else {}
        rec: dict[str, Any] = {
            "name": entry.get("name"),
            "fullname": entry.get("fullname"),
            "group": entry.get("group"),
        }
        rec.update({k: _scalar(v) for k, v in extra.items() if k not in rec})
        for stat, column in STATS_COLUMNS.items():
            rec[column] = _number(stats.get(stat))
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


def _dedupe(rows: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, int]:
    """One row per ``keys``: the one run with most threads (then the first); returns (rows, dropped)."""
    if rows.empty:
        return rows, 0
    ordered = rows.assign(_t=pd.to_numeric(rows["threads"], errors="coerce").fillna(-1)).sort_values(
        "_t", ascending=False, kind="stable"
    )
    kept = ordered.drop_duplicates(subset=keys, keep="first").drop(columns="_t").sort_index()
    return kept, len(rows) - len(kept)


def lab_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows the lab's tables are made of: runtime torch, batch size 1, fp32, one per iteration."""
    batch = pd.to_numeric(rows["batch_size"], errors="coerce")
    sel = rows[(rows["runtime"].astype(str) == "torch") & (batch == 1) & is_fp32(rows)]
    sel = sel.dropna(subset=["dataset", "model", "method", "iteration"])
    kept, _ = _dedupe(sel, [*SWEEP_KEYS, "iteration"])
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
        "params_total",
        "params_nonzero",
        "disk_dense_bytes",
        "disk_sparse_bytes",
    ]
    cols += [c for c in ("disk_compact_bytes", "flops", "neuron_sparsity") if c in rows and rows[c].notna().any()]
    out = rows.reindex(columns=cols).copy()
    for c in cols:
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out.sort_values("iteration", kind="stable").reset_index(drop=True)


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
    lacking = {k: int(rows[k].isna().sum()) for k in STABLE_KEYS if k != "accuracy"}
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


def _slug(*parts: Any) -> str:
    text = "-".join(str(p) for p in parts if p is not None and str(p) != "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.-") or "unnamed"


def _fmt_cell(table: pd.DataFrame) -> pd.DataFrame:
    return table.astype(object).where(table.notna(), "n/a")


def _md_table(table: pd.DataFrame) -> str:
    return to_markdown(_fmt_cell(table)) if len(table) else "_(no rows)_\n"


class _Writer:
    """Writes files into the staging folder and remembers README lines."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lines: list[str] = []

    def text(self, rel: str, text: str) -> str:
        write_text_atomic(self.folder / rel, text)
        return rel

    def csv(self, rel: str, df: pd.DataFrame) -> str:
        return self.text(rel, df.to_csv(index=False))

    def figure(self, rel: str, fig: Any, alt: str) -> None:
        plots.save_png(fig, self.folder / rel)
        self.lines += [f"![{alt}]({rel})", ""]


def _section_for_model(w: _Writer, dataset: str, model: str, rows: pd.DataFrame, tolerance: float) -> None:
    """Tables, plots and knee of one (dataset, model): all its methods."""
    chosen = metric_of(rows)
    metric = chosen.name
    title = f"{dataset} / {model}"
    direction = "higher is better" if chosen.higher_is_better else "lower is better"
    w.lines += [f"## {title} ({label(metric)}, {direction})", ""]
    lab = lab_rows(rows)
    knee_input = []
    if lab.empty:
        w.lines += ["_No runtime=torch, batch-1, fp32 rows: no lab table for this model._", ""]
    for method in plots.methods_in(lab):  # same order as the plots' legends
        sweep = schedule_frame(lab[lab["method"] == method], metric)
        table = wide_table(sweep)
        stem = f"tables/{_slug(dataset, model, method)}"
        csv_rel = w.csv(f"{stem}.csv", table)
        md_rel = w.text(f"{stem}.md", f"# {title} / {method}\n\n" + _md_table(table))
        w.lines += [f"### {method}", "", _md_table(table), f"Files: [{csv_rel}]({csv_rel}), [{md_rel}]({md_rel})", ""]
        knee_input.append(sweep.assign(method=method))

    fp32 = rows[is_fp32(rows) & rows["runtime"].astype(str).isin(INFERENCE_RUNTIMES)]  # not e.g. compact-load timings
    all_runtimes, _ = _dedupe(
        fp32.dropna(subset=["method", "iteration"]), ["method", "iteration", "runtime", "batch_size"]
    )
    base = _slug(dataset, model)
    w.lines += ["### Plots", ""]
    mname = label(metric)
    w.figure(
        f"plots/{base}-{metric}-vs-sparsity.png",
        plots.metric_vs_sparsity_figure(lab, metric, title),
        f"{mname} vs sparsity",
    )
    w.figure(
        f"plots/{base}-{metric}-vs-disk.png", plots.metric_vs_disk_figure(lab, metric, title), f"{mname} vs disk size"
    )
    w.figure(
        f"plots/{base}-{metric}-vs-latency.png",
        plots.metric_vs_latency_figure(lab, metric, title),
        f"{mname} vs latency",
    )
    w.figure(
        f"plots/{base}-runtime-latency.png",
        plots.runtime_latency_figure(all_runtimes, title),
        "PyTorch vs ONNX Runtime latency",
    )
    w.figure(f"plots/{base}-speedup.png", plots.speedup_figure(lab, title), "Speed-up (and FLOPs) vs sparsity")
    w.figure(f"plots/{base}-disk-vs-sparsity.png", plots.disk_vs_sparsity_figure(lab, title), "Disk size vs sparsity")

    w.lines += [f"### Knee (highest sparsity within {100 * tolerance:g} point(s) of dense, monotone rule)", ""]
    if knee_input:
        knees = knee_mod.find_knee(pd.concat(knee_input, ignore_index=True), tolerance=tolerance, metric=chosen)
        w.csv(f"knee/{base}.csv", knees)
        w.lines += [_md_table(knee_mod.knee_table(knees)), ""]
    else:
        w.lines += ["_No sweep to search._", ""]


def _section_for_extras(w: _Writer, extra: dict[str, pd.DataFrame]) -> None:
    w.lines += ["## Extras", ""]
    for name, frame in extra.items():
        stem = f"extras/{_slug(name)}"
        w.lines += [f"### {name}", ""]
        w.csv(f"{stem}.csv", frame)
        w.text(f"{stem}.md", f"# {name}\n\n" + _md_table(frame))
        w.lines += [_md_table(frame), f"Files: [{stem}.csv]({stem}.csv)", ""]
        if is_sensitivity(name):
            chosen = metric_of(frame)
            title = "Layer-group sensitivity" + name[len(SENSITIVITY) :].replace("-", " ", 1)
            w.lines += [sensitivity_summary(frame, chosen), ""]
            w.figure(f"{stem}.png", plots.sensitivity_figure(frame, chosen.name, title), f"{name} plot")


def tolerated_sparsity(frame: pd.DataFrame, metric: Metric, tolerance: float = 0.01) -> pd.Series:
    """Per group, the highest sparsity level whose metric stays within ``tolerance`` of the group's dense value."""
    out = {}
    for group, part in frame.groupby("group", sort=False):
        part = part.sort_values("sparsity")
        dense = float(part[metric.name].iloc[0])
        worse = part[metric.name].map(lambda v, d=dense: metric.loss(d, float(v)))
        ok = part.loc[worse <= tolerance, "sparsity"]
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


def is_sensitivity(name: str) -> bool:
    """Extra tables named ``sensitivity`` or ``sensitivity-<what>`` get a sensitivity plot."""
    return name == SENSITIVITY or name.startswith(SENSITIVITY + "-")


def _check_extra(extra: dict[str, pd.DataFrame] | None) -> dict[str, pd.DataFrame]:
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict of name -> DataFrame, got {type(extra).__name__}")
    for name, frame in extra.items():
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"extra[{name!r}] must be a pandas DataFrame, got {type(frame).__name__}")
        if is_sensitivity(name):
            need = {"group", "sparsity", metric_of(frame).name}
            if not need <= set(frame.columns):
                raise ValueError(
                    f"extra[{name!r}] needs columns group, sparsity and its metric ({metric_of(frame).name}); "
                    f"got {list(frame.columns)}"
                )
    return extra


def _claim_folder(staging: Path, root: Path, stem: str, random_suffix: bool) -> Path:
    """Rename ``staging`` to a fresh ``root/<stem>[-...]``; never replaces an existing folder."""
    for attempt in range(1000):
        if attempt == 0:
            name = stem
        elif random_suffix:
            name = f"{stem.rsplit('-', 1)[0]}-{secrets.token_hex(3)}"
        else:
            name = f"{stem}-{attempt + 1}"
        target = root / name
        if os.path.lexists(target):
            continue
        try:
            os.rename(staging, target)  # fails on a non-empty target; lexists guards the empty case
        except OSError:
            if os.path.lexists(target):
                continue
            raise
        return target
    raise RuntimeError(f"could not find a free report folder name under {root} for {stem!r}")


def update_latest(reports_root: Path | str, folder_name: str) -> Path:
    """Point ``reports_root/latest`` at ``folder_name`` (a relative symlink swapped in with os.replace).

    Where symlinks cannot be made, writes ``reports_root/LATEST`` holding the folder name instead.
    Returns the path written (the symlink or the LATEST file).
    """
    root = Path(reports_root)
    if not (root / folder_name).is_dir():
        raise ValueError(f"no report folder {folder_name!r} under {root}")
    tmp = root / f".latest-{secrets.token_hex(4)}"
    try:
        os.symlink(folder_name, tmp, target_is_directory=True)
        os.replace(tmp, root / "latest")
        return root / "latest"
    except (OSError, NotImplementedError):
        if os.path.lexists(tmp):
            os.unlink(tmp)
        return write_text_atomic(root / "LATEST", folder_name + "\n")


def write_run_report(
    bench: dict[str, Any],
    reports_root: Path | str,
    *,
    extra: dict[str, pd.DataFrame] | None = None,
    run_name: str | None = None,
    knee_tolerance: float = 0.01,
) -> Path:
    """Write a run's report into a new folder under ``reports_root`` and point ``latest`` at it.

    Args:
        bench: pytest-benchmark JSON as a dict (``--benchmark-json`` file or the hook's
            ``output_json``); entries may lack stats or keys, the list may be empty.
        reports_root: folder holding one sub-folder per run (created if missing).
        extra: more tables by name; ``"sensitivity"`` (columns group, sparsity, accuracy|wer)
            also gets a plot, every frame gets a CSV and a markdown table.
        run_name: readable id for the folder (``<UTC timestamp>-<run_name>``); default random.
        knee_tolerance: accuracy/WER tolerance of the knee table, fraction (0.01 = 1 point).

    Returns:
        The new folder. Existing folders are never modified; ``latest`` (or ``LATEST``) is.

    Raises:
        TypeError/ValueError: ``bench`` not a dict, malformed ``extra``.
    """
    extras = _check_extra(extra)
    rows = benchmark_rows(bench)
    root = Path(reports_root)
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    stem = f"{now:%Y%m%dT%H%M%SZ}-{_slug(run_name) if run_name else secrets.token_hex(3)}"
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700; a report folder is for others to read
        w = _Writer(staging)
        commit = bench.get("commit_info") if isinstance(bench.get("commit_info"), dict) else {}
        w.lines += [
            f"# Pruning run report ({now:%Y-%m-%d %H:%M} UTC)",
            "",
            f"Benchmarks recorded {bench.get('datetime', 'n/a')} with pytest-benchmark {bench.get('version', 'n/a')}; "
            f"commit `{commit.get('id', 'n/a')}`{' (dirty)' if commit.get('dirty') else ''}; {len(rows)} entries.",
            "",
        ]
        machine = machine_from_benchmark_info(bench.get("machine_info") or {})
        w.lines += [machine_markdown(machine)]
        notes = missing_notes(bench, rows)
        if notes:
            w.lines += ["## Missing data", "", *[f"- {n}" for n in notes], ""]
        w.csv("results.csv", rows)
        w.text("benchmark.json", json.dumps(bench, indent=1, default=str, sort_keys=False))
        keyed = rows.dropna(subset=["dataset", "model"])
        for (dataset, model), part in keyed.groupby(
            [keyed["dataset"].astype(str), keyed["model"].astype(str)], sort=True
        ):
            _section_for_model(w, dataset, model, part, knee_tolerance)
        if extras:
            _section_for_extras(w, extras)
        w.text("README.md", "\n".join(w.lines).rstrip() + "\n")
        folder = _claim_folder(staging, root, stem, random_suffix=run_name is None)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    update_latest(root, folder.name)
    return folder


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
