"""Seed bands: drawn around a method's line of metric vs sparsity only when two seeds or more ran."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from prunelib.report import plots
from prunelib.report.bands import band_note, band_rows, draw_band
from prunelib.report.writer import benchmark_rows, lab_rows
from prunelib.results.seeds import mean_over_seeds
from tests.report.test_writer import make_bench, make_sweep


def seeded_rows(seeds: tuple[int, ...]) -> pd.DataFrame:
    entries = []
    for seed in seeds:
        for e in make_sweep(methods=("no-retrain", "imp-rewind"), iterations=6, runtimes=("torch",), batches=(1,)):
            e["extra_info"].update(seed=seed, accuracy=e["extra_info"]["accuracy"] + 0.004 * (seed - 1))
            entries.append(e)
    return lab_rows(benchmark_rows(make_bench(entries)))


def bands_of(fig: object) -> list[PolyCollection]:
    (ax,) = fig.get_axes()  # type: ignore[attr-defined]
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_three_seeds_draw_one_band_per_method_and_say_so() -> None:
    rows = seeded_rows((0, 1, 2))
    assert len(rows) == 2 * 6 * 3  # every seed's row stays
    fig = plots.metric_vs_sparsity_figure(rows, "accuracy", "t")
    assert len(bands_of(fig)) == 2
    (ax,) = fig.get_axes()
    assert ax.get_legend().get_title().get_text() == "method; band: 95 % t interval over 3 seeds"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["no-retrain", "imp-rewind"]
    (line, *_) = ax.get_lines()
    assert len(line.get_xdata()) == 6  # one point per iteration: the mean over seeds, not one per seed


@pytest.mark.parametrize("seeds", [(0,), (5,)])
def test_one_seed_draws_no_band(seeds: tuple[int, ...]) -> None:
    rows = seeded_rows(seeds)
    fig = plots.metric_vs_sparsity_figure(rows, "accuracy", "t")
    assert bands_of(fig) == []
    (ax,) = fig.get_axes()
    assert ax.get_legend().get_title().get_text() == "method"
    assert band_note(mean_over_seeds(rows, "accuracy")) == ""


def test_draw_band_needs_an_interval() -> None:
    rows = seeded_rows((0, 1))
    means = mean_over_seeds(rows, "accuracy")
    assert len(band_rows(means)) == len(means) and band_rows(rows).empty
    fig, (ax,) = plots.new_figure()
    assert not draw_band(ax, rows[rows["method"] == "imp-rewind"], "C0")
    assert draw_band(ax, means[means["method"] == "imp-rewind"], "C0")
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert band.get_label() == "_band"
    assert band_note(means) == "; band: 95 % t interval over 2 seeds"


def test_other_figures_show_one_point_per_iteration() -> None:
    fig = plots.metric_vs_latency_figure(seeded_rows((0, 1, 2)), "accuracy", "t")
    (ax,) = fig.get_axes()
    assert all(len(line.get_xdata()) == 6 for line in ax.get_lines())
