"""``python -m prunelib``: sweep, sensitivity, families, cache, compare, report, history. One entry point; sub-commands map to stages.

Exit status, the same for every sub-command:

* **0**: done (``compare``: no regression).
* **1**: a gate or a regression check failed (``compare``: a change passed a threshold). Nothing else
  returns 1, so a script can tell "worse" from "broken".
* **2**: bad input or usage: an unknown or out-of-range option, a data set that is missing or
  malformed, an output that would overwrite an earlier run. One line ``prunelib: error: ...`` (or
  ``error: ...`` from ``compare``) names the option, file or value; never a traceback.
* **3**: an internal error: an exception nobody anticipated. Its traceback is printed, then one line
  ``prunelib: internal error: ...``; please report it.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from prunelib.cli.args import CliError, Parser
from prunelib.cli.cache import add_cache_parser
from prunelib.cli.families import add_families_parser
from prunelib.cli.history import add_history_parser
from prunelib.cli.report import add_report_parser
from prunelib.cli.sweep import add_sensitivity_parser, add_sweep_parser
from prunelib.families.contract import Unsupported
from prunelib.families.datadir import DataError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m prunelib", description="prunelib: prune your network, measure what it buys.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_sweep_parser(sub)
    add_sensitivity_parser(sub)
    add_families_parser(sub)
    add_cache_parser(sub)
    sub.add_parser(
        "compare", help="compare pytest-benchmark runs (metric, latency, size); see 'compare --help'", add_help=False
    )
    add_report_parser(sub)
    add_history_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 gate or regression failed, 2 bad input, 3 internal error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["compare"]:
            from prunelib.report.compare import main as compare_main

            return compare_main(argv[1:])
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (CliError, DataError, Unsupported, ValueError, OSError) as exc:
        print(f"prunelib: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - anything unanticipated is a bug: traceback, then exit 3
        traceback.print_exc()
        print(f"prunelib: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
