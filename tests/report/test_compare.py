"""Run comparison: exit codes, named regressions, the noise rule, storage folders, bad files."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunelib.report import compare
from tests.report.test_writer import make_bench, make_entry, make_sweep


def base_run() -> dict[str, Any]:
    return make_bench(make_sweep(iterations=3, runtimes=("torch", "onnxruntime"), batches=(1, 32)))


def changed(
    bench: dict[str, Any], when: Callable[[dict[str, Any]], bool], change: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """A copy of ``bench`` with ``change`` applied to entries matching ``when``."""
    out = copy.deepcopy(bench)
    out["datetime"] = "2026-05-02T10:00:00+00:00"
    for entry in out["benchmarks"]:
        if when(entry):
            change(entry)
    return out


def is_key(
    method: str = "imp-rewind", iteration: int = 2, runtime: str = "torch", batch: int = 1
) -> Callable[[dict[str, Any]], bool]:
    def match(e: dict[str, Any]) -> bool:
        x = e["extra_info"]
        return (x["method"], x["iteration"], x["runtime"], x["batch_size"]) == (method, iteration, runtime, batch)

    return match


def slower(factor: float, iqr_s: float | None = None) -> Callable[[dict[str, Any]], None]:
    def apply(e: dict[str, Any]) -> None:
        for k in ("min", "max", "mean", "median", "q1", "q3"):
            e["stats"][k] *= factor
        if iqr_s is not None:
            e["stats"]["iqr"] = iqr_s

    return apply


def write(tmp_path: Path, *benches: dict[str, Any]) -> list[str]:
    paths = []
    for i, b in enumerate(benches):
        p = tmp_path / f"run{i}.json"
        p.write_text(json.dumps(b))
        paths.append(str(p))
    return paths


KEY = "mnist5k/lenet300/imp-rewind/it02/torch/b1/fp32"


def test_identical_runs_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.main(write(tmp_path, base_run(), base_run())) == 0
    out = capsys.readouterr().out
    assert "OK: no regressions" in out and KEY in out


def test_accuracy_drop_of_5_points_exits_1_and_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def drop(e: dict[str, Any]) -> None:
        e["extra_info"]["accuracy"] -= 0.05

    runs = write(tmp_path, base_run(), changed(base_run(), is_key(), drop))
    assert compare.main(runs) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("REGRESSION")]
    assert lines == [f"REGRESSION {KEY}: Accuracy -5.00 points (98.00% -> 93.00%), limit -1"]


def test_drop_within_threshold_passes(tmp_path: Path) -> None:
    def drop(e: dict[str, Any]) -> None:
        e["extra_info"]["accuracy"] -= 0.01  # exactly one point

    assert compare.main(write(tmp_path, base_run(), changed(base_run(), is_key(), drop))) == 0
    assert (
        compare.main(
            [*write(tmp_path, base_run(), changed(base_run(), is_key(), drop)), "--max-accuracy-drop-points", "0.5"]
        )
        == 1
    )


def test_latency_plus_50_percent_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = write(tmp_path, base_run(), changed(base_run(), is_key(runtime="onnxruntime", batch=32), slower(1.5)))
    assert compare.main(runs) == 1
    out = capsys.readouterr().out
    assert "REGRESSION mnist5k/lenet300/imp-rewind/it02/onnxruntime/b32/fp32: median latency +50.0%" in out
    assert out.count("REGRESSION") == 1


def test_small_latency_change_passes(tmp_path: Path) -> None:
    assert compare.main(write(tmp_path, base_run(), changed(base_run(), is_key(), slower(1.05)))) == 0


def test_latency_increase_within_combined_iqr_is_noise() -> None:
    noisy = changed(base_run(), is_key(), slower(1.5, iqr_s=1.0))  # huge spread in the new run
    result = compare.compare_runs([base_run(), noisy])
    assert result.ok
    row = result.changes.set_index("key").loc[KEY]
    assert row["latency_change_pct"] == pytest.approx(50.0)


def test_wer_rise_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    speech = make_bench([make_entry(dataset="fsdd", model="speech-mlp", metric="wer", iteration=i) for i in range(3)])

    def rise(e: dict[str, Any]) -> None:
        e["extra_info"]["wer"] += 0.03

    worse = changed(speech, lambda e: e["extra_info"]["iteration"] == 1, rise)
    assert compare.main(write(tmp_path, speech, worse)) == 1
    assert "fsdd/speech-mlp/imp-rewind/it01/torch/b1/fp32: WER +3.00 points" in capsys.readouterr().out
    better = changed(speech, lambda e: True, lambda e: e["extra_info"].update(wer=0.1))
    assert compare.compare_runs([speech, better]).ok  # WER falling is not a regression


def test_size_gate_is_optional() -> None:
    def grow(e: dict[str, Any]) -> None:
        e["extra_info"]["disk_sparse_bytes"] *= 2

    bigger = changed(base_run(), is_key(), grow)
    assert compare.compare_runs([base_run(), bigger]).ok
    result = compare.compare_runs([base_run(), bigger], max_size_increase_pct=0.0)
    assert result.regressions == [
        f"{KEY}: disk size +100.0% ({result_size(base_run())} MB -> {result_size(bigger)} MB), limit +0%"
    ]


def result_size(bench: dict[str, Any]) -> str:
    (e,) = [e for e in bench["benchmarks"] if is_key()(e)]
    return f"{e['extra_info']['disk_sparse_bytes'] / 1e6:.3f}"


def test_missing_rows_keys_and_stats_are_reported_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = copy.deepcopy(base_run())
    last["benchmarks"] = [e for e in last["benchmarks"] if not is_key()(e)]
    last["benchmarks"].append(make_entry(method="random"))
    for e in last["benchmarks"][:2]:
        del e["stats"]
    last["benchmarks"].append({"name": "test_odd", "extra_info": {"accuracy": 0.5}})
    assert compare.main(write(tmp_path, base_run(), last)) == 0
    out = capsys.readouterr().out
    assert f"1 keys missing from the last run: {KEY}" in out
    assert "keys new in the last run" in out and "random" in out
    assert "3 entries without timing stats" in out  # two stripped + test_odd
    assert "matched by test name" in out


def test_runs_with_no_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.main(write(tmp_path, make_bench([]), make_bench([]))) == 0
    assert "no keys in common" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('{"machine_info": {}}', "no 'benchmarks' list"),
        ("[1, 2]", "no 'benchmarks' list"),
    ],
)
def test_bad_file_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    good = write(tmp_path, base_run())[0]
    bad = tmp_path / "broken.json"
    bad.write_text(content)
    assert compare.main([good, str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(bad) in err and message in err and "\n" not in err


def test_missing_file_and_single_run_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, base_run())[0]
    assert compare.main([good, str(tmp_path / "nope.json")]) == 2
    assert str(tmp_path / "nope.json") in capsys.readouterr().err
    assert compare.main([good]) == 2
    assert "at least two runs" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert compare.main([str(tmp_path / "empty")]) == 2


def test_storage_folder_is_taken_in_counter_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    machine = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    machine.mkdir(parents=True)
    bad = changed(base_run(), is_key(), lambda e: e["extra_info"].update(accuracy=0.5))
    # written out of order on purpose; 0001 is the baseline, 0003 the last
    (machine / "0003_ccc_20260503_100000.json").write_text(json.dumps(bad))
    (machine / "0001_aaa_20260501_100000.json").write_text(json.dumps(base_run()))
    (machine / "0002_bbb_20260502_100000.json").write_text(json.dumps(base_run()))
    files = compare.find_run_files([tmp_path / ".benchmarks"])
    assert [f.name[:4] for f in files] == ["0001", "0002", "0003"]
    assert compare.main([str(tmp_path / ".benchmarks")]) == 1
    out = capsys.readouterr().out
    assert "baseline: 0001_aaa_20260501_100000.json" in out and "(3 runs)" in out and KEY in out


def test_history_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = write(tmp_path, base_run(), changed(base_run(), is_key(), slower(1.02)), base_run())
    png = tmp_path / "plots" / "history.png"
    assert compare.main([*runs, "--history-plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = compare.compare_runs([json.loads(Path(r).read_text()) for r in runs])
    assert sorted(result.history["run_index"].unique()) == [0, 1, 2]


def test_history_plot_on_a_directory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 (bad input), never 1 (compare's "regression"), before any run is read; the folder is untouched."""
    runs = write(tmp_path, base_run(), base_run())
    folder = tmp_path / "plots"
    folder.mkdir()
    assert compare.main([*runs, "--history-plot", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "--history-plot" in err and str(folder) in err and "directory" in err
    assert list(folder.iterdir()) == []


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m prunelib compare")
    for option in (
        "--max-accuracy-drop-points",
        "--max-wer-rise-points",
        "--max-latency-increase-pct",
        "--max-size-increase-pct",
        "--history-plot",
        "interquartile",
    ):
        assert option in out


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.main(["a.json", "b.json", "--max-latency-increase-pct", "-5"]) == 2
    assert ">= 0" in capsys.readouterr().err


def test_compare_runs_validates() -> None:
    with pytest.raises(ValueError, match="got 1"):
        compare.compare_runs([base_run()])
    with pytest.raises(ValueError, match="max_latency_increase_pct.*-1"):
        compare.compare_runs([base_run(), base_run()], max_latency_increase_pct=-1)
    with pytest.raises(ValueError, match="labels"):
        compare.compare_runs([base_run(), base_run()], labels=["one"])


@settings(max_examples=25, deadline=None)
@given(
    accuracies=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
    latencies=st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=5),
)
def test_a_run_never_regresses_against_itself(accuracies: list[float], latencies: list[float]) -> None:
    entries = [
        make_entry(iteration=i, metric_value=a, latency_s=latencies[i % len(latencies)])
        for i, a in enumerate(accuracies)
    ]
    bench = make_bench(entries)
    result = compare.compare_runs([bench, copy.deepcopy(bench)], max_accuracy_drop_points=0, max_latency_increase_pct=0)
    assert result.ok and len(result.changes) == len(entries)


# ---------------------------------------------------------------- JSON saved before families (no ``metric`` key)
OLD_JSON = Path(__file__).resolve().parent / "fixtures" / "bench-before-families.json"
OLD_KEY = "mnist5k/lenet300/imp-rewind/it02/torch/b1/fp32"
REPO = Path(__file__).resolve().parents[2]


def old_run() -> dict[str, Any]:
    bench = json.loads(OLD_JSON.read_text(encoding="utf-8"))
    assert len(bench["benchmarks"]) == 18
    assert all("metric" not in e["extra_info"] and "accuracy" in e["extra_info"] for e in bench["benchmarks"])
    return bench


def old_key(e: dict[str, Any]) -> bool:
    return compare.key_of(e["extra_info"]) == OLD_KEY


def test_old_json_compared_with_itself_has_no_regressions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = compare.compare_runs([old_run(), old_run()], max_accuracy_drop_points=0, max_latency_increase_pct=0)
    assert result.ok and len(result.changes) == 18 and not result.notes
    assert set(result.changes["metric"]) == {"accuracy"} and (result.changes["metric_change_points"] == 0).all()
    assert OLD_KEY in set(result.changes["key"])
    assert compare.main([str(OLD_JSON), str(OLD_JSON)]) == 0
    out = capsys.readouterr().out
    assert "OK: no regressions" in out and OLD_KEY in out and "REGRESSION" not in out


def test_old_json_with_accuracy_5_points_lower_on_one_key_exits_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    worse = changed(old_run(), old_key, lambda e: e["extra_info"].update(accuracy=e["extra_info"]["accuracy"] - 0.05))
    assert sum(old_key(e) for e in worse["benchmarks"]) == 1
    runs = write(tmp_path, old_run(), worse)
    assert compare.main(runs) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("REGRESSION")]
    assert lines == [f"REGRESSION {OLD_KEY}: Accuracy -5.00 points (94.20% -> 89.20%), limit -1"]
    assert compare.main([*runs, "--max-accuracy-drop-points", "5.5"]) == 0


def test_python_dash_m_prunelib_compare_reads_old_json(tmp_path: Path) -> None:
    worse = changed(old_run(), old_key, lambda e: e["extra_info"].update(accuracy=e["extra_info"]["accuracy"] - 0.05))
    same = subprocess.run(
        [sys.executable, "-m", "prunelib", "compare", str(OLD_JSON), str(OLD_JSON)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert same.returncode == 0, same.stderr
    assert "OK: no regressions" in same.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "prunelib", "compare", *write(tmp_path, old_run(), worse)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    regressions = [line for line in proc.stdout.splitlines() if line.startswith("REGRESSION")]
    assert len(regressions) == 1 and OLD_KEY in regressions[0] and "-5.00 points" in regressions[0]
    assert "Traceback" not in proc.stderr


def as_new_style_wer(e: dict[str, Any], wer: float = 0.2) -> None:
    """An entry written after the change: it names its metric (WER, lower is better)."""
    x = e["extra_info"]
    del x["accuracy"]
    x.update(family="sew", metric="wer", higher_is_better=False, wer=wer)


def test_a_new_style_entry_is_judged_by_the_wer_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = changed(old_run(), old_key, as_new_style_wer)
    rise = changed(base, old_key, lambda e: e["extra_info"].update(wer=0.23))
    result = compare.compare_runs([base, rise], max_accuracy_drop_points=0)
    row = result.changes.set_index("key").loc[OLD_KEY]
    assert row["metric"] == "wer" and row["metric_change_points"] == pytest.approx(3.0)
    assert result.regressions == [f"{OLD_KEY}: WER +3.00 points (20.00% -> 23.00%), limit +1"]
    assert set(result.changes["metric"]) == {"accuracy", "wer"}  # the 17 old entries stay accuracy
    # the WER limit decides, not the accuracy one
    assert compare.compare_runs([base, rise], max_wer_rise_points=3.5, max_accuracy_drop_points=0).ok
    assert not compare.compare_runs([base, rise], max_wer_rise_points=2.5, max_accuracy_drop_points=10).ok
    fall = changed(base, old_key, lambda e: e["extra_info"].update(wer=0.05))
    assert compare.compare_runs([base, fall], max_wer_rise_points=0, max_accuracy_drop_points=0).ok  # WER falling
    runs = write(tmp_path, base, rise)
    assert compare.main(runs) == 1
    assert f"REGRESSION {OLD_KEY}: WER +3.00 points" in capsys.readouterr().out
    assert compare.main([*runs, "--max-wer-rise-points", "3.5"]) == 0


def test_a_new_style_entry_compared_with_the_old_json_keeps_the_old_metric_rule() -> None:
    """An old accuracy baseline against entries that now name their metric: still matched and compared."""

    def name_accuracy(e: dict[str, Any]) -> None:
        e["extra_info"].update(family="mlp", metric="accuracy", higher_is_better=True)

    new = changed(old_run(), lambda e: True, name_accuracy)
    assert compare.compare_runs([old_run(), new], max_accuracy_drop_points=0).ok
    drop = changed(new, old_key, lambda e: e["extra_info"].update(accuracy=e["extra_info"]["accuracy"] - 0.02))
    result = compare.compare_runs([old_run(), drop])
    assert len(result.regressions) == 1 and result.regressions[0].startswith(f"{OLD_KEY}: Accuracy -2.00 points")


def test_a_slower_run_on_a_throttled_board_is_not_a_regression() -> None:
    from prunelib.report.compare import compare_runs

    base = make_bench([make_entry(latency_s=1e-3)])
    hot = make_bench([make_entry(latency_s=2e-3, extra={"throttled": True})])
    result = compare_runs([base, hot], max_latency_increase_pct=10)
    assert not result.regressions, result.regressions
    assert any("throttled" in n and "not called a regression" in n for n in result.notes), result.notes
    cool = make_bench([make_entry(latency_s=2e-3, extra={"throttled": False})])
    assert compare_runs([base, cool], max_latency_increase_pct=10).regressions  # the same change, cool: flagged
