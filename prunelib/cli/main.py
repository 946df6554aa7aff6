"""``python -m prunelib``: sweep, sensitivity, families, compare, report. One entry point; sub-commands map to stages.

Every bad input ends in one line ``prunelib: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from prunelib.cli.args import CliError, Parser
from prunelib.cli.families import add_families_parser
from prunelib.cli.report import add_report_parser
from prunelib.cli.sweep import add_sensitivity_parser, add_sweep_parser
from prunelib.families.contract import Unsupported
from prunelib.families.datadir import DataError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m prunelib", description="prunelib: prune your network, measure what it buys.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_sweep_parser(sub)
    add_sensitivity_parser(sub)
    add_families_parser(sub)
    sub.add_parser(
        "compare", help="compare pytest-benchmark runs (metric, latency, size); see 'compare --help'", add_help=False
    )
    add_report_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        from prunelib.report.compare import main as compare_main

        return compare_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (CliError, DataError, Unsupported, ValueError, OSError) as exc:
        print(f"prunelib: error: {exc}", file=sys.stderr)
        return 2
