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
from prunelib.fileio import dir_mode, write_text_atomic
from prunelib.measure.machine import machine_from_benchmark_info, machine_markdown
from prunelib.report import layers, plots
from prunelib.report.rows import (
    INFERENCE_RUNTIMES,
    benchmark_rows,
    dedupe,
    is_fp32,
    lab_rows,
    missing_notes,
    runtime_table,
    schedule_frame,
)
from prunelib.results import knee as knee_mod
from prunelib.results.schema import label, metric_of
from prunelib.results.seeds import mean_over_seeds, seed_count
from prunelib.results.sensitivity import sensitivity_summary
from prunelib.results.tables import to_markdown, wide_table

SENSITIVITY = "sensitivity"
#: pytest-benchmark group of the speed-up pair's timings (bench/test_speedups.py, e.g. ``mnist5k-mlp1m-speedups-b1``):
#: they feed the ``speedups`` table and results.csv, not a model section of their own.
SPEEDUP_GROUP_SUFFIX = "-speedups-b1"


def model_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows that get a (dataset, model) section: the requested sweeps, not the speed-up pair's timings.

    The speed-up benchmarks time a fixed (dataset, model) of each family (the MLP's ``mlp1m``) in
    every run; a section for it would appear in every report unasked. A sweep of that model asked
    for with ``--prune-datasets`` is in another group and still gets its section.
    """
    keyed = rows.dropna(subset=["dataset", "model"])
    if "group" not in keyed:
        return keyed
    return keyed[~keyed["group"].astype(str).str.endswith(SPEEDUP_GROUP_SUFFIX)]


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


def throttle_warning(rows: pd.DataFrame) -> list[str]:
    """Report lines warning that timings ran on a hot board: entries whose ``throttled`` verdict is true.

    The verdict (:func:`prunelib.measure.thermal.run_throttled`) is set when the board reported
    throttling (``vcgencmd get_throttled``) or its clock fell during the benchmark.
    """
    if "throttled" not in rows:
        return []
    hot = rows[rows["throttled"].map(lambda v: v is True or str(v).lower() == "true")]
    if hot.empty:
        return []
    clocks = ""
    if {"cpu_freq_before_mhz", "cpu_freq_after_mhz"} <= set(hot.columns):
        low = pd.to_numeric(hot["cpu_freq_after_mhz"], errors="coerce").min()
        clocks = f" (the slowest CPU clock fell to {low:.0f} MHz)" if low == low else ""
    return [
        f"> **Warning: the board throttled or its clock fell during {len(hot)} of {len(rows)} timed entries**{clocks}; "
        "their latencies are heat, not the model. Cool the board (`--prune-cooldown SECONDS`) and rerun.",
        "",
    ]


def seeds_note(lab: pd.DataFrame, metric: Metric) -> list[str]:
    """Report lines saying how several seeds are shown (none with one seed)."""
    n = seed_count(lab)
    if n < 2:
        return []
    name, end = label(metric.name), "lower" if metric.higher_is_better else "upper"
    return [
        f"_{n} seeds: tables show the mean {name} per iteration with its 95 % Student-t interval "
        f"(`{name} low`, `{name} high`, `Seeds`), the plot of {name} vs sparsity a band spanning it, and the knee "
        f"judges each iteration by the {end} bound of its change from dense, paired by seed. Latency and sizes "
        "are medians over the seeds; "
        "`results.csv` keeps one row per seed._",
        "",
    ]


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
    w.lines += seeds_note(lab, chosen)
    for method in plots.methods_in(lab):  # same order as the plots' legends
        sweep = schedule_frame(lab[lab["method"] == method], metric)
        table = wide_table(sweep)
        stem = f"tables/{_slug(dataset, model, method)}"
        csv_rel = w.csv(f"{stem}.csv", table)
        md_rel = w.text(f"{stem}.md", f"# {title} / {method}\n\n" + _md_table(table))
        w.lines += [f"### {method}", "", _md_table(table), f"Files: [{csv_rel}]({csv_rel}), [{md_rel}]({md_rel})", ""]
        knee_input.append(sweep.assign(method=method))

    fp32 = rows[is_fp32(rows) & rows["runtime"].astype(str).isin(INFERENCE_RUNTIMES)]  # not e.g. compact-load timings
    threads = pd.to_numeric(fp32["threads"], errors="coerce").fillna(1).astype(int)
    per_setting = fp32  # several --prune-threads values: one line per runtime and thread count
    if threads.nunique() > 1:
        per_setting = fp32.assign(runtime=fp32["runtime"].astype(str) + " / " + threads.astype(str) + "t")
    all_runtimes, _ = dedupe(
        per_setting.dropna(subset=["method", "iteration"]), ["method", "iteration", "runtime", "batch_size"]
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
        "Latency per runtime (PyTorch, ONNX Runtime, ExecuTorch, ...)",
    )
    lab_mean = mean_over_seeds(lab, metric)  # several seeds: one point per iteration (the median latency and size)
    w.figure(f"plots/{base}-speedup.png", plots.speedup_figure(lab_mean, title), "Speed-up (and FLOPs) vs sparsity")
    runtimes = runtime_table(fp32)
    if not runtimes.empty:
        w.lines += ["### Runtimes side by side (median latency per call, µs; batch 1, fp32)", ""]
        rel = w.csv(f"tables/{base}-runtimes.csv", runtimes)
        w.lines += [_md_table(runtimes), f"Files: [{rel}]({rel})", ""]
    w.figure(
        f"plots/{base}-disk-vs-sparsity.png", plots.disk_vs_sparsity_figure(lab_mean, title), "Disk size vs sparsity"
    )

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
        elif layers.is_layer_costs(name):
            title = name[len(layers.LAYER_COSTS) + 1 :] or "layers"
            w.figure(f"{stem}.png", layers.layer_costs_figure(frame, title), f"{name} plot")


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
        if layers.is_layer_costs(name):
            layers.check_layer_costs(name, frame)
        elif is_sensitivity(name):
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


#: Top-level key of a ``--benchmark-json`` holding the bench's own records (additive: other readers ignore it).
RECORDS_KEY = "prunelib"


def saved_run(bench: dict[str, Any]) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """A saved ``--benchmark-json`` as the report hook saw it: entries merged back in, and the extra tables.

    The bench suite stores what pytest-benchmark does not keep (entries of untimed tests, extra
    tables such as sensitivity) under :data:`RECORDS_KEY`; older files have none and give no extras.
    """
    saved = bench.get(RECORDS_KEY)
    if not isinstance(saved, dict):
        return bench, {}
    timed = bench.get("benchmarks") or []
    have = {e.get("fullname") for e in timed if isinstance(e, dict)}
    more = [e for e in saved.get("entries") or [] if isinstance(e, dict) and e.get("fullname") not in have]
    extras = {
        str(name): pd.DataFrame(table.get("data") or [], columns=table.get("columns"))
        for name, table in (saved.get("extras") or {}).items()
        if isinstance(table, dict)
    }
    return {k: v for k, v in bench.items() if k != RECORDS_KEY} | {"benchmarks": [*timed, *more]}, extras


def write_run_report(
    bench: dict[str, Any],
    reports_root: Path | str,
    *,
    extra: dict[str, pd.DataFrame] | None = None,
    run_name: str | None = None,
    knee_tolerance: float = 0.01,
    links: tuple[str, ...] = (),
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
        links: markdown lines put under the run's header (the bench: where the runs-over-time dashboard is).

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
        os.chmod(staging, dir_mode())  # mkdtemp makes 0700; a report folder is for others to read
        w = _Writer(staging)
        commit: dict[str, Any] = bench["commit_info"] if isinstance(bench.get("commit_info"), dict) else {}
        w.lines += [
            f"# Pruning run report ({now:%Y-%m-%d %H:%M} UTC)",
            "",
            f"Benchmarks recorded {bench.get('datetime', 'n/a')} with pytest-benchmark {bench.get('version', 'n/a')}; "
            f"commit `{commit.get('id', 'n/a')}`{' (dirty)' if commit.get('dirty') else ''}; {len(rows)} entries.",
            "",
            *[line for link in links for line in (link, "")],
        ]
        machine = machine_from_benchmark_info(bench.get("machine_info") or {})
        w.lines += [machine_markdown(machine), *throttle_warning(rows)]
        notes = missing_notes(bench, rows)
        if notes:
            w.lines += ["## Missing data", "", *[f"- {n}" for n in notes], ""]
        w.csv("results.csv", rows)
        w.text("benchmark.json", json.dumps(bench, indent=1, default=str, sort_keys=False))
        keyed = model_rows(rows)
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
