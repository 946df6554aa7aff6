"""Fault injection into the bench suite: ``pytest bench`` run in a subprocess on broken inputs.

A requested data set that cannot be read, or a bad ``--prune-*`` value, must end the run
non-zero with the file or option named, once, without tracebacks; never "N skipped" and exit 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def bench(tmp_path: Path, *args: str, files: tuple[str, ...] = ("bench/test_inference.py",)) -> tuple[int, str]:
    """``pytest <files> args`` in a subprocess (own cache and reports under ``tmp_path``): (exit status, output)."""
    env = {**os.environ, "PRUNELIB_CACHE_DIR": str(tmp_path / "cache"), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    env.pop("PRUNELIB_DATA_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:randomly", "--benchmark-disable"]
        + ["--prune-reports", str(tmp_path / "reports"), "--prune-methods", "no-retrain", "--prune-iterations", "1"]
        + list(args),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr


def write_sst2(root: Path, train: list[str]) -> Path:
    folder = root / "sst2"
    folder.mkdir(parents=True)
    good = "\n".join(["sentence\tlabel", "a fine film\t1", "a dull film\t0"]) + "\n"
    (folder / "train.tsv").write_text("\n".join(["sentence\tlabel", *train]) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text(good, encoding="utf-8")
    return folder


def test_a_malformed_requested_data_set_fails_the_run_naming_file_and_line(tmp_path: Path) -> None:
    """Before: every test skipped and exit 0. After: exit 4 (bad input), file and line named, no traceback."""
    folder = write_sst2(tmp_path / "data", ["a fine film\t1", "a dull film\t7", "more\t0"])
    code, out = bench(
        tmp_path,
        "--prune-datasets",
        "sst2:sst2-mlp",
        "--prune-data-dir",
        str(tmp_path / "data"),
        files=("bench/test_inference.py", "bench/test_speech.py"),
    )
    assert code == pytest.ExitCode.USAGE_ERROR, out
    named = f"{folder / 'train.tsv'}:3: expected"
    assert named in out and "Traceback" not in out
    failures = [line for line in out.splitlines() if line.startswith("prunelib: requested data set cannot be read")]
    assert failures and all("sst2:sst2-mlp" in line and named in line for line in failures)
    summary = [line for line in failures if line.endswith("tests failed on it)")]
    assert summary == [f"{failures[0]} ({len(failures) - 1} tests failed on it)"], summary  # one line per test + one
    # a skip says why, without -rs: the speech tests were not requested
    assert "SKIPPED" in out and "no speech pair in --prune-datasets" in out


def test_a_data_root_without_the_requested_folder_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    code, out = bench(tmp_path, "--prune-datasets", "sst2:sst2-mlp", "--prune-data-dir", str(tmp_path / "data"))
    assert code == pytest.ExitCode.USAGE_ERROR, out
    assert f"has no folder 'sst2': expected {tmp_path / 'data' / 'sst2'}" in out and "Traceback" not in out


def test_a_missing_data_dir_stops_before_collection(tmp_path: Path) -> None:
    code, out = bench(tmp_path, "--prune-datasets", "sst2:sst2-mlp", "--prune-data-dir", str(tmp_path / "nowhere"))
    assert code == pytest.ExitCode.USAGE_ERROR, out
    assert out.count(f"{tmp_path / 'nowhere'} does not exist") == 1 and "Traceback" not in out
    assert "passed" not in out and "failed" not in out


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--prune-threads", "0", "--prune-threads must be >= 1, got 0"),
        ("--prune-seed", "-1", "--prune-seed must be >= 0, got -1"),
        ("--prune-iterations", "0", "--prune-iterations must be >= 1, got 0"),
    ],
)
def test_a_bad_bench_option_is_one_usage_error(tmp_path: Path, option: str, value: str, message: str) -> None:
    """Before: the right message seven times, inside collection tracebacks. After: once, exit 4."""
    code, out = bench(tmp_path, f"{option}={value}", files=("bench",))
    assert code == pytest.ExitCode.USAGE_ERROR, out
    assert out.count(message) == 1, out
    assert "Traceback" not in out and "collected" not in out
