"""The bench suite's outputs: checked before any work starts, rescued when their path fails at the end.

Before collection (:func:`check_outputs`): ``--benchmark-json``'s folder, ``--prune-reports`` and
the checkpoint cache each take a probe file, or the run stops with one usage error naming the
option and the path. At the end (:func:`finish_session`): the report goes under
``--prune-reports``; if that, or pytest-benchmark's ``--benchmark-json``, still fails (the disk
filled, the folder was removed mid-run), both go to a new ``$TMPDIR/prunelib-rescue-<time>-<id>/``
whose path is printed, and the session's exit status says so.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from prunelib.fileio import OutputPathError, check_output_dir, check_output_file, rescue_folder, write_text_atomic
from prunelib.plugin.history import check_history, history_note, refresh_history
from prunelib.plugin.options import prune_option
from prunelib.plugin.records import RECORDS, records_to_json
from prunelib.report.writer import RECORDS_KEY


@dataclass(frozen=True)
class Outcome:
    """Where the session's outputs went: the report folder, and the rescue folder with why (if one was needed)."""

    report: Path | None = None
    rescue: Path | None = None
    problems: tuple[str, ...] = ()
    dashboard: Path | None = None


OUTPUT_JSON = pytest.StashKey[dict[str, Any]]()
OUTCOME = pytest.StashKey[Outcome]()


def reports_root(config: pytest.Config) -> Path:
    """``--prune-reports`` (command line, then ini), else ``<rootdir>/reports``."""
    return Path(prune_option(config, "--prune-reports") or Path(config.rootpath) / "reports")


def cache_option(config: pytest.Config) -> str:
    """How the user named the cache folder, for error messages."""
    if prune_option(config, "--prune-cache-dir"):
        return "--prune-cache-dir"
    return "PRUNELIB_CACHE_DIR" if os.environ.get("PRUNELIB_CACHE_DIR") else "the checkpoint cache (~/.cache/prunelib)"


def check_outputs(config: pytest.Config, cache_root: Path) -> None:
    """Probe every output path now, so that a bad one stops the run before any work.

    Raises:
        pytest.UsageError: ``OPTION: cannot write to PATH: reason``.
    """
    try:
        json_path = config.getoption("benchmark_json", None)
        if json_path:
            check_output_file(json_path, "--benchmark-json")
        check_output_dir(reports_root(config), "--prune-reports")
        check_output_dir(cache_root, cache_option(config))
    except OutputPathError as exc:
        raise pytest.UsageError(str(exc)) from None
    check_history(config, reports_root(config))


def keep_json(config: pytest.Config, output_json: dict[str, Any]) -> None:
    """Body of ``pytest_benchmark_update_json``: add the suite's own records, remember the JSON for a rescue.

    The records (entries pytest-benchmark dropped, extra tables) go under ``output_json["prunelib"]``
    so that ``python -m prunelib report out.json`` rebuilds the same report as this session's.
    """
    records = config.stash.get(RECORDS, None)
    if records is not None and (records.entries or records.extras):
        output_json[RECORDS_KEY] = records_to_json(output_json, records)
    config.stash[OUTPUT_JSON] = output_json


def drop_hostname(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """pytest-benchmark records the host name (``node``); it stays only with ``--prune-keep-hostname``."""
    if not config.getoption("--prune-keep-hostname", False):
        machine_info.pop("node", None)


RESCUE = pytest.StashKey[Path]()
PROBLEMS = pytest.StashKey[list[str]]()


def rescue_of(config: pytest.Config) -> Path:
    """The session's rescue folder, made on first need (one per session)."""
    if RESCUE not in config.stash:
        config.stash[RESCUE] = rescue_folder()
    return config.stash[RESCUE]


def redirect_json(config: pytest.Config) -> None:
    """Just before pytest-benchmark writes ``--benchmark-json``: if its folder no longer takes a file
    (removed or replaced mid-run), point pytest-benchmark at the rescue folder instead, so it writes
    the JSON there and the session ends normally."""
    session = getattr(config, "_benchmarksession", None)
    path = getattr(session, "json", None)
    if not path:
        return
    try:
        check_output_file(path, "--benchmark-json")
    except OutputPathError as exc:
        target = rescue_of(config) / Path(str(path)).name
        session.json = target  # type: ignore[union-attr]
        config.stash.setdefault(PROBLEMS, []).append(f"{exc}; pytest-benchmark wrote it as {target} instead")


def finish_session(
    config: pytest.Config,
    bench: dict[str, Any] | None,
    extras: dict[str, pd.DataFrame] | None,
    json_error: OSError | None = None,
) -> Outcome:
    """Write the report (when ``bench`` is given) and rescue whatever could not be written where asked.

    ``json_error``: why pytest-benchmark still failed to write ``--benchmark-json`` (e.g. the disk
    filled); its JSON is then saved from :data:`OUTPUT_JSON` into the rescue folder under the same name.
    """
    from prunelib.report.writer import write_run_report

    earlier: list[str] | None = config.stash.get(PROBLEMS, None)
    problems = list(earlier or [])
    if json_error is not None:
        name = Path(str(config.getoption("benchmark_json") or "benchmark.json")).name
        where = f"--benchmark-json {config.getoption('benchmark_json')}"
        output_json = config.stash.get(OUTPUT_JSON, None)
        if output_json is not None:
            saved = write_text_atomic(rescue_of(config) / name, json.dumps(output_json, indent=4, default=str))
            problems.append(f"could not write {where} ({json_error}); saved it as {saved}")
        else:
            problems.append(f"could not write {where} ({json_error}); pytest-benchmark had produced no JSON")
    report = dashboard = None
    if bench is not None:
        root = reports_root(config)
        note = history_note(config, root)
        links = (note,) if note else ()
        try:
            report = write_run_report(bench, root, extra=extras, links=links)
        except OSError as exc:
            report = write_run_report(bench, rescue_of(config), extra=extras, links=links)
            problems.append(f"could not write the report under --prune-reports {root} ({exc}); saved it in {report}")
        dashboard, problem = refresh_history(config, root)
        problems += [problem] if problem else []
    for line in problems:
        print(f"prunelib: error: {line}", file=sys.stderr)
    return Outcome(report, config.stash.get(RESCUE, None), tuple(problems), dashboard)
