"""``python -m prunelib report out.json``: a saved run's report, the same as the bench hook's, in a new folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import prunelib.report.writer  # noqa: F401  loaded once here: in-process pytest runs unload what they import
from tests.cli.test_main import assert_one_line_error, cli
from tests.plugin.test_outputs import rescue_run

pytest_plugins = ["pytester"]

FIXTURES = Path(__file__).resolve().parents[1] / "report" / "fixtures"


def files_of(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_report_rebuilds_the_bench_hooks_report(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = rescue_run(pytester, monkeypatch, "--benchmark-json=json-folder/out.json", "-k", "timed")
    assert result.ret == pytest.ExitCode.OK
    hooks = (pytester.path / "reports" / "latest").resolve()
    saved = pytester.path / "json-folder" / "out.json"
    assert len(json.loads(saved.read_text())["benchmarks"]) == 1  # the untimed entry is kept beside, not in it

    capsys.readouterr()
    code, out, err = cli(["report", str(saved), "--out", str(pytester.path / "again")], capsys)
    assert code == 0, err
    rebuilt = Path(out.strip())
    assert rebuilt.parent == pytester.path / "again" and rebuilt.name.endswith("-out")
    assert (pytester.path / "again" / "latest").resolve() == rebuilt
    assert files_of(rebuilt) == files_of(hooks)
    assert "extras/sensitivity-mnist5k-lenet300.png" in files_of(rebuilt)
    columns = ["fullname", "iteration", "accuracy", "sparsity"]
    pd.testing.assert_frame_equal(
        pd.read_csv(rebuilt / "results.csv")[columns], pd.read_csv(hooks / "results.csv")[columns]
    )
    assert len(pd.read_csv(rebuilt / "results.csv")) == 2
    pd.testing.assert_frame_equal(
        pd.read_csv(rebuilt / "extras" / "sensitivity-mnist5k-lenet300.csv"),
        pd.read_csv(hooks / "extras" / "sensitivity-mnist5k-lenet300.csv"),
    )


def test_report_of_an_old_json_and_never_over_an_earlier_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSON from before the bench kept its own records still gives the tables and plots."""
    saved = tmp_path / "old.json"
    shutil.copy(FIXTURES / "bench-before-families.json", saved)
    first = cli(["report", str(saved), "--out", str(tmp_path / "reports")], capsys)
    second = cli(["report", str(saved), "--out", str(tmp_path / "reports")], capsys)
    assert first[0] == second[0] == 0, first[2] + second[2]
    one, two = Path(first[1].strip()), Path(second[1].strip())
    assert one != two and one.is_dir() and two.is_dir()
    readme = (one / "README.md").read_text()
    assert readme.startswith("# Pruning run report") and "## mnist5k / lenet300" in readme
    assert any(p.startswith("plots/") for p in files_of(one))
    assert len(pd.read_csv(one / "results.csv")) == len(json.loads(saved.read_text())["benchmarks"])


@pytest.mark.parametrize("case", ["missing", "not-json", "not-benchmark"])
def test_a_bad_json_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    path = tmp_path / "out.json"
    if case != "missing":
        path.write_text("{not json" if case == "not-json" else '{"machine_info": {}}')
    code, out, err = cli(["report", str(path), "--out", str(tmp_path / "reports")], capsys)
    assert_one_line_error(code, err, str(path))
    assert out == "" and not (tmp_path / "reports").exists()


@pytest.mark.parametrize("below", [False, True], ids=["file-in-place", "below-a-file"])
def test_an_unwritable_out_is_one_line_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], below: bool
) -> None:
    blocker = tmp_path / "reports"
    blocker.write_text("not a folder")
    out = blocker / "sub" if below else blocker
    code, _, err = cli(["report", str(tmp_path / "never-read.json"), "--out", str(out)], capsys)
    assert_one_line_error(code, err, "--out", str(out), "is not a folder")
    assert blocker.read_text() == "not a folder"
