"""A command's files go to ``--out``, or, once a write there fails, to a printed rescue folder (exit 3)."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from prunelib.cli.outputs import RESCUED, Outputs
from prunelib.fileio import write_text_atomic
from tests.cli.test_main import QUICK, cli


@pytest.fixture
def tmpdir_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Rescue folders land under ``tmp_path/tmp`` (``$TMPDIR`` for this test)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_files_go_to_out_while_it_can_be_written(tmp_path: Path, tmpdir_here: Path) -> None:
    outputs = Outputs(tmp_path / "run")
    path = outputs.save(Path("a") / "x.txt", lambda p: write_text_atomic(p, "x"))
    assert path == tmp_path / "run" / "a" / "x.txt" and path.read_text() == "x"
    assert outputs.status() == 0 and outputs.rescue is None and not list(tmpdir_here.iterdir())


def test_a_failed_write_and_every_later_one_go_to_the_rescue_folder(
    tmp_path: Path, tmpdir_here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = Outputs(tmp_path / "run")
    outputs.save("first.txt", lambda p: write_text_atomic(p, "1"))
    full = {"left": 1}

    def disk_full_once(path: Path) -> None:
        if full["left"]:
            full["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        write_text_atomic(path, "2")

    second = outputs.save("second.txt", disk_full_once)
    third = outputs.save("plots/third.txt", lambda p: write_text_atomic(p, "3"))
    assert outputs.rescue is not None and outputs.rescue.parent == tmpdir_here
    assert outputs.rescue.name.startswith("prunelib-rescue-")
    assert (second.read_text(), third.read_text()) == ("2", "3")
    assert second.parent == outputs.rescue and third == outputs.rescue / "plots" / "third.txt"
    assert (tmp_path / "run" / "first.txt").read_text() == "1" and not (tmp_path / "run" / "second.txt").exists()
    err = capsys.readouterr().err
    assert f"could not write {tmp_path / 'run' / 'second.txt'}: No space left on device" in err
    assert outputs.status() == RESCUED == 3
    assert str(outputs.rescue) in capsys.readouterr().err


def test_a_sweep_whose_out_fails_at_the_end_is_rescued_whole(
    tmp_path: Path, tmpdir_here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is probed before the work; here it fails only when results are written (disk full)."""
    out = tmp_path / "run"
    real = write_text_atomic

    def full_under_out(path: Path | str, text: str) -> Path:
        if Path(path).is_relative_to(out):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text)

    monkeypatch.setattr("prunelib.cli.sweep.write_text_atomic", full_under_out)
    code, stdout, err = cli(["sweep", *QUICK, "--method", "no-retrain,imp-rewind", "--out", str(out)], capsys)
    assert code == 3, err
    (rescue,) = tmpdir_here.iterdir()
    assert f"this run's files are in {rescue}" in err and "Traceback" not in err
    for method in ("no-retrain", "imp-rewind"):  # the files after the first failure, all of them, whole
        frame = pd.read_csv(rescue / method / "results.csv")
        assert list(frame["iteration"]) == [0, 1]
        assert (rescue / method / "results.md").read_text().startswith("# mnist5k / lenet300 / " + method)
    assert {p.name for p in (rescue / "plots").iterdir()} >= {"metric-vs-sparsity.png", "metric-vs-latency.png"}
    assert (out / "no-retrain" / "initial.safetensors").exists()  # written before the disk filled: left in place
