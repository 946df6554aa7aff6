"""``python -m prunelib history [PATHS...] [--csv FILE] [--html DIR]``: every saved run as one table, and a dashboard.

Reads pytest-benchmark storage folders (``.benchmarks/``), ``--benchmark-json`` files and the suite's
report folders (:mod:`prunelib.history.table`); never writes into them. Prints one line per machine
and the newest changes (:mod:`prunelib.history.changes`); ``--csv`` writes the tidy table,
``--html`` the static dashboard (:mod:`prunelib.history.dashboard`, needs ``prunelib[history]``).
Changes are not a gate: the exit status is 0 whatever changed (use ``prunelib compare`` to gate).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from prunelib.cli.args import CliError
from prunelib.config import level, non_negative

#: Read when no path is given (those that exist): pytest-benchmark's storage and the suite's reports.
DEFAULT_PATHS = (".benchmarks", "reports")


def add_history_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "history",
        help="every saved run as one table (--csv) and an offline HTML dashboard (--html); see 'history --help'",
        description="Read pytest-benchmark storage folders (.benchmarks/), --benchmark-json files and the suite's "
        "report folders into one table of run x benchmark x metric (latency statistics, accuracy or WER, sizes, "
        "sparsity; with each run's time, commit, machine and versions). Files that are not benchmark runs are "
        "skipped with a warning. Nothing is written into the folders read.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="storage folders, JSON files or report folders (default: .benchmarks and reports, those that exist)",
    )
    p.add_argument("--csv", type=Path, default=None, metavar="FILE", help="write the tidy table to FILE")
    p.add_argument(
        "--html",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the dashboard DIR/index.html (+ DIR/plotly.min.js); opens from file://, needs prunelib[history]",
    )
    p.add_argument(
        "--max-latency-increase-pct",
        type=non_negative,
        default=None,
        metavar="PCT",
        help="a latency change: the median moved by more than PCT %% and by more than both IQRs (default: 10, as compare)",
    )
    p.add_argument(
        "--max-accuracy-drop-points",
        type=non_negative,
        default=None,
        metavar="POINTS",
        help="a metric change: accuracy or WER moved by more than POINTS percentage points (default: 1.0, as compare)",
    )
    p.add_argument(
        "--alpha",
        type=level,
        default=None,
        metavar="LEVEL",
        help="a latency change also needs a test (Mann-Whitney U over raw rounds, else Welch's t from mean, stddev "
        "and rounds) to reject equal timings at this level (default: 0.05, as compare)",
    )
    p.set_defaults(handler=run_history_command)


def _inside(path: Path, folders: list[Path]) -> Path | None:
    """The read folder ``path`` lies in (or is), else None."""
    target = path.expanduser().resolve()
    for folder in folders:
        root = folder.resolve()
        if root.is_dir() and (target == root or root in target.parents):
            return folder
    return None


def check_outputs(paths: list[Path], csv: Path | None, html: Path | None) -> None:
    """Refuse an output inside a folder being read, or one that cannot be written.

    Raises:
        CliError: naming the option and the path.
    """
    from prunelib.fileio import OutputPathError, check_output_dir, check_output_file

    for option, out in (("--csv", csv), ("--html", html)):
        if out is None:
            continue
        inside = _inside(out, paths)
        if inside is not None:
            raise CliError(f"{option} {out} is inside {inside}, a folder being read; history never writes there")
        try:
            check_output_file(out, option) if option == "--csv" else check_output_dir(out, option)
        except OutputPathError as exc:
            raise CliError(str(exc)) from None
    if html is not None:
        try:
            import plotly  # noqa: F401
        except ImportError:
            raise CliError("--html needs plotly: pip install 'prunelib[history]'") from None


def run_history_command(args: argparse.Namespace) -> int:
    from prunelib.fileio import write_text_atomic
    from prunelib.history.changes import Rule, find_changes
    from prunelib.history.table import HistoryInputError, build_history, wide

    paths = list(args.paths) or [Path(p) for p in DEFAULT_PATHS if os.path.isdir(p)]
    if not paths:
        raise CliError(f"no PATH given and none of {', '.join(DEFAULT_PATHS)} here; name the folders or files to read")
    check_outputs(paths, args.csv, args.html)
    given = {
        "latency_pct": args.max_latency_increase_pct,
        "metric_points": args.max_accuracy_drop_points,
        "alpha": args.alpha,
    }
    rule = Rule(**{k: v for k, v in given.items() if v is not None})  # unset: compare's defaults, held by Rule
    try:
        history = build_history(paths)
    except HistoryInputError as exc:
        raise CliError(str(exc)) from None
    for warning in history.warnings:
        print(f"prunelib: warning: {warning}", file=sys.stderr)
    if history.runs.empty:
        raise CliError(f"no pytest-benchmark runs found in {', '.join(map(str, paths))}")
    changes = find_changes(wide(history.table), history.rounds, rule)
    for machine, runs in history.runs.groupby("machine", sort=True):
        print(
            f"{machine}: {len(runs)} runs, {runs['datetime'].min():%Y-%m-%d %H:%M} to {runs['datetime'].max():%Y-%m-%d %H:%M} UTC"
        )
    print(f"{len(history.table)} rows (run x benchmark x metric); {len(changes)} change(s) between consecutive runs")
    for _, c in changes.head(10).iterrows():
        print(
            f"  {c['after_run']}  {c['benchmark']}  {c['quantity']} {c['direction']} {c['change']}  [{c['evidence']}]"
        )
    if args.csv is not None:
        table = history.table.assign(datetime=history.table["datetime"].map(lambda t: t.isoformat()))
        print(f"table: {write_text_atomic(args.csv, table.to_csv(index=False))}")
    if args.html is not None:
        from prunelib.history.dashboard import write_dashboard

        print(f"dashboard: {write_dashboard(history, args.html, rule)}")
    return 0
