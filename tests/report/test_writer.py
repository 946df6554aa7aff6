"""Report: fixture JSON builder, real pytest-benchmark output via pytester, folders, latest, atomicity."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from prunelib.families.contract import Metric
from prunelib.fileio import write_text_atomic
from prunelib.report import rows as report_rows
from prunelib.report import writer as report
from prunelib.results.schema import LEGACY_METRICS
from prunelib.results.sensitivity import sensitivity_summary, tolerated_sparsity

pytest_plugins = ["pytester"]

# ---------------------------------------------------------------- fixture JSON builder
LENET_PARAMS = 266_610


def make_stats(mean_s: float, rel_spread: float = 0.05, rounds: int = 50) -> dict[str, Any]:
    """pytest-benchmark ``stats`` for a timing around ``mean_s`` seconds."""
    sd = mean_s * rel_spread
    return {
        "min": mean_s * 0.9,
        "max": mean_s * 1.4,
        "mean": mean_s,
        "stddev": sd,
        "rounds": rounds,
        "median": mean_s * 0.98,
        "iqr": 1.35 * sd,
        "q1": mean_s - 0.67 * sd,
        "q3": mean_s + 0.67 * sd,
        "iqr_outliers": 1,
        "stddev_outliers": 3,
        "outliers": "3;1",
        "ld15iqr": mean_s * 0.9,
        "hd15iqr": mean_s * 1.2,
        "ops": 1.0 / mean_s,
        "total": mean_s * rounds,
        "iterations": 1,
    }


def make_entry(
    *,
    dataset: str = "mnist5k",
    model: str = "lenet300",
    method: str = "imp-rewind",
    iteration: int = 0,
    runtime: str = "torch",
    batch_size: int = 1,
    amount: float = 0.2,
    metric: str = "accuracy",
    metric_value: float | None = None,
    latency_s: float | None = None,
    precision: str | None = None,
    params_total: int = LENET_PARAMS,
    stats: bool = True,
    compact: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One benchmark entry as pytest-benchmark writes it, with the suite's extra_info keys."""
    sparsity = 1 - (1 - amount) ** iteration
    nonzero = int(round(params_total * (1 - sparsity)))
    if metric_value is None:
        # flat until the method's knee, then falls: the shape IMP sweeps have
        knee = {"imp-rewind": 0.93, "imp-finetune": 0.9, "no-retrain": 0.6, "random": 0.3}.get(method, 0.8)
        loss = max(0.0, sparsity - knee) * (2.0 if method == "no-retrain" else 1.2)
        metric_value = 0.18 + loss if metric == "wer" else 0.98 - loss
    if latency_s is None:
        per_batch = {"torch": 2.0e-4, "onnxruntime": 6.0e-5, "torch-sparse": 3.0e-4}.get(runtime, 2e-4)
        latency_s = per_batch * (1 + 0.05 * batch_size) * (1 - 0.6 * sparsity if runtime == "torch-sparse" else 1)
        latency_s *= 1 + 0.02 * ((iteration * 7 + len(method)) % 5)  # a little deterministic jitter
    ex: dict[str, Any] = {
        "dataset": dataset,
        "model": model,
        "method": method,
        "iteration": iteration,
        "amount": amount,
        "sparsity": sparsity,
        "sparsity_model": sparsity * 0.99,
        metric: metric_value,
        "params_total": params_total,
        "params_nonzero": nonzero,
        "disk_dense_bytes": params_total * 4 + 3000,
        "disk_sparse_bytes": nonzero * 20 + 3000,
        "runtime": runtime,
        "batch_size": batch_size,
        "threads": 1,
        "seed": 0,
        "torch_version": "2.13.0+cpu",
        "onnxruntime_version": "1.32.0",
    }
    if compact:
        ex["disk_compact_bytes"] = nonzero * 6 + 3000
    if precision is not None:
        ex["precision"] = precision
    ex.update(extra or {})
    pid = f"{dataset}-{model}-{method}-it{iteration:02d}-{runtime}-b{batch_size}"
    entry: dict[str, Any] = {
        "group": f"{dataset}-{model}",
        "name": f"test_inference[{pid}]",
        "fullname": f"bench/test_inference.py::test_inference[{pid}]",
        "params": {"case": pid},
        "param": pid,
        "extra_info": ex,
        "options": {
            "disable_gc": False,
            "timer": "perf_counter",
            "min_rounds": 5,
            "max_time": 1.0,
            "min_time": 5e-06,
            "precision": None,
            "confidence": None,
            "warmup": False,
        },
    }
    if stats:
        entry["stats"] = make_stats(latency_s)
    return entry


def make_sweep(
    *,
    methods: tuple[str, ...] = ("no-retrain", "imp-rewind"),
    iterations: int = 8,
    runtimes: tuple[str, ...] = ("torch", "onnxruntime"),
    batches: tuple[int, ...] = (1, 64),
    **kw: Any,
) -> list[dict[str, Any]]:
    """Entries of a full sweep: every method x iteration x runtime x batch size."""
    return [
        make_entry(method=m, iteration=i, runtime=r, batch_size=b, **kw)
        for m in methods
        for i in range(iterations)
        for r in runtimes
        for b in batches
    ]


def make_bench(entries: list[dict[str, Any]], *, when: str = "2026-05-01T10:00:00+00:00") -> dict[str, Any]:
    """A whole pytest-benchmark JSON document around ``entries``."""
    return {
        "machine_info": {
            "node": "pi4",
            "processor": "",
            "machine": "aarch64",
            "python_version": "3.11.7",
            "system": "Linux",
            "release": "6.6.31-v8+",
            "cpu": {"brand_raw": "Cortex-A72", "count": 4, "hz_actual": [1_800_000_000, 0]},
        },
        "commit_info": {"id": "abc1234", "dirty": False, "project": "prunelib", "branch": "main"},
        "benchmarks": copy.deepcopy(entries),
        "datetime": when,
        "version": "5.3.1",
    }


def _png_ok(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))


@pytest.fixture
def stub_png(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip rendering (the slow part) where a test is about folders and tables, not pictures."""
    from prunelib.fileio import write_bytes_atomic

    monkeypatch.setattr(report.plots, "save_png", lambda fig, path: write_bytes_atomic(path, b"\x89PNG\r\n\x1a\n"))


# ---------------------------------------------------------------- rows
def test_benchmark_rows_flattens_extra_info_and_stats() -> None:
    bench = make_bench([make_entry(iteration=2, latency_s=0.004)])
    rows = report.benchmark_rows(bench)
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["dataset"] == "mnist5k" and row["iteration"] == 2
    assert row["latency_mean_s"] == pytest.approx(0.004)
    assert row["latency_std_s"] == pytest.approx(0.0002)
    assert row["latency_median_s"] == pytest.approx(0.004 * 0.98)
    assert bool(row["has_stats"]) is True
    assert set(report_rows.STABLE_KEYS) <= set(rows.columns)


def test_benchmark_rows_tolerates_missing_stats_keys_and_junk() -> None:
    entries = [make_entry(stats=False), {"name": "test_bare"}, "not an entry"]
    rows = report.benchmark_rows(make_bench(entries))  # type: ignore[list-item]
    assert len(rows) == 2
    assert rows["latency_mean_s"].isna().all()
    assert not rows["has_stats"].astype(bool).any()
    assert set(report_rows.STABLE_KEYS) <= set(rows.columns)


def test_benchmark_rows_rejects_non_dict() -> None:
    with pytest.raises(TypeError, match="list"):
        report.benchmark_rows([])  # type: ignore[arg-type]


def test_lab_rows_keep_torch_batch1_fp32_one_per_iteration() -> None:
    entries = make_sweep(iterations=3)
    entries += [
        make_entry(iteration=1, precision="int8"),
        make_entry(iteration=1, precision="fp32", extra={"threads": 4}),
    ]
    lab = report.lab_rows(report.benchmark_rows(make_bench(entries)))
    assert len(lab) == 2 * 3  # two methods x three iterations
    assert set(lab["runtime"]) == {"torch"} and set(lab["batch_size"]) == {1}
    dup = lab[(lab["method"] == "imp-rewind") & (lab["iteration"] == 1)]
    assert len(dup) == 1 and dup["threads"].iloc[0] == 4  # the row with most threads wins


# ---------------------------------------------------------------- report contents
def test_report_contents(tmp_path: Path) -> None:
    bench = make_bench(
        make_sweep(iterations=6, runtimes=("torch", "onnxruntime"), extra={"flops": 500_000})
        + make_sweep(
            dataset="fsdd",
            model="speech-mlp",
            metric="wer",
            methods=("imp-finetune",),
            iterations=4,
            runtimes=("torch",),
            batches=(1,),
        )
    )
    sens = pd.DataFrame(
        {
            "group": ["layers.0"] * 3 + ["out"] * 3,
            "sparsity": [0, 0.5, 0.9] * 2,
            "accuracy": [0.98, 0.97, 0.9, 0.98, 0.96, 0.7],
        }
    )
    other = pd.DataFrame({"threads": [1, 2], "latency_mean_s": [0.001, 0.0006]})
    folder = report.write_run_report(bench, tmp_path, extra={"sensitivity": sens, "threads": other}, run_name="demo")
    readme = (folder / "README.md").read_text()
    lines = readme.splitlines()
    machine_at = lines.index("## Machine")
    assert machine_at < 6 and all(not line.startswith("## ") for line in lines[:machine_at])  # machine first
    assert "Cortex-A72" in readme
    # order: lab table, plots, knee, extras
    mnist = readme.index("## mnist5k / lenet300 (Accuracy, higher is better)")
    assert readme.index("### imp-rewind", mnist) < readme.index("### Plots", mnist) < readme.index("### Knee", mnist)
    assert readme.index("## fsdd / speech-mlp (WER, lower is better)") < readme.index("## Extras")
    start = readme[:mnist].count("\n")
    header = next(line for line in lines[start:] if line.startswith("|   Iteration"))
    assert [c.strip() for c in header.strip("|").split("|")][:5] == [
        "Iteration",
        "Sparsity (%)",
        "Accuracy",
        "Latency (s)",
        "Disk Size (MB)",
    ]
    # per (dataset, model, method) CSV + markdown in the lab's columns
    table = pd.read_csv(folder / "tables" / "mnist5k-lenet300-imp-rewind.csv")
    assert list(table.columns[:5]) == ["Iteration", "Sparsity (%)", "Accuracy", "Latency (s)", "Disk Size (MB)"]
    assert table["Iteration"].tolist() == list(range(6))
    speech = pd.read_csv(folder / "tables" / "fsdd-speech-mlp-imp-finetune.csv")
    assert "WER" in speech.columns and "Accuracy" not in speech.columns
    assert (folder / "tables" / "mnist5k-lenet300-no-retrain.md").read_text().count("\n|") >= 7
    # every row flattened
    results = pd.read_csv(folder / "results.csv")
    assert len(results) == len(bench["benchmarks"])
    assert {"latency_mean_s", "latency_std_s", "latency_median_s", "latency_min_s", "dataset", "runtime"} <= set(
        results.columns
    )
    # plots embedded and valid
    embedded = [line[line.index("](") + 2 : -1] for line in lines if line.startswith("![")]
    assert len(embedded) == 2 * 6 + 1
    for rel in embedded:
        assert _png_ok(folder / rel), rel
    assert _png_ok(folder / "plots" / "fsdd-speech-mlp-wer-vs-sparsity.png")
    # knee + extras
    knee = pd.read_csv(folder / "knee" / "mnist5k-lenet300.csv")
    assert set(knee["method"]) == {"no-retrain", "imp-rewind"}
    assert (folder / "extras" / "sensitivity.csv").is_file() and _png_ok(folder / "extras" / "sensitivity.png")
    assert (folder / "extras" / "threads.md").is_file() and not (folder / "extras" / "threads.png").exists()
    assert json.loads((folder / "benchmark.json").read_text())["version"] == "5.3.1"
    assert "Missing data" not in readme


def test_two_runs_make_two_folders_and_latest_moves(tmp_path: Path, stub_png: None) -> None:
    bench = make_bench(make_sweep(iterations=2, runtimes=("torch",), batches=(1,)))
    first = report.write_run_report(bench, tmp_path)
    before = _snapshot(first)
    second = report.write_run_report(bench, tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    assert _snapshot(first) == before  # untouched
    latest = tmp_path / "latest"
    assert latest.is_symlink() and latest.resolve() == second.resolve()
    assert os.readlink(latest) == second.name  # relative: the tree can be moved
    assert _run_folders(tmp_path) == sorted([first, second])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or temp links left


def test_same_run_name_never_reuses_a_folder(tmp_path: Path) -> None:
    bench = make_bench([])
    a = report.write_run_report(bench, tmp_path, run_name="nightly")
    b = report.write_run_report(bench, tmp_path, run_name="nightly")
    assert a.name.endswith("-nightly") and b != a and "-nightly" in b.name
    assert (a / "README.md").is_file() and (b / "README.md").is_file()


def test_claim_folder_picks_another_name_on_clash(tmp_path: Path) -> None:
    (tmp_path / "20260501T100000Z-nightly").mkdir()
    (tmp_path / "20260501T100000Z-nightly" / "keep.txt").write_text("old")
    (tmp_path / "20260501T100000Z-nightly-2").mkdir()  # even an empty folder is not reused
    staging = tmp_path / ".partial-x"
    staging.mkdir()
    got = report._claim_folder(staging, tmp_path, "20260501T100000Z-nightly", random_suffix=False)
    assert got.name == "20260501T100000Z-nightly-3"
    assert (tmp_path / "20260501T100000Z-nightly" / "keep.txt").read_text() == "old"
    staging2 = tmp_path / ".partial-y"
    staging2.mkdir()
    got2 = report._claim_folder(staging2, tmp_path, "20260501T100000Z-nightly", random_suffix=True)
    assert got2.name.startswith("20260501T100000Z-") and got2.name not in {"20260501T100000Z-nightly", got.name}


def test_latest_falls_back_to_text_file_without_symlinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_symlinks(*args: Any, **kwargs: Any) -> None:
        raise OSError("symlinks not supported here")

    monkeypatch.setattr(report.os, "symlink", no_symlinks)
    folder = report.write_run_report(make_bench([]), tmp_path)
    assert (tmp_path / "LATEST").read_text().strip() == folder.name
    assert not (tmp_path / "latest").exists()


def test_update_latest_rejects_unknown_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nope"):
        report.update_latest(tmp_path, "nope")


def test_failing_writer_leaves_no_partial_file(tmp_path: Path) -> None:
    from prunelib.fileio import write_atomic

    target = tmp_path / "table.csv"
    write_text_atomic(target, "old\n")

    def half(p: Path) -> None:
        p.write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, half)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_failing_report_leaves_no_folder_and_keeps_latest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = make_bench(make_sweep(iterations=2, runtimes=("torch",), batches=(1,)))
    monkeypatch.setattr(report.plots, "save_png", lambda fig, path: write_text_atomic(path, "png"))
    good = report.write_run_report(bench, tmp_path)

    def broken(fig: Any, path: Any) -> Path:
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(report.plots, "save_png", broken)
    with pytest.raises(RuntimeError, match="renderer"):
        report.write_run_report(bench, tmp_path)
    assert _run_folders(tmp_path) == [good]
    assert (tmp_path / "latest").resolve() == good.resolve()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_empty_run_writes_machine_and_says_what_is_missing(tmp_path: Path) -> None:
    folder = report.write_run_report(make_bench([]), tmp_path)
    readme = (folder / "README.md").read_text()
    assert "## Machine" in readme and "No benchmark entries" in readme
    assert (folder / "results.csv").is_file()
    assert not (folder / "plots").exists()


def test_no_benchmarks_key_at_all(tmp_path: Path) -> None:
    folder = report.write_run_report({"machine_info": {}}, tmp_path)
    assert "no `benchmarks` list" in (folder / "README.md").read_text()


def test_entries_without_stats_or_keys_are_reported_not_fatal(tmp_path: Path, stub_png: None) -> None:
    entries = [make_entry(iteration=i, stats=False) for i in range(3)]
    entries.append({"name": "test_other", "extra_info": {}, "stats": make_stats(0.001)})
    entries.append(make_entry(iteration=1, precision="fp16"))
    folder = report.write_run_report(make_bench(entries), tmp_path)
    readme = (folder / "README.md").read_text()
    assert "4 of 5 entries have no timing stats" not in readme  # fp16 entry and test_other have stats
    assert "3 of 5 entries have no timing stats" in readme
    assert "1 entries lack dataset/model/method/iteration" in readme
    assert "reduced precision" in readme
    table = pd.read_csv(folder / "tables" / "mnist5k-lenet300-imp-rewind.csv")
    assert table["Latency (s)"].isna().all() and len(table) == 3
    assert "n/a" in (folder / "tables" / "mnist5k-lenet300-imp-rewind.md").read_text()


def test_bad_extra_is_rejected_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="group, sparsity"):
        report.write_run_report(make_bench([]), tmp_path, extra={"sensitivity": pd.DataFrame({"x": [1]})})
    with pytest.raises(TypeError, match="DataFrame"):
        report.write_run_report(make_bench([]), tmp_path, extra={"t": [1, 2]})  # type: ignore[dict-item]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


# ---------------------------------------------------------------- the real plugin (pytester)
BENCH_MODULE = """
import pytest
CASES = [(m, i) for m in ("no-retrain", "imp-rewind") for i in range(3)]

@pytest.mark.parametrize("method,iteration", CASES, ids=[f"{m}-it{i:02d}" for m, i in CASES])
def test_inference(benchmark, method, iteration):
    sparsity = 1 - 0.8 ** iteration
    benchmark.group = "mnist5k-lenet300"
    benchmark.extra_info.update(
        dataset="mnist5k", model="lenet300", method=method, iteration=iteration, amount=0.2,
        sparsity=sparsity, sparsity_model=sparsity * 0.99, accuracy=0.98 - 0.01 * iteration,
        params_total=266610, params_nonzero=int(266610 * (1 - sparsity)),
        disk_dense_bytes=1069440, disk_sparse_bytes=int(5332200 * (1 - sparsity)),
        runtime="torch", batch_size=1, threads=1, seed=0,
        torch_version="2.13.0+cpu", onnxruntime_version="1.32.0",
    )
    benchmark(sum, range(50))
"""

HOOKS_CONFTEST = """
from pathlib import Path
from prunelib.measure.machine import update_machine_info
from prunelib.report.rows import bench_from_session
from prunelib.report.writer import write_run_report

def pytest_benchmark_update_machine_info(config, machine_info):
    update_machine_info(machine_info)

def pytest_sessionfinish(session, exitstatus):
    write_run_report(bench_from_session(session), Path(str(session.config.rootpath)) / "reports")
"""

FAST = [
    "-p",
    "no:cacheprovider",
    "-p",
    "no:xdist",
    "--benchmark-min-rounds=2",
    "--benchmark-max-time=0.0001",
    "--benchmark-warmup=off",
    "-p",
    "no:randomly",
]


def test_real_plugin_json_feeds_the_report(
    pytester: pytest.Pytester, tmp_path: Path, stub_png: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real pytest-benchmark session with the hooks wired as the lead would; its JSON feeds the report."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # inner session is serial even under -n
    pytester.makepyfile(test_bench=BENCH_MODULE)
    pytester.makeconftest(HOOKS_CONFTEST)
    out = pytester.path / "out.json"
    pytester.runpytest(*FAST, f"--benchmark-json={out}").assert_outcomes(passed=6)
    bench = json.loads(out.read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(bench)
    assert bench["machine_info"]["prunelib"]["logical_cores"] >= 1  # update_machine_info ran
    rows = report.benchmark_rows(bench)
    assert len(rows) == 6 and rows["has_stats"].astype(bool).all()
    assert (rows["latency_mean_s"] > 0).all() and (rows["latency_median_s"] > 0).all()
    # the report pytest_sessionfinish wrote from bench_from_session
    hook_readme = (pytester.path / "reports" / "latest" / "README.md").read_text()
    assert "## Machine" in hook_readme and "### imp-rewind" in hook_readme
    assert str(bench["machine_info"]["prunelib"]["cpu_model"]) in hook_readme
    # the report written from the saved JSON
    folder = report.write_run_report(bench, tmp_path)
    table = pd.read_csv(folder / "tables" / "mnist5k-lenet300-imp-rewind.csv")
    assert table["Iteration"].tolist() == [0, 1, 2]
    assert table["Latency (s)"].notna().all()
    knee = pd.read_csv(folder / "knee" / "mnist5k-lenet300.csv")
    assert knee["knee_iteration"].tolist() == [1, 1]  # 0.98 -> 0.97 -> 0.96: within 1 point up to it01


def test_benchmark_disable_still_writes_a_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCH_MODULE)
    pytester.makeconftest(HOOKS_CONFTEST)
    out = pytester.path / "out.json"
    pytester.runpytest(*FAST, "--benchmark-disable", f"--benchmark-json={out}").assert_outcomes(passed=6)
    assert not out.exists()  # the plugin writes no JSON when nothing was timed
    readme = (pytester.path / "reports" / "latest" / "README.md").read_text()
    assert "## Machine" in readme and "No benchmark entries" in readme


def test_sensitivity_summary_reads_the_numbers() -> None:
    frame = pd.DataFrame(
        {
            "group": ["a"] * 3 + ["b"] * 3,
            "sparsity": [0.0, 0.5, 0.9] * 2,
            "accuracy": [0.95, 0.945, 0.90, 0.95, 0.80, 0.50],
        }
    )
    tolerated = tolerated_sparsity(frame, LEGACY_METRICS["accuracy"])
    assert tolerated.to_dict() == {"a": 0.5, "b": 0.0}
    text = sensitivity_summary(frame, LEGACY_METRICS["accuracy"])
    assert "Most sensitive: `b`" in text and "most tolerant: `a`" in text
    wer = frame.rename(columns={"accuracy": "wer"}).assign(wer=[0.1, 0.105, 0.3, 0.1, 0.1, 0.2])
    assert tolerated_sparsity(wer, LEGACY_METRICS["wer"]).to_dict() == {"a": 0.5, "b": 0.5}
    # a family's own metric, by its direction: a lower-is-better "loss" reads like WER
    loss = wer.rename(columns={"wer": "loss"})
    assert tolerated_sparsity(loss, Metric("loss", higher_is_better=False, high=10)).to_dict() == {"a": 0.5, "b": 0.5}


def test_throttled_entries_are_warned_about_in_the_report() -> None:
    rows = pd.DataFrame(
        {
            "throttled": [True, False, None],
            "cpu_freq_before_mhz": [1800, 1800, None],
            "cpu_freq_after_mhz": [600, 1800, None],
        }
    )
    lines = report.throttle_warning(rows)
    assert lines and "1 of 3 timed entries" in lines[0] and "600 MHz" in lines[0]
    assert report.throttle_warning(rows.assign(throttled=False)) == []
    assert report.throttle_warning(pd.DataFrame({"x": [1]})) == []  # JSON from before the thermal keys


def test_speedup_timings_get_no_model_section_unasked(tmp_path: Path, stub_png: None) -> None:
    """The speed-up pair (the MLP's mlp1m) is timed in every run; only a requested sweep of it gets a section."""
    speedups = [
        {**make_entry(model="mlp1m", method=v, iteration=k), "group": "mnist5k-mlp1m-speedups-b1"}
        for v, k in (("dense", 0), ("structured-50", 1))
    ]
    sweep = make_sweep(methods=("no-retrain",), iterations=2, runtimes=("torch",), batches=(1,))
    folder = report.write_run_report(make_bench(sweep + speedups), tmp_path)
    readme = (folder / "README.md").read_text()
    assert "## mnist5k / lenet300" in readme and "mlp1m" not in readme
    assert not list(folder.rglob("*mlp1m*"))
    assert (pd.read_csv(folder / "results.csv")["model"] == "mlp1m").sum() == 2  # the rows themselves are kept

    asked = make_sweep(model="mlp1m", methods=("no-retrain",), iterations=2, runtimes=("torch",), batches=(1,))
    folder = report.write_run_report(make_bench(asked + speedups), tmp_path)
    readme = (folder / "README.md").read_text()
    assert "## mnist5k / mlp1m" in readme and "### no-retrain" in readme
    assert "### dense" not in readme and "### structured-50" not in readme


# ---------------------------------------------------------------- several seeds
def test_a_report_of_three_seeds_shows_means_intervals_and_keeps_every_seed(tmp_path: Path) -> None:
    entries = []
    for seed in (0, 1, 2):
        for e in make_sweep(iterations=5, runtimes=("torch",), batches=(1,)):
            e["extra_info"].update(seed=seed, accuracy=e["extra_info"]["accuracy"] + 0.005 * (seed - 1))
            entries.append(e)
    folder = report.write_run_report(make_bench(entries), tmp_path, run_name="seeds")
    results = pd.read_csv(folder / "results.csv")
    assert len(results) == 30 and sorted(results["seed"].unique()) == [0, 1, 2]
    table = pd.read_csv(folder / "tables" / "mnist5k-lenet300-imp-rewind.csv")
    assert {"Accuracy", "Accuracy low", "Accuracy high", "Seeds"} <= set(table.columns)
    assert len(table) == 5 and (table["Seeds"] == 3).all() and (table["Accuracy low"] < table["Accuracy"]).all()
    knee = pd.read_csv(folder / "knee" / "mnist5k-lenet300.csv")
    assert (knee["seeds"] == 3).all() and knee["judged_by"].str.contains("lower bound").all()
    readme = (folder / "README.md").read_text()
    assert "_3 seeds: tables show the mean Accuracy per iteration with its 95 % Student-t interval" in readme


def test_a_one_seed_report_has_no_seed_columns(tmp_path: Path) -> None:
    folder = report.write_run_report(make_bench(make_sweep(iterations=3)), tmp_path, run_name="one")
    table = pd.read_csv(folder / "tables" / "mnist5k-lenet300-imp-rewind.csv")
    assert "Seeds" not in table and "Accuracy low" not in table
    assert "seeds" not in pd.read_csv(folder / "knee" / "mnist5k-lenet300.csv")
    assert "seeds: tables show" not in (folder / "README.md").read_text()
