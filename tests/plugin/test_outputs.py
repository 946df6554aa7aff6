"""Output paths checked before any work, and a run's results rescued when their path fails at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import prunelib.plugin.outputs  # noqa: F401  loaded once here: in-process pytest runs unload what they import
import prunelib.report.writer  # noqa: F401  (matplotlib, imported twice in one process, breaks)

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- before any work: the real bench suite
def run_bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``pytest bench --collect-only ARGS``: the checks run in pytest_configure, before collection."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "--collect-only", "-q", "-p", "no:randomly", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full_env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "case",
    [
        "json-missing-folder",
        "json-below-a-file",
        "reports-is-a-file",
        "reports-below-a-file",
        "cache-option",
        "cache-env",
    ],
)
def test_a_bad_output_path_stops_the_bench_before_any_work(tmp_path: Path, case: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder goes")
    env = {"PRUNELIB_CACHE_DIR": str(tmp_path / "cache")}
    args, option, path = {
        "json-missing-folder": (
            [f"--benchmark-json={tmp_path / 'missing-dir' / 'out.json'}"],
            "--benchmark-json",
            tmp_path / "missing-dir" / "out.json",
        ),
        "json-below-a-file": ([f"--benchmark-json={blocker / 'out.json'}"], "--benchmark-json", blocker / "out.json"),
        "reports-is-a-file": ([f"--prune-reports={blocker}"], "--prune-reports", blocker),
        "reports-below-a-file": ([f"--prune-reports={blocker / 'r'}"], "--prune-reports", blocker / "r"),
        "cache-option": ([f"--prune-cache-dir={blocker / 'c'}"], "--prune-cache-dir", blocker / "c"),
        "cache-env": ([], "PRUNELIB_CACHE_DIR", blocker / "c" / "bench"),
    }[case]
    if case == "cache-env":
        env["PRUNELIB_CACHE_DIR"] = str(blocker / "c")
    done = run_bench(*args, f"--prune-reports={tmp_path / 'reports'}" if option != "--prune-reports" else "", env=env)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"ERROR: {option}: cannot write") and str(path) in errors[0], errors[0]
    assert "Traceback" not in done.stderr
    assert blocker.read_text() == "a file where a folder goes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]  # nothing created, nothing left


def test_good_output_paths_pass_and_are_not_created(tmp_path: Path) -> None:
    done = run_bench(
        f"--benchmark-json={tmp_path / 'out.json'}",
        f"--prune-reports={tmp_path / 'reports'}",
        env={"PRUNELIB_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- at the end: rescued, never lost
RECORDING_TESTS = """
import shutil
from pathlib import Path

import pandas as pd

from prunelib.plugin.records import record_entry, record_extra

INFO = {"family": "mlp", "dataset": "mnist5k", "model": "lenet300", "method": "no-retrain", "iteration": 0,
        "amount": 0.5, "metric": "accuracy", "higher_is_better": True, "accuracy": 0.9, "sparsity": 0.0,
        "runtime": "torch", "batch_size": 1, "threads": 1, "precision": "fp32"}


def test_timed(benchmark, request):
    benchmark.extra_info.update(INFO)
    benchmark(lambda: None)
    record_entry(request.config, request.node, None, INFO)


def test_timed_untimed_entry(request):
    record_entry(request.config, request.node, None, {**INFO, "iteration": 1, "sparsity": 0.5, "accuracy": 0.85})
    sens = pd.DataFrame({"group": ["fc1", "fc1", "fc2"], "sparsity": [0.0, 0.5, 0.5], "accuracy": [0.9, 0.8, 0.7]})
    record_extra(request.config, "sensitivity-mnist5k-lenet300", sens)


def test_the_folders_go_away_mid_run():
    for name in ("json-folder", "reports"):
        shutil.rmtree(name)
        Path(name).write_text("replaced by a file mid-run")
"""


def rescue_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str) -> pytest.RunResult:
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # else pytest-benchmark times nothing
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    pytester.makepyfile(test_recording=RECORDING_TESTS)
    (pytester.path / "json-folder").mkdir()
    (pytester.path / "reports").mkdir()
    return pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", "--benchmark-max-time=0.001", "--prune-reports=reports", *args
    )


def test_json_and_report_lost_mid_run_are_rescued(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = rescue_run(pytester, monkeypatch, "--benchmark-json=json-folder/out.json")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR  # the results are safe, but not where asked
    rescues = list((pytester.path / "tmp").glob("prunelib-rescue-*"))
    assert len(rescues) == 1
    rescue = rescues[0]
    saved = json.loads((rescue / "out.json").read_text())
    assert [b["extra_info"]["accuracy"] for b in saved["benchmarks"]] == [0.9]
    assert saved["benchmarks"][0]["stats"]["rounds"] >= 1
    report = (rescue / "latest").resolve()
    assert (report / "README.md").is_file() and (report / "results.csv").is_file()
    assert "mnist5k / lenet300" in (report / "README.md").read_text()
    err = result.stderr.str()
    assert "--benchmark-json: cannot write json-folder/out.json" in err and str(rescue / "out.json") in err
    assert "could not write the report under --prune-reports reports" in err and str(report.parent) in err
    assert (pytester.path / "reports").read_text() == "replaced by a file mid-run"  # nothing clobbered
    result.stdout.fnmatch_lines(
        [f"*prunelib report: {report}*", f"*prunelib rescued this run's results into {rescue}*"]
    )


def test_report_writer_failing_once_is_rescued(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills for the report only: the JSON lands where asked, the report in the rescue folder."""
    from prunelib.report import writer

    real = writer.write_run_report
    calls: list[Path] = []

    def full_once(bench, root, **kw):  # type: ignore[no-untyped-def]
        calls.append(Path(root))
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real(bench, root, **kw)

    monkeypatch.setattr(writer, "write_run_report", full_once)
    (pytester.path / "kept").mkdir()
    result = rescue_run(pytester, monkeypatch, "--benchmark-json=kept/out.json", "-k", "timed")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    assert json.loads((pytester.path / "kept" / "out.json").read_text())["benchmarks"]
    (rescue,) = (pytester.path / "tmp").glob("prunelib-rescue-*")
    assert calls == [Path("reports"), rescue]
    assert (rescue / "latest" / "results.csv").is_file()
    assert "No space left on device" in result.stderr.str()
    assert list((pytester.path / "reports").iterdir()) == []


def test_json_write_failing_at_the_end_is_rescued(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder is fine but the write itself fails (disk full): the JSON pytest-benchmark made is saved."""
    from pytest_benchmark.session import BenchmarkSession

    def disk_full(self, output_json):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(BenchmarkSession, "save_json", disk_full)
    result = rescue_run(pytester, monkeypatch, "--benchmark-json=json-folder/out.json", "-k", "timed")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    (rescue,) = (pytester.path / "tmp").glob("prunelib-rescue-*")
    saved = json.loads((rescue / "out.json").read_text())
    assert [b["extra_info"]["accuracy"] for b in saved["benchmarks"]] == [0.9]
    assert (pytester.path / "reports" / "latest" / "README.md").is_file()  # the report still went where asked
    assert "No space left on device" in result.stderr.str() and str(rescue / "out.json") in result.stderr.str()


def test_a_clean_run_rescues_nothing(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = rescue_run(pytester, monkeypatch, "--benchmark-json=json-folder/out.json", "-k", "timed")
    assert result.ret == pytest.ExitCode.OK
    assert (pytester.path / "json-folder" / "out.json").is_file()
    assert (pytester.path / "reports" / "latest" / "README.md").is_file()
    assert list((pytester.path / "tmp").iterdir()) == []
    report = (pytester.path / "reports" / "latest").resolve()
    result.stdout.fnmatch_lines([f"*prunelib report: {report.relative_to(pytester.path)}*"])


# ---------------------------------------------------------------- no host name unless asked
@pytest.mark.parametrize("keep", [False, True])
def test_the_host_name_is_dropped_unless_asked(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, keep: bool
) -> None:
    import platform

    args = ["--benchmark-json=json-folder/out.json", "-k", "timed"] + (["--prune-keep-hostname"] if keep else [])
    result = rescue_run(pytester, monkeypatch, *args)
    assert result.ret == pytest.ExitCode.OK
    saved = json.loads((pytester.path / "json-folder" / "out.json").read_text())
    in_report = json.loads((pytester.path / "reports" / "latest" / "benchmark.json").read_text())
    for machine in (saved["machine_info"], in_report["machine_info"]):
        assert ("node" in machine) is keep
        assert machine.get("node") == (platform.node() if keep else None)
        assert "prunelib" in machine  # the rest of the description stays
