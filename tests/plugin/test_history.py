"""``--prune-history``: checked before any work, the report README's link, the dashboard redrawn at the end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from prunelib.plugin import history
from tests.history.fixture_runs import write_history

ROOT = Path(__file__).resolve().parents[2]


class FakeConfig:
    """What the plugin reads of a pytest config: options, ini values, pytest-benchmark's storage."""

    def __init__(self, storage: Path | None = None, **options: Any) -> None:
        self.options = {k.replace("_", "-") if k.startswith("prune") else k: v for k, v in options.items()}
        self._benchmarksession = SimpleNamespace(storage=SimpleNamespace(path=storage))

    def getoption(self, name: str, default: Any = None) -> Any:
        return self.options.get(name.lstrip("-"), default)

    def getini(self, name: str) -> Any:
        return None


def test_note_links_the_dashboard_relative_to_a_report_folder(tmp_path: Path) -> None:
    reports, site = tmp_path / "reports", tmp_path / "site"
    note = history.history_note(FakeConfig(prune_history=str(site)), reports)  # type: ignore[arg-type]
    assert note is not None
    link = note.split("](", 1)[1].split(")", 1)[0]
    assert (reports / "20260101T000000Z-abc" / link).resolve() == (site / "index.html").resolve()


def test_note_without_history_gives_the_command_only_for_saved_runs(tmp_path: Path) -> None:
    saved = FakeConfig(storage=tmp_path / ".benchmarks", benchmark_autosave=True)
    note = history.history_note(saved, tmp_path / "reports")  # type: ignore[arg-type]
    assert note is not None and "python -m prunelib history" in note and ".benchmarks" in note
    assert history.history_note(FakeConfig(), tmp_path / "reports") is None  # type: ignore[arg-type]


def test_dashboard_inside_a_read_folder_is_refused(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    with pytest.raises(pytest.UsageError, match="inside"):
        history.check_history(FakeConfig(prune_history=str(reports / "site")), reports)  # type: ignore[arg-type]
    history.check_history(FakeConfig(prune_history=str(tmp_path / "site")), reports)  # type: ignore[arg-type]


def test_refresh_draws_reports_and_storage(tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    f = write_history(tmp_path / "runs", runs=3, laptop_runs=0)
    config = FakeConfig(storage=f["storage"], prune_history=str(tmp_path / "site"))
    page, problem = history.refresh_history(config, f["reports"])  # type: ignore[arg-type]
    assert problem is None and page == tmp_path / "site" / "index.html"
    assert "3 runs" in page.read_text()
    assert history.refresh_history(FakeConfig(), f["reports"]) == (None, None)  # type: ignore[arg-type]


def test_the_bench_refuses_a_dashboard_in_its_reports_before_any_work(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "--collect-only", "-q", "-p", "no:randomly",
         f"--prune-reports={tmp_path / 'r'}", f"--prune-history={tmp_path / 'r' / 'site'}"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PRUNELIB_CACHE_DIR": str(tmp_path / "c")},
        timeout=300,
    )  # fmt: skip
    assert done.returncode != 0 and "--prune-history" in done.stderr and "inside" in done.stderr
