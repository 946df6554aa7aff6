"""``python -m prunelib report out.json [--out DIR]``: a run's report rebuilt from its saved ``--benchmark-json``.

The same layout the bench's report hook writes (tables, plots, knee, extras, README), by the same
writer (:func:`prunelib.report.writer.write_run_report`), in a new folder under ``--out``; earlier
report folders are never touched. The output folder is checked before the JSON is read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prunelib.fileio import check_output_dir


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild a run's report (tables, plots) from a saved --benchmark-json",
        description="Read a pytest-benchmark JSON written by 'pytest bench --benchmark-json=FILE' and write its "
        "report (README.md, results.csv, tables, plots, knee, extra tables) into a new folder "
        "OUT/<UTC time>-<file name>, as the bench suite does at the end of a run; OUT/latest then points at it.",
    )
    p.add_argument("json", type=Path, metavar="FILE", help="pytest-benchmark JSON (--benchmark-json output)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("reports"),
        help="folder receiving the new report folder (default: reports/); earlier folders are never overwritten",
    )
    p.set_defaults(handler=run_report_command)


def run_report_command(args: argparse.Namespace) -> int:
    from prunelib.report.compare import load_run
    from prunelib.report.writer import saved_run, write_run_report

    check_output_dir(args.out, "--out")
    bench, extras = saved_run(load_run(args.json))
    folder = write_run_report(bench, args.out, extra=extras or None, run_name=args.json.stem)
    print(folder)
    print(f"wrote the report of {args.json} to {folder}", file=sys.stderr)
    return 0
