"""The history table: sources found and classified, one run per saved run, bad files skipped by name, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunelib.history import table
from tests.history.fixture_runs import write_history


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_history_of_storage_reports_and_json_files(tmp_path: Path) -> None:
    f = write_history(tmp_path)
    (f["laptop"] / "broken.json").write_text("{not json")
    (f["laptop"] / "config.json").write_text(json.dumps({"benchmarks": "no"}))
    before = _snapshot(tmp_path)
    h = table.build_history([f["storage"], f["reports"], f["laptop"]])
    assert _snapshot(tmp_path) == before, "history wrote into a folder it reads"
    assert len(h.warnings) == 2 and any("broken.json" in w for w in h.warnings)
    assert any("config.json" in w and "not pytest-benchmark" in w for w in h.warnings)
    # 4 Pi runs saved twice (autosave + report folder) are kept once, with both places; 3 laptop runs
    assert len(h.runs) == 7
    pi = h.runs[h.runs["machine"] == "Cortex-A72 · aarch64 · Linux"]
    assert len(pi) == 4 and pi["report"].str.contains("reports").all()
    assert (pi["storage"] == "Linux-CPython-3.11-64bit").all()
    assert list(h.runs["datetime"]) == sorted(h.runs["datetime"])
    assert set(h.runs["prunelib_version"]) == {"0.1.0"} and set(h.runs["torch_version"]) == {"2.13.0+cpu"}
    assert list(h.table.columns) == list(table.COLUMNS)
    metrics = set(h.table["metric"])
    assert {"accuracy", "latency_median_s", "latency_q1_s", "rounds", "disk_compact_bytes", "sparsity"} <= metrics
    one = h.table[(h.table["metric"] == "accuracy")].iloc[0]
    assert one["kind"] == "quality" and bool(one["higher_is_better"]) is True
    laptop_runs = set(h.runs.loc[h.runs["machine"] != pi["machine"].iloc[0], "run"])
    assert h.rounds and {run for run, _ in h.rounds} == laptop_runs  # only --benchmark-json kept its rounds


def test_wide_has_one_row_per_run_and_benchmark(tmp_path: Path) -> None:
    f = write_history(tmp_path, runs=3, laptop_runs=0)
    w = table.wide(table.build_history([f["storage"]]).table)
    assert len(w) == 3 * 2 * 3 * 2  # runs x methods x iterations x runtimes
    assert not w.duplicated(["run", "benchmark"]).any()
    assert set(w["metric_name"]) == {"accuracy"}


def test_machine_id_prefers_cpu_brand_then_storage_name() -> None:
    info = {"machine": "aarch64", "system": "Linux", "cpu": {"brand_raw": "Cortex-A72"}}
    assert table.machine_id(info) == "Cortex-A72 · aarch64 · Linux"
    assert table.machine_id({"prunelib": {"cpu_model": "Pi"}, "machine": "aarch64"}) == "Pi · aarch64 · ?"
    assert table.machine_id({}, "Linux-CPython-3.11-64bit") == "Linux-CPython-3.11-64bit"
    assert table.machine_id(None) == "unknown machine"


def test_classify_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "README.md").write_text("x")
    assert table.classify(tmp_path / "r" / "benchmark.json").report == tmp_path / "r"
    assert table.classify(tmp_path / "m" / "0003_abc.json").storage == "m"
    assert table.classify(tmp_path / "out.json") == table.RunFile(tmp_path / "out.json")
    with pytest.raises(table.HistoryInputError, match="nope"):
        table.build_history([tmp_path / "nope"])


def test_partial_report_folders_and_links_are_not_read(tmp_path: Path) -> None:
    f = write_history(tmp_path, runs=2, laptop_runs=0)
    first = sorted(f["reports"].iterdir())[0]
    (f["reports"] / "latest").symlink_to(first.name)
    partial = f["reports"] / ".partial-x"
    partial.mkdir()
    (partial / "benchmark.json").write_text("{half")
    h = table.build_history([f["reports"]])
    assert len(h.runs) == 2 and not h.warnings
