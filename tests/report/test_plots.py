"""Figures: each builder returns a Figure with a title, unit-bearing labels and a legend; PNGs are valid."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from matplotlib.figure import Figure

from prunelib.pruning.schedules import SCHEDULES
from prunelib.report import plots
from prunelib.report.writer import benchmark_rows, lab_rows
from tests.report.test_writer import make_bench, make_entry, make_sweep


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    entries = make_sweep(
        methods=("no-retrain", "imp-rewind", "random"),
        iterations=14,
        runtimes=("torch", "onnxruntime"),
        extra={"flops": 400_000},
    )
    return benchmark_rows(make_bench(entries))


def check(fig: Figure, *, legend_has: list[str] | None = None) -> dict:
    """Title, axis labels with units and a legend are set; returns the texts."""
    assert isinstance(fig, Figure)
    texts = plots.figure_texts(fig)
    assert texts["title"]
    for ax in texts["axes"]:
        assert ax["xlabel"] and ax["ylabel"]
        assert "(" in ax["xlabel"] and "(" in ax["ylabel"], ax  # units in parentheses
    legends = texts["figure_legend"] + [t for ax in texts["axes"] for t in ax["legend"]]
    assert legends
    for wanted in legend_has or []:
        assert any(wanted in t for t in legends), (wanted, legends)
    return texts


def test_metric_vs_sparsity(rows: pd.DataFrame) -> None:
    fig = plots.metric_vs_sparsity_figure(lab_rows(rows), "accuracy", "mnist5k / lenet300")
    texts = check(fig, legend_has=["no-retrain", "imp-rewind", "random"])
    assert texts["title"] == "mnist5k / lenet300: Accuracy vs sparsity"
    assert texts["axes"][0]["ylabel"] == "Accuracy (%)"
    assert len(fig.axes[0].get_lines()) == 3  # one line per method
    assert "stretched" in texts["axes"][0]["xlabel"]  # sweep reaches > 90 %: high end spread out


def test_low_sparsity_keeps_a_linear_axis() -> None:
    lab = lab_rows(benchmark_rows(make_bench(make_sweep(iterations=4))))
    fig = plots.metric_vs_sparsity_figure(lab, "accuracy", "t")
    assert fig.axes[0].get_xscale() == "linear"


def test_wer_label() -> None:
    lab = lab_rows(benchmark_rows(make_bench(make_sweep(metric="wer", iterations=3))))
    texts = check(plots.metric_vs_sparsity_figure(lab, "wer", "fsdd"))
    assert texts["axes"][0]["ylabel"].startswith("WER (%")
    assert plots.metric_label("f1") == "F1 (%)"  # any family's metric gets a label
    assert plots.metric_label("exact_match") == "Exact match (%)"
    for bad in ("", "not a column", "f-1"):
        with pytest.raises(ValueError, match="metric must be a column name"):
            plots.metric_label(bad)


def test_metric_vs_disk_distinguishes_storage(rows: pd.DataFrame) -> None:
    fig = plots.metric_vs_disk_figure(lab_rows(rows), "accuracy", "t")
    check(fig, legend_has=["imp-rewind (COO, lab)", "imp-rewind (dense)", "imp-rewind (compact)"])
    styles = {line.get_label(): line.get_linestyle() for line in fig.axes[0].get_lines()}
    assert styles["imp-rewind (COO, lab)"] == "-" and styles["imp-rewind (dense)"] == "--"
    assert fig.axes[0].get_xscale() == "log"


def test_metric_vs_latency(rows: pd.DataFrame) -> None:
    lab = lab_rows(rows)
    fig = plots.metric_vs_latency_figure(lab, "accuracy", "t")
    texts = check(fig, legend_has=["random"])
    assert texts["axes"][0]["xlabel"] == "Latency, median per batch (ms, log scale)"
    shown = {float(x) for line in fig.axes[0].get_lines() for x in line.get_xdata()}
    assert shown == {1e3 * v for v in lab["latency_median_s"]}  # the medians, not the means


def test_latency_plots_of_json_without_medians_show_the_means(rows: pd.DataFrame) -> None:
    old = lab_rows(rows).assign(latency_median_s=float("nan"))
    fig = plots.metric_vs_latency_figure(old, "accuracy", "t")
    assert plots.figure_texts(fig)["axes"][0]["xlabel"] == "Latency, mean per batch (ms, log scale)"
    assert {float(x) for line in fig.axes[0].get_lines() for x in line.get_xdata()} == {
        1e3 * v for v in old["latency_mean_s"]
    }
    assert "means" in plots.figure_texts(plots.speedup_figure(old, "t"))["axes"][0]["title"]


def test_runtime_latency_has_both_runtimes_and_batches(rows: pd.DataFrame) -> None:
    fig = plots.runtime_latency_figure(rows, "t")
    texts = check(fig, legend_has=["imp-rewind / torch", "imp-rewind / onnxruntime"])
    assert [ax["title"] for ax in texts["axes"]] == ["batch 1 (latency)", "batch 64 (throughput)"]
    assert "median" in texts["axes"][0]["ylabel"]
    assert all(ax.collections for ax in fig.axes[:2])  # a band between the quartiles under each line


def test_speedup_and_flops(rows: pd.DataFrame) -> None:
    fig = plots.speedup_figure(lab_rows(rows), "t")
    texts = check(fig, legend_has=["imp-rewind"])
    assert len(texts["axes"]) == 2 and "FLOPs" in texts["axes"][1]["ylabel"]
    no_flops = lab_rows(benchmark_rows(make_bench(make_sweep(iterations=3))))
    assert len(plots.speedup_figure(no_flops, "t").axes) == 1


def test_disk_vs_sparsity(rows: pd.DataFrame) -> None:
    check(plots.disk_vs_sparsity_figure(lab_rows(rows), "t"), legend_has=["(dense)", "(COO, lab)", "(compact)"])


def test_sensitivity() -> None:
    frame = pd.DataFrame(
        {"group": ["fc1", "fc1", "fc2", "fc2"], "sparsity": [0, 0.5, 0, 0.5], "accuracy": [0.98, 0.9, 0.98, 0.97]}
    )
    check(plots.sensitivity_figure(frame, "accuracy", "t"), legend_has=["fc1", "fc2"])


def test_history_limits_keys_to_the_largest_changes() -> None:
    hist = pd.DataFrame(
        [
            {
                "run_index": r,
                "run_label": f"{r}: day {r}",
                "key": f"k{k}",
                "latency_median_s": 0.001 * (1 + (k == 3) * r),
                "accuracy": 0.9,
            }
            for r in range(3)
            for k in range(15)
        ]
    )
    fig = plots.history_figure(hist, "History", max_keys=4)
    texts = check(fig, legend_has=["k3"])
    assert "4 of 15 keys" in texts["title"] and len(texts["figure_legend"]) == 4


def test_empty_data_still_gives_a_labelled_figure() -> None:
    empty = benchmark_rows(make_bench([]))
    for fig in (
        plots.metric_vs_sparsity_figure(empty, "accuracy", "t"),
        plots.runtime_latency_figure(empty, "t"),
        plots.metric_vs_disk_figure(empty, "accuracy", "t"),
        plots.speedup_figure(empty, "t"),
    ):
        check(fig, legend_has=["no data"])


def test_method_style_is_stable() -> None:
    assert plots.method_style("imp-rewind") == plots.method_style("imp-rewind")
    assert plots.method_style("imp-rewind")["color"] != plots.method_style("no-retrain")["color"]
    assert plots.method_style("my-new-method") == plots.method_style("my-new-method")
    colours = [plots.method_style(m)["color"] for m in SCHEDULES]  # every built-in method its own colour
    assert len(set(colours)) == len(colours) == len(SCHEDULES)


def test_save_png_writes_a_valid_png(tmp_path: Path) -> None:
    lab = lab_rows(benchmark_rows(make_bench([make_entry(iteration=i) for i in range(3)])))
    path = plots.save_png(plots.metric_vs_sparsity_figure(lab, "accuracy", "t"), tmp_path / "sub" / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 500  # big enough to read
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]  # no temp file left
