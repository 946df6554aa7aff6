"""``python -m prunelib history``: the table as CSV, the dashboard, one-line errors with exit 2."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from prunelib.cli.main import main
from tests.history.fixture_runs import write_history


def test_history_writes_csv_and_reports_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_history(tmp_path / "runs")
    (f["laptop"] / "broken.json").write_text("[1,")
    out = tmp_path / "out"
    out.mkdir()
    code = main(["history", str(f["storage"]), str(f["reports"]), str(f["laptop"]), "--csv", str(out / "t.csv")])
    stdout, stderr = capsys.readouterr()
    assert code == 0
    assert "Cortex-A72 · aarch64 · Linux: 4 runs" in stdout and "17 change(s)" in stdout
    assert "prunelib: warning: skipped" in stderr and "broken.json" in stderr
    table = pd.read_csv(out / "t.csv")
    assert table["run"].nunique() == 7 and {"metric", "value", "machine", "commit"} <= set(table.columns)


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--html", "{reports}/site"], "inside"),
        (["{runs}/missing"], "missing"),
        (["--max-latency-increase-pct", "-3"], "--max-latency-increase-pct"),
        (["--csv", "{runs}/no/such/t.csv"], "--csv"),
        (["--alpha", "1.5"], "--alpha"),
    ],
    ids=["html-in-read-folder", "missing-path", "negative-threshold", "csv-folder-missing", "alpha-out-of-range"],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragment: str
) -> None:
    f = write_history(tmp_path / "runs", runs=2, laptop_runs=0)
    argv = ["history", str(f["reports"]), *[a.format(reports=f["reports"], runs=tmp_path / "runs") for a in extra]]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err, err
    assert not (f["reports"] / "site").exists()


def test_no_runs_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["history", str(tmp_path / "empty")]) == 2
    assert "no pytest-benchmark runs" in capsys.readouterr().err
