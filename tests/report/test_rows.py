"""A pytest-benchmark JSON as rows: entries, columns, the lab's selection, and what a run lacks."""

from __future__ import annotations

import math
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunelib.report.rows import (
    STABLE_KEYS,
    STATS_COLUMNS,
    bench_from_session,
    benchmark_entries,
    benchmark_rows,
    dedupe,
    is_fp32,
    lab_rows,
    missing_notes,
    number,
    scalar,
    schedule_frame,
)


def entry(name: str = "test_x", stats: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A benchmark entry carrying every stable key (overridden by ``extra``)."""
    info: dict[str, Any] = {k: 1 for k in STABLE_KEYS}
    info.update(dataset="mnist5k", model="lenet300", method="imp-rewind", iteration=0, runtime="torch")
    info.update(batch_size=1, threads=1, accuracy=0.9, torch_version="2", onnxruntime_version="1")
    info.update(extra)
    out: dict[str, Any] = {"name": name, "fullname": f"bench/test.py::{name}", "group": "g", "extra_info": info}
    if stats is not None:
        out["stats"] = stats
    return out


STATS = {"mean": 0.002, "stddev": 0.0001, "median": 0.0019, "min": 0.0015, "max": 0.004, "iqr": 0.0002}
STATS |= {"rounds": 40, "ops": 500.0, "q1": 0.0018, "q3": 0.002, "total": 0.08, "ld15iqr": 0.0016}


# ---------------------------------------------------------------- scalars
def test_scalar_turns_containers_into_sorted_json() -> None:
    assert scalar({"b": 1, "a": [1, 2]}) == '{"a": [1, 2], "b": 1}'
    assert scalar((1, 2)) == "[1, 2]"
    assert scalar("x") == "x" and scalar(3) == 3 and scalar(None) is None


@pytest.mark.parametrize(("value", "expected"), [(3, 3.0), ("0.5", 0.5), (2.5, 2.5)])
def test_number_parses(value: Any, expected: float) -> None:
    assert number(value) == expected


@pytest.mark.parametrize("value", [None, True, False, "fast", [1], {}])
def test_number_is_nan_for_non_numbers(value: Any) -> None:
    assert math.isnan(number(value))


# ---------------------------------------------------------------- entries
@pytest.mark.parametrize("bench", [{}, {"benchmarks": None}, {"benchmarks": "x"}, {"benchmarks": {"a": {}}}])
def test_entries_empty_when_absent_or_malformed(bench: dict) -> None:
    assert benchmark_entries(bench) == []


def test_entries_skip_non_dict_items() -> None:
    good = [{"name": "a"}, {"name": "b"}]
    assert benchmark_entries({"benchmarks": [good[0], "junk", 3, None, [1], good[1]]}) == good


@pytest.mark.parametrize("bench", [[], None, "json", 3])
def test_entries_reject_a_non_dict_bench(bench: Any) -> None:
    with pytest.raises(TypeError, match=type(bench).__name__):
        benchmark_entries(bench)


# ---------------------------------------------------------------- rows
def test_rows_map_stats_to_latency_columns() -> None:
    rows = benchmark_rows({"benchmarks": [entry(stats=STATS)]})
    row = rows.iloc[0]
    for stat, column in STATS_COLUMNS.items():
        assert row[column] == pytest.approx(STATS[stat]), column
    assert {"latency_mean_s", "latency_std_s", "latency_median_s", "ops_per_s", "rounds"} <= set(rows.columns)
    assert not {"q1", "total", "ld15iqr"} & set(rows.columns)  # only the mapped stats
    assert (row["latency_q1_s"], row["latency_q3_s"]) == (0.0018, 0.002)
    assert bool(row["has_stats"])


def test_rows_keep_every_extra_info_key_and_jsonify_containers() -> None:
    e = entry(custom_key="yes", nested={"b": 2, "a": 1}, neuron_sparsity=0.25)
    e["extra_info"]["name"] = "shadow"  # the entry's own name wins
    rows = benchmark_rows({"benchmarks": [e]})
    row = rows.iloc[0]
    assert row["custom_key"] == "yes" and row["neuron_sparsity"] == 0.25
    assert row["nested"] == '{"a": 1, "b": 2}'
    assert row["name"] == "test_x" and row["fullname"] == "bench/test.py::test_x" and row["group"] == "g"


def test_rows_without_stats_have_nan_latency() -> None:
    rows = benchmark_rows({"benchmarks": [entry(), entry(stats={"mean": None}), entry(stats="bad")]})  # type: ignore[arg-type]
    assert len(rows) == 3
    assert rows["latency_mean_s"].isna().all()
    assert not rows["has_stats"].astype(bool).any()


def test_rows_of_an_empty_run_still_have_every_column() -> None:
    rows = benchmark_rows({"benchmarks": []})
    assert rows.empty
    expected = {"name", "fullname", "group", "has_stats", *STABLE_KEYS, *STATS_COLUMNS.values()}
    assert expected <= set(rows.columns)


def test_rows_fill_missing_stable_keys_with_nan() -> None:
    rows = benchmark_rows({"benchmarks": [{"name": "bare"}]})
    assert set(STABLE_KEYS) <= set(rows.columns)
    assert rows[list(STABLE_KEYS)].isna().all(axis=None)


def test_rows_reject_a_non_dict_bench() -> None:
    with pytest.raises(TypeError):
        benchmark_rows([])  # type: ignore[arg-type]


means = st.one_of(st.none(), st.floats(1e-9, 10.0), st.just(math.nan), st.just("n/a"))


@settings(max_examples=40, deadline=None)
@given(items=st.lists(st.one_of(means.map(lambda m: ("entry", m)), st.sampled_from(["junk", 1, None])), max_size=8))
def test_rows_one_per_dict_entry_with_its_mean(items: list) -> None:
    raw = [entry(name=f"t{i}", stats={"mean": it[1]}) if isinstance(it, tuple) else it for i, it in enumerate(items)]
    rows = benchmark_rows({"benchmarks": raw})
    kept = [it for it in items if isinstance(it, tuple)]
    assert len(rows) == len(kept)
    for (_, mean), (_, row) in zip(kept, rows.iterrows()):
        ok = isinstance(mean, float) and math.isfinite(mean)
        assert bool(row["has_stats"]) is ok
        if ok:
            assert row["latency_mean_s"] == mean
        else:
            assert math.isnan(row["latency_mean_s"])


# ---------------------------------------------------------------- selection
def test_is_fp32_without_a_precision_column_is_all_true() -> None:
    frame = pd.DataFrame({"x": [1, 2]}, index=[5, 7])
    result = is_fp32(frame)
    assert result.tolist() == [True, True] and result.index.tolist() == [5, 7]


def test_is_fp32_keeps_fp32_and_unrecorded() -> None:
    frame = pd.DataFrame({"precision": ["fp32", None, "fp16", "int8", math.nan]})
    assert is_fp32(frame).tolist() == [True, True, False, False, True]


def test_dedupe_keeps_the_row_with_most_threads() -> None:
    rows = pd.DataFrame(
        {
            "k": ["a", "a", "a", "b", "b"],
            "threads": [1, 4, 2, None, 1],
            "tag": ["a1", "a4", "a2", "bnan", "b1"],
        }
    )
    kept, dropped = dedupe(rows, ["k"])
    assert dropped == 3
    assert kept["tag"].tolist() == ["a4", "b1"]  # unknown threads lose to any number
    assert "_t" not in kept.columns
    assert kept.index.tolist() == sorted(kept.index)


def test_dedupe_ties_keep_the_first_and_empty_passes() -> None:
    rows = pd.DataFrame({"k": [1, 1, 1], "threads": [2, 2, "2"], "tag": ["x", "y", "z"]})
    kept, dropped = dedupe(rows, ["k"])
    assert (kept["tag"].tolist(), dropped) == (["x"], 2)
    empty = rows.iloc[:0]
    assert dedupe(empty, ["k"])[1] == 0 and dedupe(empty, ["k"])[0].empty


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.one_of(st.none(), st.integers(1, 8))), max_size=20)
)
def test_dedupe_invariants(data: list[tuple[int, int, int | None]]) -> None:
    rows = pd.DataFrame(data, columns=["a", "b", "threads"])
    rows["threads"] = rows["threads"].astype("float64")
    kept, dropped = dedupe(rows, ["a", "b"])
    assert dropped == len(rows) - len(kept)
    assert not kept.duplicated(subset=["a", "b"]).any()
    assert set(map(tuple, kept[["a", "b"]].values.tolist())) == set(map(tuple, rows[["a", "b"]].values.tolist()))
    assert set(kept.index) <= set(rows.index)
    for (a, b), group in rows.groupby(["a", "b"]):
        best = group["threads"].fillna(-1).max()
        row = kept[(kept["a"] == a) & (kept["b"] == b)].iloc[0]
        assert (-1 if math.isnan(row["threads"]) else row["threads"]) == best
        first_best = group[group["threads"].fillna(-1) == best].index[0]
        assert kept[(kept["a"] == a) & (kept["b"] == b)].index[0] == first_best


def test_lab_rows_select_torch_batch1_fp32_one_per_iteration() -> None:
    entries = [
        entry("keep0", iteration=0),
        entry("keep1", iteration=1, precision="fp32", threads=1),
        entry("keep1-more-threads", iteration=1, threads=4),
        entry("onnx", iteration=2, runtime="onnxruntime"),
        entry("batch", iteration=2, batch_size=256),
        entry("batch-text", iteration=3, batch_size="1"),  # batch sizes compare as numbers
        entry("int8", iteration=2, precision="int8"),
        entry("fp16", iteration=2, precision="fp16"),
        entry("no-iteration", iteration=None),
        entry("other-method", iteration=1, method="random"),
    ]
    lab = lab_rows(benchmark_rows({"benchmarks": entries}))
    assert sorted(lab["name"]) == ["batch-text", "keep0", "keep1-more-threads", "other-method"]


def test_lab_rows_of_nothing_is_empty() -> None:
    assert lab_rows(benchmark_rows({"benchmarks": []})).empty


# ---------------------------------------------------------------- schedule
def test_schedule_frame_is_numeric_and_sorted_by_iteration() -> None:
    rows = pd.DataFrame(
        {
            "iteration": [2, 0, 1],
            "sparsity": ["0.5", 0.0, 0.3],
            "accuracy": [0.8, 0.9, "bad"],
            "latency_mean_s": [1.0, 2.0, 3.0],
            "flops": [None, None, None],
            "disk_compact_bytes": [10, 20, 30],
            "unrelated": ["x", "y", "z"],
        }
    )
    out = schedule_frame(rows, "accuracy")
    assert out["iteration"].tolist() == [0, 1, 2]
    assert out["sparsity"].tolist() == [0.0, 0.3, 0.5]
    assert out["accuracy"].iloc[:1].tolist() == [0.9] and math.isnan(out["accuracy"].iloc[1])
    assert out["disk_compact_bytes"].tolist() == [20, 30, 10]
    assert "flops" not in out and "unrelated" not in out and "neuron_sparsity" not in out  # all-NaN extras dropped
    for col in ("sparsity_model", "latency_std_s", "params_total", "params_nonzero", "disk_dense_bytes"):
        assert out[col].isna().all()  # absent columns come back as NaN
    assert all(pd.api.types.is_numeric_dtype(out[c]) for c in out.columns)
    assert out.index.tolist() == [0, 1, 2]


def test_schedule_frame_uses_the_named_metric() -> None:
    rows = pd.DataFrame({"iteration": [0, 1], "wer": [0.2, 0.3], "accuracy": [0.9, 0.8]})
    out = schedule_frame(rows, "wer")
    assert out["wer"].tolist() == [0.2, 0.3] and "accuracy" not in out


# ---------------------------------------------------------------- missing notes
def notes_of(bench: dict[str, Any]) -> list[str]:
    return missing_notes(bench, benchmark_rows(bench))


def test_complete_run_has_no_notes() -> None:
    assert notes_of({"benchmarks": [entry(stats=STATS), entry(stats=STATS, iteration=1)]}) == []


def test_notes_name_a_missing_list_and_an_empty_run() -> None:
    notes = notes_of({})
    assert any("no `benchmarks` list" in n for n in notes)
    assert any("No benchmark entries" in n for n in notes)
    assert notes_of({"benchmarks": []}) == [n for n in notes if "No benchmark entries" in n]


def test_notes_count_skipped_entries_and_missing_stats() -> None:
    notes = notes_of({"benchmarks": [entry(stats=STATS), entry(), "junk", 7]})
    assert any(n.startswith("2 benchmark entries were not objects") for n in notes)
    assert any(n.startswith("1 of 2 entries have no timing stats") for n in notes)


def test_notes_name_each_missing_key_and_the_metric() -> None:
    bare = entry(stats=STATS)
    for key in ("seed", "threads", "accuracy"):
        del bare["extra_info"][key]
    notes = notes_of({"benchmarks": [bare, entry(stats=STATS)]})
    text = " ".join(n for n in notes if n.startswith("Entries lacking"))
    assert "`seed` (1)" in text and "`threads` (1)" in text
    assert "`accuracy`" not in text  # named as the metric instead
    assert "the metric (accuracy, wer, ...)` (1)" in text


def test_a_wer_row_does_not_lack_accuracy() -> None:
    e = entry(stats=STATS, wer=0.2)
    del e["extra_info"]["accuracy"]
    assert notes_of({"benchmarks": [e]}) == []


def test_notes_name_untabled_and_reduced_precision_rows() -> None:
    notes = notes_of({"benchmarks": [entry(stats=STATS, method=None), entry(stats=STATS, precision="int8")]})
    assert any(n.startswith("1 entries lack dataset/model/method/iteration") for n in notes)
    assert any(n.startswith("1 entries at reduced precision") for n in notes)


# ---------------------------------------------------------------- session
def test_bench_from_a_session_without_the_plugin() -> None:
    session = SimpleNamespace(config=SimpleNamespace())
    bench = bench_from_session(session)
    assert bench["benchmarks"] == [] and bench["machine_info"] == {} and bench["commit_info"] == {}
    assert bench["version"] is None
    assert datetime.fromisoformat(bench["datetime"]).tzinfo is not None
    assert benchmark_rows(bench).empty


def test_bench_from_a_session_uses_the_plugin_hooks() -> None:
    calls: dict[str, Any] = {}

    class Hook:
        def pytest_benchmark_generate_commit_info(self, config: Any) -> dict:
            calls["commit"] = config
            return {"id": "abc"}

        def pytest_benchmark_generate_json(self, **kwargs: Any) -> dict:
            calls["json"] = kwargs
            return {"benchmarks": ["made"], "machine_info": kwargs["machine_info"]}

    benchmarks = [object(), object()]
    bs = SimpleNamespace(benchmarks=benchmarks, get_machine_info=lambda: {"cpu": "fake"})
    config = SimpleNamespace(_benchmarksession=bs, hook=Hook())
    bench = bench_from_session(SimpleNamespace(config=config))
    assert bench == {"benchmarks": ["made"], "machine_info": {"cpu": "fake"}}
    assert calls["commit"] is config
    kwargs = calls["json"]
    assert kwargs["config"] is config and kwargs["benchmarks"] is benchmarks
    assert kwargs["include_data"] is False
    assert kwargs["machine_info"] == {"cpu": "fake"} and kwargs["commit_info"] == {"id": "abc"}


def test_runtime_table_puts_runtimes_and_thread_counts_side_by_side() -> None:
    from prunelib.report.rows import runtime_table

    def row(runtime: str, threads: int, iteration: int, median: float, batch: int = 1) -> dict:
        return {"runtime": runtime, "threads": threads, "batch_size": batch, "method": "no-retrain",
                "iteration": iteration, "sparsity": 0.5 * iteration, "latency_median_s": median, "precision": "fp32"}  # fmt: skip

    rows = pd.DataFrame(
        [row("torch", 1, 0, 30e-6), row("executorch", 1, 0, 20e-6), row("executorch", 4, 0, 8e-6),
         row("onnxruntime", 1, 1, 15e-6), row("torch", 1, 0, 1.0, batch=256), row("compact-load", 1, 0, 1.0)]
    )  # fmt: skip
    table = runtime_table(rows)
    assert list(table.columns) == ["method", "iteration", "Sparsity (%)", "executorch / 1t", "executorch / 4t",
                                   "onnxruntime / 1t", "torch / 1t"]  # fmt: skip
    first = table.iloc[0]
    assert (first["torch / 1t"], first["executorch / 1t"], first["executorch / 4t"]) == (30.0, 20.0, 8.0)
    assert runtime_table(rows[rows["batch_size"] == 256]).empty


# ---------------------------------------------------------------- JSON without medians
def test_json_without_medians_still_renders_its_means_and_says_so(tmp_path) -> None:
    from prunelib.report.writer import write_run_report
    from tests.report.test_writer import make_bench, make_sweep

    bench = make_bench(make_sweep(methods=("imp-rewind",), iterations=3, runtimes=("torch",), batches=(1,)))
    for e in bench["benchmarks"]:
        for key in ("median", "iqr", "q1", "q3"):
            del e["stats"][key]
    rows = benchmark_rows(bench)
    assert rows["latency_median_s"].isna().all() and rows["has_stats"].all()
    assert any(n.startswith("3 timed entries have no median latency") for n in missing_notes(bench, rows))
    readme = (write_run_report(bench, tmp_path) / "README.md").read_text()
    assert "Latency, mean (s)" in readme and "Latency std (s)" in readme and "(means; no interval)" in readme
    assert "3 timed entries have no median latency" in readme


def test_the_lab_schedule_carries_the_median_its_iqr_and_rounds() -> None:
    stats = {"mean": 2e-3, "stddev": 1e-3, "median": 1.5e-3, "iqr": 2e-4, "rounds": 30}
    frame = schedule_frame(benchmark_rows({"benchmarks": [entry(stats=stats)]}), "accuracy")
    assert (frame.loc[0, ["latency_median_s", "latency_iqr_s", "rounds"]] == [1.5e-3, 2e-4, 30]).all()
