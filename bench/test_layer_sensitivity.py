"""Which layers tolerate pruning? Layer-by-layer sensitivity of each Part-I model, in the report.

One Linear at a time is pruned by magnitude to increasing sparsity, everything else dense, from the
trained dense checkpoint; accuracy per (layer, sparsity) goes into the report's sensitivity table,
summary sentence and plot.
"""

from __future__ import annotations

import pytest

from prunelib.measure.flops import layer_costs
from prunelib.plugin.records import record_extra
from prunelib.sweep.cache import load_model
from prunelib.sweep.sensitivity import family_sensitivity

LEVELS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98)


def layer_sensitivity(suite, spec, levels, request, name: str, data=None) -> None:
    """Sensitivity of ``spec``'s trained dense checkpoint, one family group at a time, into the report.

    ``data``: what to score on (default: the sweep's data)."""
    loaded = suite.loaded(spec)
    dense = load_model(suite.sweep(spec), loaded, 0)
    table = family_sensitivity(loaded.family, dense, loaded.data if data is None else data, levels, seed=spec.seed)
    metric = loaded.family.metric.name
    dense_metric = table.loc[table["sparsity"] == 0.0, metric]
    assert (dense_metric == dense_metric.iloc[0]).all()  # every group starts from the same dense model
    assert (table.groupby("group")["group_sparsity"].max() >= levels[-1] - 1e-3).all()
    assert table["group"].nunique() >= 2
    record_extra(request.config, name, table)


def test_layer_sensitivity(pair, suite, request) -> None:
    spec = suite.specs_of(pair)[0]
    if not spec.resolve().batched:
        pytest.skip("a speech model's component sensitivity is test_speech_sensitivity")
    layer_sensitivity(suite, spec, LEVELS, request, f"sensitivity-{pair.dataset}-{pair.model}")


def test_layer_costs(sweep_spec, suite, request) -> None:
    """Multiply-adds and parameters each layer lost by the last iteration of a structured sweep, in the report."""
    if not sweep_spec.schedule.structured:
        pytest.skip(f"{sweep_spec.method} removes weights, not units: no layer gets cheaper on dense kernels")
    sweep, loaded = suite.sweep(sweep_spec), suite.loaded(sweep_spec)
    family, data = loaded.family, loaded.data
    dense = family.deploy(load_model(sweep, loaded, 0), structured=True)
    pruned = family.deploy(load_model(sweep, loaded, sweep_spec.iterations), structured=True)
    table = layer_costs(family.flops_module(dense), family.flops_module(pruned), family.example_inputs(data, 1))
    assert (table["macs_removed"] >= 0).all() and (table["params_removed"] >= 0).all()
    assert table["macs_kept"].sum() == sweep.row(sweep_spec.iterations)["flops"]
    record_extra(request.config, f"layer-costs-{sweep_spec.label}", table)
