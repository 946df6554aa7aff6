"""pytest wiring for the bench suite: ``--prune-*`` options, machine info, and the report hook.

``pytest bench/ --benchmark-json=out.json`` prunes, times and, at the end of the session,
writes a new report folder under ``--prune-reports`` (default ``reports/``; ``latest`` points at it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    from prunelib.plugin.options import add_options

    add_options(parser)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from prunelib.measure.machine import update_machine_info

    update_machine_info(machine_info)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the run's report when bench tests recorded results (never on an xdist worker)."""
    config = session.config
    if hasattr(config, "workerinput"):
        return
    from prunelib.plugin.records import RECORDS, session_bench

    records = config.stash.get(RECORDS, None)
    if records is None or not (records.entries or records.extras):
        return
    from prunelib.plugin.options import prune_option
    from prunelib.report.writer import write_run_report

    root = Path(prune_option(config, "--prune-reports") or Path(config.rootpath) / "reports")
    folder = write_run_report(session_bench(session, records), root, extra=records.extras or None)
    config.stash[REPORT_FOLDER] = folder


REPORT_FOLDER = pytest.StashKey[Path]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    folder = config.stash.get(REPORT_FOLDER, None)
    if folder is not None:
        terminalreporter.write_sep("-", f"prunelib report: {folder}")
