"""Noise-aware compare: seeds' intervals for accuracy/WER, Welch or Mann-Whitney for latency, p-values shown."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prunelib.report import compare, noise
from tests.report.test_writer import make_bench, make_entry, make_stats

KEY = "mnist5k/lenet300/imp-rewind/it02/torch/b1/fp32"


def entry(seed: int = 0, accuracy: float = 0.975, latency_s: float = 1e-3, **stats: Any) -> dict[str, Any]:
    e = make_entry(iteration=2, metric_value=accuracy, latency_s=latency_s, extra={"seed": seed})
    e["stats"].update(stats)
    return e


def bench(*entries: dict[str, Any]) -> dict[str, Any]:
    return make_bench(list(entries))


def seeds(*accuracies: float) -> dict[str, Any]:
    return bench(*(entry(seed=i, accuracy=a) for i, a in enumerate(accuracies)))


def row(result: compare.CompareResult) -> pd.Series:
    return result.changes.set_index("key").loc[KEY]


# ---------------------------------------------------------------- latency
def test_a_clear_slow_down_is_flagged_with_welchs_test_and_its_p_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, slow = bench(entry(latency_s=1e-3)), bench(entry(latency_s=1.5e-3))
    result = compare.compare_runs([base, slow])
    r = row(result)
    assert r["latency_test"] == "Welch t" and r["latency_p_value"] < 1e-10
    (line,) = result.regressions
    assert line.startswith(f"{KEY}: median latency +50.0%") and line.endswith(f"Welch t p={r['latency_p_value']:.2g}")
    paths = []
    for i, b in enumerate((base, slow)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(b))
    assert compare.main([str(p) for p in paths]) == 1
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| key"))
    assert "latency test" in header and "latency p" in header and "metric test" not in header
    assert "| Welch t " in out and "REGRESSION" in out and "Welch t p=" in out


def test_a_median_past_the_threshold_within_a_large_stddev_is_noise() -> None:
    """+50 % median, IQRs small (the IQR rule alone would flag it), but few rounds with a large stddev."""
    noisy = {"stddev": 3e-3, "rounds": 5, "iqr": 1e-6}
    base, slow = bench(entry(latency_s=1e-3, **noisy)), bench(entry(latency_s=1.5e-3, **noisy))
    result = compare.compare_runs([base, slow])
    r = row(result)
    assert r["latency_change_pct"] == pytest.approx(50.0) and r["latency_noise_s"] < 1e-5
    assert result.ok and r["latency_test"] == "Welch t" and r["latency_p_value"] > 0.05
    assert any("within the timing noise (Welch t p=" in n for n in result.notes), result.notes
    tight = bench(entry(latency_s=1.5e-3, stddev=3e-6, rounds=5000, iqr=1e-6))
    loose_base = bench(entry(latency_s=1e-3, stddev=3e-6, rounds=5000, iqr=1e-6))
    assert not compare.compare_runs([loose_base, tight]).ok  # the same medians with little noise: flagged


def rounds(median_s: float, n: int, seed: int) -> list[float]:
    return list(np.random.default_rng(seed).lognormal(math.log(median_s), 0.2, n))


def test_saved_rounds_are_compared_with_mann_whitney() -> None:
    base = bench(entry(latency_s=1e-3, data=rounds(1e-3, 200, 1)))
    slow = bench(entry(latency_s=1.5e-3, data=rounds(1.5e-3, 200, 2)))
    result = compare.compare_runs([base, slow])
    assert row(result)["latency_test"] == "Mann-Whitney U" and not result.ok
    assert "Mann-Whitney U p=" in result.regressions[0]
    # the summaries say +50 %, the rounds say the same distribution: the rounds decide, nothing is flagged
    same = bench(entry(latency_s=1.5e-3, data=rounds(1e-3, 200, 3)))
    result = compare.compare_runs([base, same])
    assert result.ok and row(result)["latency_test"] == "Mann-Whitney U" and row(result)["latency_p_value"] > 0.05


def test_rounds_in_only_one_run_fall_back_to_welch() -> None:
    base = bench(entry(latency_s=1e-3, data=rounds(1e-3, 50, 1)))
    assert row(compare.compare_runs([base, bench(entry(latency_s=1.5e-3))]))["latency_test"] == "Welch t"


def test_json_without_stddev_or_rounds_is_judged_by_the_effect_size_and_says_so() -> None:
    def strip(b: dict[str, Any]) -> dict[str, Any]:
        for e in b["benchmarks"]:
            del e["stats"]["stddev"], e["stats"]["rounds"]
        return b

    result = compare.compare_runs([strip(bench(entry(latency_s=1e-3))), strip(bench(entry(latency_s=1.5e-3)))])
    assert row(result)["latency_test"] == "none" and math.isnan(row(result)["latency_p_value"])
    assert result.regressions[0].endswith("no test: rounds and stddev not saved")


def test_alpha_is_the_level_of_the_test() -> None:
    base, slow = (
        bench(entry(latency_s=1e-3, stddev=4e-4, rounds=20)),
        bench(entry(latency_s=1.3e-3, stddev=4e-4, rounds=20)),
    )
    p = row(compare.compare_runs([base, slow]))["latency_p_value"]
    assert 0.001 < p < 0.05
    assert not compare.compare_runs([base, slow], alpha=0.05).ok
    assert compare.compare_runs([base, slow], alpha=p / 2).ok
    with pytest.raises(ValueError, match="alpha"):
        compare.compare_runs([base, slow], alpha=1.5)


def test_alpha_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.main(["--help"]) == 0
    assert "--alpha" in capsys.readouterr().out
    for bad in ("0", "1", "x", "-0.1"):
        assert compare.main(["a.json", "b.json", "--alpha", bad]) == 2
        assert "significance level" in capsys.readouterr().err or bad == "x"


# ---------------------------------------------------------------- accuracy with seeds
def test_with_three_baseline_seeds_accuracy_is_flagged_only_outside_their_interval() -> None:
    base = seeds(0.97, 0.975, 0.98)  # mean 0.975, 95 % interval about 0.9626-0.9874
    inside = seeds(0.96, 0.963, 0.966)  # mean 0.963: 1.2 points down (past the 1-point threshold), inside
    result = compare.compare_runs([base, inside])
    r = row(result)
    assert result.ok and r["seeds_baseline"] == 3 and r["seeds_last"] == 3
    assert r["metric_test"] == "one-sample t (3 seeds)" and r["metric_p_value"] > 0.05
    assert r["last_metric"] == pytest.approx(0.963) and r["metric_change_points"] == pytest.approx(-1.2)
    outside = seeds(0.95, 0.955, 0.96)
    result = compare.compare_runs([base, outside])
    (line,) = result.regressions
    assert line.startswith(f"{KEY}: Accuracy -2.00 points (97.50% -> 95.50%), below the baseline's 3 seeds' 95 %")
    assert "one-sample t (3 seeds) p=" in line and row(result)["metric_p_value"] < 0.05
    tight = seeds(0.975, 0.9751, 0.9749)
    small = compare.compare_runs([tight, seeds(0.972, 0.972, 0.972)])  # 0.3 points: inside the threshold
    assert len(small.regressions) == 1 and "below the baseline's 3 seeds'" in small.regressions[0]


def test_a_better_accuracy_outside_the_interval_is_not_a_regression() -> None:
    assert compare.compare_runs([seeds(0.97, 0.975, 0.98), seeds(0.99, 0.99, 0.995)]).ok


def test_wer_with_seeds_is_flagged_above_the_interval() -> None:
    def wer_bench(*values: float) -> dict[str, Any]:
        entries = []
        for i, v in enumerate(values):
            e = make_entry(dataset="fsdd", model="speech-mlp", metric="wer", metric_value=v, extra={"seed": i})
            entries.append(e)
        return make_bench(entries)

    result = compare.compare_runs([wer_bench(0.2, 0.21, 0.22), wer_bench(0.25, 0.25, 0.26)])
    (line,) = result.regressions
    assert "WER +4.33 points" in line and "above the baseline's 3 seeds' 95 % interval" in line


def test_the_seeded_table_shows_seeds_and_the_metric_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    paths[0].write_text(json.dumps(seeds(0.97, 0.975, 0.98)))
    paths[1].write_text(json.dumps(seeds(0.95, 0.955, 0.96)))
    assert compare.main([str(p) for p in paths]) == 1
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| key"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:6] == ["key", "metric", "seeds", "change (points)", "metric test", "metric p"]
    assert "| 3 -> 3 " in out and "one-sample t (3 seeds)" in out


def test_one_baseline_seed_keeps_the_threshold() -> None:
    base = seeds(0.975)
    two_new = seeds(0.97, 0.968)  # the new run's seeds: their mean is compared
    r = row(compare.compare_runs([base, two_new]))
    assert r["metric_test"] == "threshold" and math.isnan(r["metric_p_value"]) and r["seeds_last"] == 2
    result = compare.compare_runs([base, seeds(0.96)])
    assert result.regressions == [f"{KEY}: Accuracy -1.50 points (97.50% -> 96.00%), limit -1"]


def test_per_key_takes_the_seeds_of_a_key_together_and_notes_real_duplicates() -> None:
    b = bench(entry(seed=0, accuracy=0.9, latency_s=1e-3), entry(seed=1, accuracy=0.8, latency_s=3e-3))
    table, notes = compare.run_table(b)
    r = table.loc[KEY]
    assert r["seeds"] == 2 and r["metric_value"] == pytest.approx(0.85) and r["metric_values"] == (0.9, 0.8)
    assert r["latency_mean_s"] == pytest.approx(2e-3) and r["rounds"] == 100 and not notes
    assert r["latency_std_s"] > 1e-3  # the pooled spread holds the difference between the seeds
    dup = copy.deepcopy(b)
    dup["benchmarks"].append(copy.deepcopy(dup["benchmarks"][0]))
    table, notes = compare.run_table(dup)
    assert table.loc[KEY, "seeds"] == 2 and notes == [f"run: 1 duplicate keys (kept the first), e.g. {KEY}"]


def test_old_json_keeps_comparing_by_its_saved_rounds() -> None:
    old = json.loads((Path(__file__).parent / "fixtures" / "bench-before-families.json").read_text())
    result = compare.compare_runs([old, copy.deepcopy(old)], max_latency_increase_pct=0)
    assert result.ok and set(result.changes["latency_test"]) == {"Mann-Whitney U"}
    assert set(result.changes["metric_test"]) == {"threshold"} and (result.changes["seeds_baseline"] == 1).all()
    assert not set(noise.PER_SEED_COLUMNS) & set(result.history.columns)  # no rounds in the history frame
    assert {"key", "latency_median_s", "metric_value", "seeds", "run_index"} <= set(result.history.columns)


def test_stats_helpers_of_the_table() -> None:
    assert noise.check_alpha(0.01) == 0.01
    for bad in (0, 1, True, "0.1", math.nan):
        with pytest.raises(ValueError):
            noise.check_alpha(bad)  # type: ignore[arg-type]
    assert noise.test_named("Welch t", 0.00123) == "Welch t p=0.0012"
    assert make_stats(1e-3)["rounds"] == 50  # the fixture the tests above build on
