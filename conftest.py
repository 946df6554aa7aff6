"""pytest wiring for the bench suite: ``--prune-*`` options, machine info, and the report hook.

``pytest bench/ --benchmark-json=out.json`` prunes, times and, at the end of the session,
writes a new report folder under ``--prune-reports`` (default ``reports/``; ``latest`` points at it).
Output paths are checked before any work (bench/conftest.py); a path that still fails at the end
sends its files to a printed rescue folder (:mod:`prunelib.plugin.outputs`).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    from prunelib.plugin.options import add_options

    add_options(parser)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from prunelib.measure.machine import update_machine_info
    from prunelib.plugin.outputs import drop_hostname

    update_machine_info(machine_info)
    drop_hostname(config, machine_info)


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    from prunelib.plugin.outputs import keep_json

    keep_json(config, output_json)


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """Write the run's report when bench tests recorded results (never on an xdist worker).

    Wraps pytest-benchmark's own hook (registered before this conftest, so inside this wrapper), so a
    ``--benchmark-json`` that fails to write is rescued; the terminal reporter, registered later, wraps
    this one, so its summary (``pytest_terminal_summary``) comes after the report is written.
    """
    from prunelib.plugin.outputs import OUTCOME, finish_session, redirect_json
    from prunelib.plugin.records import RECORDS, session_bench

    config = session.config
    worker = hasattr(config, "workerinput")
    if not worker:
        redirect_json(config)  # --benchmark-json's folder went away mid-run: pytest-benchmark writes to the rescue
    json_error = None
    try:
        yield
    except OSError as exc:  # pytest-benchmark's save_json still failed, e.g. the disk filled
        if worker or not config.getoption("benchmark_json", None):
            raise
        json_error = exc
    if worker:
        return
    records = config.stash.get(RECORDS, None)
    wanted = records is not None and bool(records.entries or records.extras)
    bench = session_bench(session, records) if records is not None and wanted else None
    outcome = finish_session(config, bench, (records.extras or None) if records else None, json_error)
    config.stash[OUTCOME] = outcome
    if outcome.problems and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from prunelib.plugin.outputs import OUTCOME

    outcome = config.stash.get(OUTCOME, None)
    if outcome is None:
        return
    if outcome.report is not None:
        terminalreporter.write_sep("-", f"prunelib report: {outcome.report}")
    if outcome.dashboard is not None:
        terminalreporter.write_sep("-", f"prunelib runs over time: {outcome.dashboard}")
    for line in outcome.problems:
        terminalreporter.write_line(f"prunelib: error: {line}", red=True)
    if outcome.rescue is not None:
        terminalreporter.write_sep("!", f"prunelib rescued this run's results into {outcome.rescue}", red=True)
