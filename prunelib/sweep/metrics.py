"""What a checkpoint measures without a clock: the family's metric, sparsity, sizes, FLOPs.

One row per checkpoint, for every family: the columns of :func:`prunelib.results.schema.sweep_columns`
but ``iteration`` and latency, with the family's metric names.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from prunelib.deploy.runtimes import at_precision
from prunelib.families.contract import Family, Params
from prunelib.measure.flops import count_flops
from prunelib.pruning.params import count_parameters
from prunelib.pruning.sparsity import count_nonzero, sparsity_report
from prunelib.storage.compact import compact_stats
from prunelib.storage.lab import disk_dense_bytes, disk_sparse_bytes
from prunelib.storage.modelfile import model_tensors


def size_metrics(model: nn.Module, stored: nn.Module, precision: str, prunable: Params | None = None) -> dict[str, Any]:
    """Sparsity, parameter counts and sizes of a pruned model.

    Keys: ``sparsity`` (over ``prunable``), ``sparsity_model``, ``params_total``,
    ``params_nonzero``, ``disk_dense_bytes``, ``disk_sparse_bytes`` (the lab's figures, of
    ``model``), then ``disk_compact_bytes`` and ``disk_bound_bytes``
    (:func:`prunelib.storage.compact.compact_stats` at ``precision`` of ``stored``, the model as
    shipped, e.g. shrunk). Changes neither model.
    """
    report = sparsity_report(model, prunable)
    stats = compact_stats(model_tensors(stored), precision)
    return {
        "sparsity": report.sparsity,
        "sparsity_model": report.sparsity_model,
        "params_total": count_parameters(model),
        "params_nonzero": count_nonzero(model),
        "disk_dense_bytes": disk_dense_bytes(model),
        "disk_sparse_bytes": disk_sparse_bytes(model),
        "disk_compact_bytes": stats.disk_compact_bytes,
        "disk_bound_bytes": stats.disk_bound_bytes,
    }


def static_metrics(
    family: Family,
    model: nn.Module,
    data: Any,
    structured: bool = False,
    precision: str = "fp32",
    embeddings: bool = False,
) -> dict[str, Any]:
    """Everything measured without a clock for ``model`` deployed at ``precision``. Never changes ``model``.

    The family's metrics (``family.evaluate`` of the deployed model at ``precision``), the
    sizes of :func:`size_metrics` (compact size of the shrunk model when ``structured``),
    ``params_deployed``, ``flops`` (multiply-adds of the deployed model on one example, :meth:`Family.flops_module`),
    ``neuron_sparsity`` (``family.unit_sparsity``) and ``precision``.

    Raises:
        ValueError: the family's evaluation lacks its primary metric or returns it out of range.
    """
    deployed = family.deploy(model, structured)
    runs = at_precision(deployed, precision, family, data)
    scores = family.evaluate(runs, data)
    name = family.metric.name
    if name not in scores:
        raise ValueError(f"family {family.name!r}: evaluate() returned {sorted(scores)}, not its metric {name!r}")
    if not family.metric.in_range(float(scores[name])):
        raise ValueError(
            f"family {family.name!r}: {name} = {scores[name]!r} outside [{family.metric.low}, {family.metric.high}]"
        )
    return {
        **size_metrics(model, deployed if structured else model, precision, family.prunable(model, embeddings)),
        **{k: float(v) for k, v in scores.items()},
        "params_deployed": count_parameters(deployed),
        "flops": count_flops(family.flops_module(deployed), family.example_inputs(data, 1)),  # at any precision
        "neuron_sparsity": family.unit_sparsity(model),
        "precision": precision,
    }
