"""The per-layer cost chart: which extras get it, what it needs, and what it draws."""

from __future__ import annotations

import pandas as pd
import pytest

from prunelib.report import writer
from prunelib.report.layers import check_layer_costs, is_layer_costs, layer_costs_figure
from prunelib.report.plots import figure_texts

COSTS = pd.DataFrame(
    {
        "layer": ["conv1", "conv2", "fc"],
        "macs_dense": [1000, 4000, 100],
        "macs_kept": [500, 1000, 50],
        "macs_removed": [500, 3000, 50],
        "params_dense": [90, 400, 100],
        "params_kept": [45, 100, 50],
        "params_removed": [45, 300, 50],
    }
)


def test_names_that_get_a_chart() -> None:
    assert is_layer_costs("layer-costs") and is_layer_costs("layer-costs-fsdd-ds-cnn-structured-imp-rewind")
    assert not is_layer_costs("layer-costs2") and not is_layer_costs("sensitivity")


def test_a_table_missing_columns_is_named() -> None:
    check_layer_costs("layer-costs", COSTS)
    with pytest.raises(ValueError, match=r"extra\['layer-costs-x'\].*missing \['macs_removed'\]"):
        check_layer_costs("layer-costs-x", COSTS.drop(columns="macs_removed"))


def test_the_figure_has_a_bar_per_layer_and_the_share_removed() -> None:
    fig = layer_costs_figure(COSTS, "ds-cnn")
    macs, params = fig.axes
    assert [t.get_text() for t in macs.get_yticklabels()] == ["conv1", "conv2", "fc"]
    assert len(macs.patches) == 6 and len(params.patches) == 6  # kept and removed per layer
    texts = str(figure_texts(fig))
    assert "70% removed" in texts and "67% removed" in texts  # 3550/5100 MACs, 395/590 params


def test_the_report_draws_it_from_an_extra(tmp_path) -> None:
    folder = writer.write_run_report({"benchmarks": []}, tmp_path, extra={"layer-costs-demo": COSTS})
    assert (folder / "extras" / "layer-costs-demo.png").stat().st_size > 0
    assert "layer-costs-demo" in (folder / "README.md").read_text()
    with pytest.raises(ValueError, match="missing"):
        writer.write_run_report({"benchmarks": []}, tmp_path, extra={"layer-costs": COSTS[["layer"]]})
