"""The bench suite and the runs-over-time dashboard: ``--prune-history DIR`` and the report README's link.

``pytest bench/ --prune-history DIR`` (off by default) refreshes ``DIR/index.html`` at the end of the
session from every run under ``--prune-reports`` and pytest-benchmark's storage folder
(``--benchmark-storage``, default ``.benchmarks``), plus this session's ``--benchmark-json``. The
folder is checked before any work: it must take files, lie outside the folders read, and plotly
must be installed. Each report's README links to that dashboard; without ``--prune-history`` a run
saved with ``--benchmark-autosave`` (or ``--benchmark-save``) gets the command that draws it instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prunelib.fileio import OutputPathError, check_output_dir
from prunelib.plugin.options import prune_option


def history_dir(config: pytest.Config) -> Path | None:
    """``--prune-history`` (command line, then ini), or None: off."""
    value = prune_option(config, "--prune-history")
    return Path(value).expanduser() if value else None


def storage_dir(config: pytest.Config) -> Path | None:
    """pytest-benchmark's file storage folder (``--benchmark-storage``), or None (no session, not a folder)."""
    storage = getattr(getattr(config, "_benchmarksession", None), "storage", None)
    path = getattr(storage, "path", None)
    return Path(path) if path is not None else None


def read_folders(config: pytest.Config, reports: Path) -> list[Path]:
    """What the dashboard is drawn from: the reports root, the storage folder, this session's ``--benchmark-json``."""
    found = [reports]
    storage = storage_dir(config)
    if storage is not None and storage.is_dir():
        found.append(storage)
    json_path = config.getoption("benchmark_json", None)
    name = getattr(json_path, "name", json_path)
    if name and Path(str(name)).is_file():
        found.append(Path(str(name)))
    return found


def check_history(config: pytest.Config, reports: Path) -> None:
    """Before any work: ``--prune-history``'s folder takes files, is not inside a folder read, plotly imports.

    Raises:
        pytest.UsageError: naming ``--prune-history`` and the reason.
    """
    folder = history_dir(config)
    if folder is None:
        return
    target = folder.resolve()
    for read in (reports, storage_dir(config)):
        if read is not None and (target == read.resolve() or read.resolve() in target.parents):
            raise pytest.UsageError(
                f"--prune-history {folder} is inside {read}, a folder the dashboard reads; choose another"
            )
    try:
        check_output_dir(folder, "--prune-history")
    except OutputPathError as exc:
        raise pytest.UsageError(str(exc)) from None
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise pytest.UsageError("--prune-history needs plotly: pip install 'prunelib[history]'") from None


def history_note(config: pytest.Config, reports: Path) -> str | None:
    """The report README's line about runs over time (a relative link to the dashboard, or the command), or None."""
    folder = history_dir(config)
    if folder is not None:
        rel = os.path.relpath(folder.resolve() / "index.html", (reports / "run").resolve())
        return f"Runs over time: [the dashboard]({Path(rel).as_posix()}) (`--prune-history`, refreshed at the end of this run)."
    if config.getoption("benchmark_autosave", False) or config.getoption("benchmark_save", None):
        storage = storage_dir(config) or Path(".benchmarks")
        return (
            f"Runs over time: this run is also saved in pytest-benchmark's storage; "
            f"`python -m prunelib history {storage} {reports} --html site/` draws it beside every earlier run "
            "(or pass `--prune-history DIR` to refresh a dashboard after each run)."
        )
    return None


def refresh_history(config: pytest.Config, reports: Path) -> tuple[Path | None, str | None]:
    """Redraw ``--prune-history``'s dashboard: ``(page, None)``, ``(None, problem)`` or ``(None, None)`` when off."""
    folder = history_dir(config)
    if folder is None:
        return None, None
    from prunelib.history.dashboard import write_dashboard
    from prunelib.history.table import build_history

    try:
        history = build_history(read_folders(config, reports))
        return write_dashboard(history, folder), None
    except (OSError, ValueError, ImportError) as exc:
        return None, f"could not refresh the dashboard --prune-history {folder}: {exc}"
