"""``python -m prunelib``: one entry point, sub-commands, and every bad input as one line ``prunelib: error: ...``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from prunelib.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]
#: A fast MLP sweep: one step, one epoch on 300 examples, two timed calls.
QUICK = ["--iterations", "1", "--epochs", "1", "--train-subset", "300", "--latency-runs", "2"]


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``main(argv)`` in-process: (exit status, stdout, stderr), whether it returns or exits."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    """Exit 2 and exactly one stderr line ``prunelib: error: ...`` holding every fragment; returns the line."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("prunelib: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_sub_commands_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["--help"], capsys)
    assert code == 0
    for command in ("sweep", "sensitivity", "families", "cache", "compare", "report", "history"):
        assert command in out
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == {"sweep", "sensitivity", "families", "cache", "compare", "report", "history"}


@pytest.mark.parametrize(
    "argv, fragments",
    [
        ([], ["command"]),
        (["prune"], ["'prune'", "sweep"]),
        (["sweep", "--no-such-option", "1", "--out", "x"], ["--no-such-option"]),
    ],
    ids=["no-command", "unknown-command", "unknown-option"],
)
def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], fragments: list[str]) -> None:
    code, out, err = cli(argv, capsys)
    assert_one_line_error(code, err, *fragments)
    assert out == ""


def test_compare_is_dispatched_to_the_compare_tool(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = cli(["compare", "--help"], capsys)
    assert code == 0 and out.startswith("usage: python -m prunelib compare")
    code, _, err = cli(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")], capsys)
    assert code == 2 and str(tmp_path / "a.json") in err


def test_python_dash_m_prunelib_runs_a_sweep(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # this child process only
    proc = subprocess.run(
        [sys.executable, "-m", "prunelib", "sweep", *QUICK, "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert pd.read_csv(out / "results.csv")["iteration"].tolist() == [0, 1]
    assert (out / "results.md").is_file()


def test_python_dash_m_prunelib_errors_are_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "prunelib", "sweep", "--amount", "2", "--out", str(tmp_path / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert_one_line_error(proc.returncode, proc.stderr, "--amount")


def test_exit_codes_are_documented() -> None:
    import prunelib.cli.main as cli_main

    doc = cli_main.__doc__ or ""
    for code, meaning in (("0", "done"), ("1", "regression"), ("2", "bad input"), ("3", "internal error")):
        assert f"**{code}**" in doc and meaning in doc, (code, meaning)
    assert (cli_main.EXIT_OK, cli_main.EXIT_FAILED, cli_main.EXIT_USAGE, cli_main.EXIT_INTERNAL) == (0, 1, 2, 3)


def test_an_unexpected_exception_prints_its_traceback_and_exits_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug is not bad input (2) nor a failed gate (1): the traceback is kept, the status is 3."""
    import prunelib.cli.families as families_cli

    def broken(_args: object) -> int:
        raise RuntimeError("deliberately broken handler")

    monkeypatch.setattr(families_cli, "run_families_command", broken)
    code, _, err = cli(["families"], capsys)
    assert code == 3
    assert "Traceback" in err and "deliberately broken handler" in err
    assert err.strip().splitlines()[-1] == "prunelib: internal error: RuntimeError: deliberately broken handler"


def test_compare_crash_is_3_not_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """compare's 1 means "regression": an exception inside compare must not look like one."""
    import prunelib.report.compare as compare

    def broken(*_args: object, **_kwargs: object) -> object:
        raise KeyError("deliberately broken compare")

    monkeypatch.setattr(compare, "find_run_files", broken)
    code, _, err = cli(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")], capsys)
    assert code == 3 and "Traceback" in err
