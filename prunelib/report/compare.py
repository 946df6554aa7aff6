"""Compare pytest-benchmark runs: did accuracy, latency or size get worse since the baseline?

pytest-benchmark's own ``--benchmark-compare-fail`` gates only timing, so accuracy/WER and
size budgets live here. Rows are matched by (dataset, model, method, iteration, runtime,
batch_size, precision) from extra_info (absent precision = fp32); the first run is the
baseline and the last is compared with it.

Noise (:mod:`prunelib.report.noise`): latency is compared by *median*, and flagged only when the
relative increase passes the threshold AND exceeds the two runs' IQRs added together AND a test
over the timing rounds (Mann-Whitney U, or Welch's t from summaries) rejects equality at
``alpha``. Several seeds of a key are one row; its metric is flagged only outside the baseline
seeds' interval (the threshold when the baseline ran one seed). Flagged rows name test and p-value.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from prunelib.config import level, non_negative
from prunelib.report import noise, plots
from prunelib.report.rows import benchmark_rows
from prunelib.results.schema import row_metrics

#: Columns of ``CompareResult.changes`` added by the noise-aware rules (:mod:`prunelib.report.noise`).
CHANGE_COLUMNS = ["seeds_baseline", "seeds_last", "metric_test", "metric_p_value", "latency_test", "latency_p_value"]
KEY_FIELDS: tuple[str, ...] = ("dataset", "model", "method", "iteration", "runtime", "batch_size", "precision")
#: Numeric columns compared per key besides the metric.
NUMERIC = ["latency_median_s", "latency_iqr_s", "disk_sparse_bytes"]


class RunFileError(ValueError):
    """A run file that cannot be read or is not pytest-benchmark JSON; the message names the file."""


@dataclass(frozen=True)
class CompareResult:
    """Outcome of :func:`compare_runs`.

    ``changes``: one row per key, baseline vs last run. ``regressions``: one line per change
    past a threshold. ``notes``: keys missing from a run, rows without stats, duplicates.
    ``history``: one row per (run, key) for the history plot.
    """

    changes: pd.DataFrame
    regressions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    labels: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no change passed a threshold."""
        return not self.regressions


def load_run(path: Path | str) -> dict[str, Any]:
    """A pytest-benchmark JSON file as a dict.

    Raises:
        RunFileError: unreadable, not JSON, or not an object with a ``benchmarks`` list.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunFileError(f"cannot read run file {p}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFileError(f"run file {p} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise RunFileError(f"run file {p} is not pytest-benchmark JSON (no 'benchmarks' list)")
    return data


def _storage_order(path: Path) -> tuple[str, str]:
    return (path.name, str(path.parent))


def find_run_files(paths: Sequence[Path | str]) -> list[Path]:
    """Files to compare, in order: files as given; a folder (``.benchmarks`` storage) expands to its
    ``*.json`` files sorted as pytest-benchmark sorts them (``NNNN_`` counter, then machine folder).

    Raises:
        RunFileError: a path that does not exist, or a folder with no JSON files.
    """
    files: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            found = sorted((f for f in p.rglob("*.json") if f.is_file()), key=_storage_order)
            if not found:
                raise RunFileError(f"no pytest-benchmark JSON files under folder {p}")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise RunFileError(f"cannot read run file {p}: no such file or folder")
    return files


def key_of(row: pd.Series) -> str | None:
    """``dataset/model/method/itNN/runtime/bB/precision`` of a result row, or None if a field is missing."""
    values = []
    for name in KEY_FIELDS:
        v = row.get(name)
        if name == "precision" and (v is None or (isinstance(v, float) and math.isnan(v))):
            v = "fp32"
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if name == "iteration":
            v = f"it{int(float(v)):02d}"
        elif name == "batch_size":
            v = f"b{int(float(v))}"
        values.append(str(v))
    return "/".join(values)


def run_table(bench: dict[str, Any], label: str = "run") -> tuple[pd.DataFrame, list[str]]:
    """Per-key values of one run (its metric's name, value and direction, latency median/IQR, disk size) and notes.

    Several seeds of a key make one row (:func:`prunelib.report.noise.per_key`): the metric's mean
    and the seeds' values, the latency pooled over their rounds.
    """
    rows = benchmark_rows(bench)
    notes: list[str] = []
    if rows.empty:
        notes.append(f"{label}: no benchmark entries")
        return pd.DataFrame(columns=["key", *noise.KEY_COLUMNS]).set_index("key"), notes
    keys = rows.apply(key_of, axis=1)
    fallback = keys.isna()
    if fallback.any():
        notes.append(
            f"{label}: {int(fallback.sum())} entries lack some of {', '.join(KEY_FIELDS[:-1])}; matched by test name instead"
        )
        keys = keys.where(~fallback, "name:" + rows["name"].astype(str))
    rows = noise.with_rounds(rows.assign(key=keys), bench)
    metrics = row_metrics(rows)
    rows = rows.assign(
        throttled=rows["throttled"].map(lambda v: v is True or str(v).lower() == "true").to_numpy()
        if "throttled" in rows
        else False,
        metric=metrics["name"].to_numpy(),
        metric_value=metrics["value"].to_numpy(),
        higher_is_better=metrics["higher_is_better"].to_numpy(),
    )
    table, more = noise.per_key(rows, label)
    notes += more
    no_stats = int(table["latency_median_s"].isna().sum())
    if no_stats:
        notes.append(f"{label}: {no_stats} entries without timing stats (latency not compared)")
    return table, notes


def _label(bench: dict[str, Any], fallback: str) -> str:
    when = str(bench.get("datetime") or "")
    m = re.match(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})", when)
    return f"{m.group(1)} {m.group(2)}" if m else fallback


def _check_limit(name: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def compare_runs(
    runs: Sequence[dict[str, Any]],
    *,
    max_accuracy_drop_points: float = 1.0,
    max_wer_rise_points: float = 1.0,
    max_latency_increase_pct: float = 10.0,
    max_size_increase_pct: float | None = None,
    labels: Sequence[str] | None = None,
    alpha: float = noise.ALPHA,
) -> CompareResult:
    """Changes from the first run (baseline) to the last, per key, and which pass a threshold.

    Args:
        runs: two or more pytest-benchmark JSON dicts, oldest first.
        max_accuracy_drop_points: a higher-is-better metric (accuracy) may fall by this many points
            (keys whose baseline ran one seed; with several, the seeds' interval decides).
        max_wer_rise_points: a lower-is-better metric (WER) may rise by this many points (likewise).
        max_latency_increase_pct: median latency may grow by this many percent (and is only
            flagged when the growth also exceeds the combined IQR of both runs and a test rejects
            equal timings at ``alpha``: :mod:`prunelib.report.noise`).
        alpha: significance level of the latency test; the seeds' interval is at ``1 - alpha``.
        max_size_increase_pct: ``disk_sparse_bytes`` may grow by this many percent; None = not gated.
        labels: a name per run for messages (default: its datetime, else ``run N``).

    Raises:
        ValueError: fewer than two runs, a negative threshold, alpha outside (0, 1), or labels of the wrong length.
    """
    if len(runs) < 2:
        raise ValueError(f"need at least two runs to compare, got {len(runs)}")
    _check_limit("max_accuracy_drop_points", max_accuracy_drop_points)
    _check_limit("max_wer_rise_points", max_wer_rise_points)
    _check_limit("max_latency_increase_pct", max_latency_increase_pct)
    _check_limit("max_size_increase_pct", max_size_increase_pct, allow_none=True)
    alpha = noise.check_alpha(alpha)
    if labels is not None and len(labels) != len(runs):
        raise ValueError(f"labels must name every run: {len(labels)} labels for {len(runs)} runs")
    names = list(labels) if labels is not None else [_label(b, f"run {i}") for i, b in enumerate(runs)]

    tables, notes, history_parts = [], [], []
    for i, (bench, name) in enumerate(zip(runs, names)):
        table, run_notes = run_table(bench, name)
        tables.append(table)
        notes += run_notes
        flat = table.reset_index().drop(columns=list(noise.PER_SEED_COLUMNS))  # history: one number per cell
        history_parts.append(flat.assign(run_index=i, run_label=f"{i}: {_label(bench, name)}"))
    history = pd.concat(history_parts, ignore_index=True) if history_parts else pd.DataFrame()

    base, last = tables[0], tables[-1]
    only_base = [k for k in base.index if k not in last.index]
    only_last = [k for k in last.index if k not in base.index]
    if only_base:
        notes.append(
            f"{len(only_base)} keys missing from the last run: "
            + ", ".join(only_base[:10])
            + (" ..." if len(only_base) > 10 else "")
        )
    if only_last:
        notes.append(
            f"{len(only_last)} keys new in the last run (no baseline): "
            + ", ".join(only_last[:10])
            + (" ..." if len(only_last) > 10 else "")
        )

    records, regressions = [], []
    for key in [k for k in base.index if k in last.index]:
        b, n = base.loc[key], last.loc[key]
        rec: dict[str, Any] = {"key": key}
        metric, higher = str(n["metric"]), bool(n["higher_is_better"])
        rec["metric"] = metric
        bv, nv = float(b["metric_value"]), float(n["metric_value"])
        rec["baseline_metric"], rec["last_metric"] = bv, nv
        change = 100 * (nv - bv)
        rec["metric_change_points"] = change
        limit = max_accuracy_drop_points if higher else max_wer_rise_points
        verdict = noise.metric_verdict(key, b, n, limit_points=limit, alpha=alpha)
        rec.update(seeds_baseline=int(b["seeds"]), seeds_last=int(n["seeds"]), metric_test=verdict.test)
        rec["metric_p_value"] = verdict.p_value
        if verdict.flagged:
            regressions.append(verdict.reason)
        elif not math.isfinite(change) and math.isfinite(bv) != math.isfinite(nv):
            notes.append(f"{key}: {metric} recorded in only one of the two runs")
        lat_b, lat_n = b["latency_median_s"], n["latency_median_s"]
        rec["baseline_latency_median_s"], rec["last_latency_median_s"] = lat_b, lat_n
        pct = 100 * (lat_n / lat_b - 1) if math.isfinite(lat_b) and math.isfinite(lat_n) and lat_b > 0 else math.nan
        rec["latency_change_pct"] = pct
        rec["latency_noise_s"] = noise.combined_iqr(b, n)
        hot = [label for label, row in ((names[0], b), (names[-1], n)) if bool(row["throttled"])]
        judged = noise.latency_verdict(key, b, n, pct=pct, limit_pct=max_latency_increase_pct, alpha=alpha, hot=hot)
        rec["latency_test"], rec["latency_p_value"] = judged.test, judged.p_value
        (regressions if judged.flagged else notes).extend([judged.reason] if judged.reason else [])
        size_b, size_n = b["disk_sparse_bytes"], n["disk_sparse_bytes"]
        size_pct = (
            100 * (size_n / size_b - 1) if math.isfinite(size_b) and math.isfinite(size_n) and size_b > 0 else math.nan
        )
        rec["size_change_pct"] = size_pct
        if (
            max_size_increase_pct is not None
            and math.isfinite(size_pct)
            and size_pct > max_size_increase_pct + noise.EPS
        ):
            regressions.append(
                f"{key}: disk size {size_pct:+.1f}% ({size_b / 1e6:.3f} MB -> {size_n / 1e6:.3f} MB), limit +{max_size_increase_pct:g}%"
            )
        records.append(rec)
    changes = pd.DataFrame.from_records(
        records,
        columns=[
            "key",
            "metric",
            "baseline_metric",
            "last_metric",
            "metric_change_points",
            "baseline_latency_median_s",
            "last_latency_median_s",
            "latency_change_pct",
            "latency_noise_s",
            "size_change_pct",
            *CHANGE_COLUMNS,
        ],
    )
    return CompareResult(changes=changes, regressions=regressions, notes=notes, history=history, labels=names)


def format_result(result: CompareResult) -> str:
    """The text ``python -m prunelib compare`` prints: a change table, notes, regressions, verdict."""
    lines = [f"baseline: {result.labels[0]}   last: {result.labels[-1]}   ({len(result.labels)} runs)", ""]
    if len(result.changes):
        lines += [noise.change_table(result.changes).to_markdown(index=False, disable_numparse=True), ""]
    else:
        lines += ["(no keys in common between the baseline and the last run)", ""]
    lines += [f"note: {n}" for n in result.notes]
    lines += [f"REGRESSION {r}" for r in result.regressions]
    lines.append(f"{len(result.regressions)} regression(s)" if result.regressions else "OK: no regressions")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``python -m prunelib compare``."""
    parser = argparse.ArgumentParser(
        prog="python -m prunelib compare",
        description=(
            "Compare pytest-benchmark runs (--benchmark-json files, or a --benchmark-autosave storage folder "
            "such as .benchmarks/). Rows are matched by dataset/model/method/iteration/runtime/batch/precision; "
            "the first run is the baseline, the last is checked against it. Exit 0: no regression; "
            "1: a change passed a threshold; 2: a file could not be read or an option is wrong."
        ),
    )
    parser.add_argument(
        "runs", nargs="+", metavar="RUN", help="JSON files (oldest first) or storage folders (expanded in NNNN_ order)"
    )
    parser.add_argument(
        "--max-accuracy-drop-points",
        type=non_negative,
        default=1.0,
        metavar="POINTS",
        help="fail when accuracy (or any higher-is-better metric) falls by more than this many percentage points; "
        "keys whose baseline ran several seeds are judged by their interval instead (default: 1.0)",
    )
    parser.add_argument(
        "--max-wer-rise-points",
        type=non_negative,
        default=1.0,
        metavar="POINTS",
        help="fail when WER (or any lower-is-better metric) rises by more than this many percentage points "
        "(one baseline seed, as above) (default: 1.0)",
    )
    parser.add_argument(
        "--max-latency-increase-pct",
        type=non_negative,
        default=10.0,
        metavar="PCT",
        help="fail when median latency grows by more than this percentage AND by more than the two runs' "
        "interquartile ranges combined AND a test over the timing rounds rejects equality at --alpha (default: 10)",
    )
    parser.add_argument(
        "--alpha",
        type=level,
        default=noise.ALPHA,
        metavar="LEVEL",
        help="significance level: latency is flagged only when Mann-Whitney U (rounds saved with "
        "--benchmark-save-data) or else Welch's t-test (mean, stddev, rounds) gives p < LEVEL; with several seeds in "
        "the baseline, accuracy/WER is flagged only outside their (1 - LEVEL) Student-t interval (default: 0.05)",
    )
    parser.add_argument(
        "--max-size-increase-pct",
        type=non_negative,
        default=None,
        metavar="PCT",
        help="fail when the sparse COO size on disk grows by more than this percentage (default: not checked)",
    )
    parser.add_argument(
        "--history-plot",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write a PNG of median latency and accuracy/WER per key across all runs",
    )
    return parser


def history_plot_problem(path: Path | None) -> str | None:
    """Why the PNG cannot be written at ``path`` (checked before any run is read), or ``None``."""
    if path is None:
        return None
    if path.is_dir():
        return f"{path} is a directory; give the PNG's file name, e.g. {path / 'history.png'}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m prunelib compare``; returns the exit code (0 ok, 1 regression, 2 error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: argparse has printed the message
        return int(exc.code) if isinstance(exc.code, int) else 2
    problem = history_plot_problem(args.history_plot)
    if problem:
        print(f"error: --history-plot: {problem}", file=sys.stderr)
        return 2
    try:
        files = find_run_files(args.runs)
        if len(files) < 2:
            print(
                f"error: need at least two runs to compare, got {len(files)}: {', '.join(map(str, files))}",
                file=sys.stderr,
            )
            return 2
        benches = [load_run(f) for f in files]
    except RunFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    labels = [f"{f.name} ({_label(b, 'no date')})" for f, b in zip(files, benches)]
    result = compare_runs(
        benches,
        max_accuracy_drop_points=args.max_accuracy_drop_points,
        max_wer_rise_points=args.max_wer_rise_points,
        max_latency_increase_pct=args.max_latency_increase_pct,
        max_size_increase_pct=args.max_size_increase_pct,
        labels=labels,
        alpha=args.alpha,
    )
    sys.stdout.write(format_result(result))
    if args.history_plot is not None:
        try:
            figure = plots.history_figure(result.history, "Run history: median latency and accuracy per key")
            plots.save_png(figure, args.history_plot)
        except OSError as exc:
            print(f"error: --history-plot: cannot write {args.history_plot}: {exc}", file=sys.stderr)
            return 2
        print(f"history plot: {args.history_plot}")
    return 0 if result.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
