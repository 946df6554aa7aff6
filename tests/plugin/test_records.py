"""Entries kept beside pytest-benchmark's JSON, and the extra_info contract."""

from __future__ import annotations

import pandas as pd
import pytest

from prunelib.measure.thermal import EXTRA_INFO_KEYS as THERMAL_KEYS
from prunelib.plugin.records import Records, extra_info, merge_entries, record_extra, records_of
from prunelib.report.rows import STABLE_KEYS
from prunelib.results.schema import EXTRA_INFO_KEYS
from prunelib.sweep.spec import SweepSpec

SPEC = SweepSpec("mlp", "mnist5k", "lenet300", "imp-rewind", 0.33, 10, seed=3)


METRICS = {
    "sparsity": 0.5,
    "sparsity_model": 0.49,
    "accuracy": 0.9,
    "params_total": 10,
    "params_nonzero": 5,
    "disk_dense_bytes": 100,
    "disk_sparse_bytes": 80,
    "disk_compact_bytes": 30,
    "disk_bound_bytes": 28,
    "flops": 7,
    "latency_mean_s": 1.0,
}


def test_extra_info_carries_every_stable_key() -> None:
    info = extra_info(SPEC, 4, METRICS, runtime="onnxruntime", batch_size=256, threads=2)
    assert set(STABLE_KEYS) <= set(info)
    timed = set(THERMAL_KEYS)  # added around the timing itself (bench/test_inference.py)
    assert set(EXTRA_INFO_KEYS) - {"params_deployed", "neuron_sparsity"} - timed <= set(info)  # not in METRICS
    assert (info["family"], info["metric"], info["higher_is_better"], info["accuracy"]) == (
        "mlp",
        "accuracy",
        True,
        0.9,
    )
    assert (info["method"], info["iteration"], info["runtime"], info["batch_size"], info["seed"]) == (
        "imp-rewind",
        4,
        "onnxruntime",
        256,
        3,
    )
    assert info["precision"] == "fp32" and info["disk_compact_bytes"] == 30
    assert "latency_mean_s" not in info  # timing is pytest-benchmark's, never a cached figure


def test_merge_keeps_timed_entries_and_adds_the_untimed() -> None:
    records = Records(
        [
            {"fullname": "a", "extra_info": {"x": 1}, "stats": None},
            {"fullname": "b", "extra_info": {"x": 2}, "stats": None},
        ]
    )
    bench = {"benchmarks": [{"fullname": "a", "extra_info": {"x": 1}, "stats": {"mean": 1.0}}], "version": "5"}
    merged = merge_entries(bench, records)
    assert [e["fullname"] for e in merged["benchmarks"]] == ["a", "b"]
    assert merged["benchmarks"][0]["stats"] == {"mean": 1.0} and merged["version"] == "5"
    assert merge_entries({"benchmarks": []}, records)["benchmarks"] == records.entries


def test_extra_tables_append_per_name() -> None:
    config = type("Config", (), {"stash": pytest.Stash()})()
    record_extra(config, "speedups", pd.DataFrame([{"a": 1}]))
    record_extra(config, "speedups", pd.DataFrame([{"a": 2}]))
    record_extra(config, "precision", pd.DataFrame([{"b": 3}]))
    extras = records_of(config).extras
    assert extras["speedups"]["a"].tolist() == [1, 2] and list(extras) == ["speedups", "precision"]


def test_records_travel_in_the_json_and_come_back() -> None:
    """What pytest-benchmark does not keep is stored beside its entries and merged back by the report command."""
    import json

    from prunelib.plugin.records import records_to_json
    from prunelib.report.writer import RECORDS_KEY, saved_run

    timed = {"fullname": "t::a", "extra_info": {"iteration": 0}, "stats": {"mean": 1.0}}
    untimed = {"name": "b", "fullname": "t::b", "group": None, "extra_info": {"iteration": 1}, "stats": None}
    sens = pd.DataFrame({"group": ["fc1", "fc2"], "sparsity": [0.5, 0.9], "accuracy": [0.9, None]})
    records = Records([dict(timed, stats=None), untimed], {"sensitivity": sens})
    bench = {"machine_info": {}, "benchmarks": [timed]}
    bench[RECORDS_KEY] = json.loads(json.dumps(records_to_json(bench, records)))  # through a file, as saved
    assert [e["fullname"] for e in bench[RECORDS_KEY]["entries"]] == ["t::b"]  # the timed one is not doubled

    merged, extras = saved_run(bench)
    assert [e["fullname"] for e in merged["benchmarks"]] == ["t::a", "t::b"]
    assert merged["benchmarks"][0]["stats"] == {"mean": 1.0} and RECORDS_KEY not in merged
    pd.testing.assert_frame_equal(extras["sensitivity"], sens)
    assert saved_run({"benchmarks": [timed]}) == ({"benchmarks": [timed]}, {})  # an older file: as it is
