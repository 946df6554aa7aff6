"""Which layers tolerate pruning? Layer-by-layer sensitivity of each Part-I model, in the report.

One Linear at a time is pruned by magnitude to increasing sparsity, everything else dense, from the
trained dense checkpoint; accuracy per (layer, sparsity) goes into the report's sensitivity table,
summary sentence and plot.
"""

from __future__ import annotations

from prunelib.families.mlp.train import evaluate
from prunelib.plugin.records import record_extra
from prunelib.sweep.cache import load_model
from prunelib.sweep.sensitivity import mlp_groups, sensitivity

LEVELS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98)


def test_layer_sensitivity(pair, suite, request) -> None:
    spec = next(s for s in suite.specs if (s.data.name, s.model) == pair)
    splits = suite.splits(spec)
    dense = load_model(suite.sweep(spec), splits, 0)
    table = sensitivity(dense, mlp_groups(dense), lambda m: evaluate(m, splits.test), LEVELS, seed=spec.seed)
    dense_accuracy = table.loc[table["sparsity"] == 0.0, "accuracy"]
    assert (dense_accuracy == dense_accuracy.iloc[0]).all()  # every group starts from the same dense model
    assert (table.groupby("group")["group_sparsity"].max() >= LEVELS[-1] - 1e-3).all()
    record_extra(request.config, f"sensitivity-{pair[0]}-{pair[1]}", table)
