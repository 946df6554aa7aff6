"""Pruning schedules — when to prune, rewind and retrain — and the sweep that measures each step.

A schedule reads like the algorithm: train dense; then N times prune → (rewind) → (retrain).
Unstructured schedules prune single weights; structured ones prune whole hidden neurons (L2 norm
of their weight row, :mod:`prunelib.pruning.structured`), which are then physically removed on deploy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from prunelib.config import MeasureConfig, PruneConfig, RunConfig, TrainConfig
from prunelib.deploy.runtimes import deploy, make_runner, time_calls
from prunelib.families.mlp.data import Split, Splits, load_data
from prunelib.families.mlp.models import MLP, ModelSpec, count_parameters, prunable_parameters
from prunelib.families.mlp.train import evaluate, init_model, train
from prunelib.measure.flops import count_flops
from prunelib.progress import progress
from prunelib.pruning.criteria import Params, get_criterion, initial_state, rewind
from prunelib.pruning.sparsity import count_nonzero, sparsity_report
from prunelib.pruning.structured import hidden_linears, hidden_parameters, neuron_prune, neurons_remaining, shrink
from prunelib.results.tables import SWEEP_COLUMNS
from prunelib.storage.compact import compact_stats, model_tensors
from prunelib.storage.lab import disk_dense_bytes, disk_sparse_bytes

#: Criteria of structured schedules: they prune whole rows of :func:`~prunelib.pruning.structured.hidden_parameters`.
STRUCTURED_CRITERIA: dict[str, Callable[[Params, float, int], None]] = {"l2-neuron": neuron_prune}


@dataclass(frozen=True)
class Schedule:
    """Which criterion prunes, and whether survivors are rewound to init and retrained after each step.

    ``structured``: the criterion removes whole hidden neurons (one of
    :data:`STRUCTURED_CRITERIA`), and deployment shrinks the model physically.
    """

    name: str
    criterion: str
    rewind: bool
    retrain: bool
    structured: bool = False


SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in (
        Schedule("no-retrain", "magnitude", rewind=False, retrain=False),
        Schedule("imp-rewind", "magnitude", rewind=True, retrain=True),
        Schedule("imp-finetune", "magnitude", rewind=False, retrain=True),
        Schedule("random", "random", rewind=False, retrain=False),
        Schedule("structured-no-retrain", "l2-neuron", rewind=False, retrain=False, structured=True),
        Schedule("structured-imp-rewind", "l2-neuron", rewind=True, retrain=True, structured=True),
        Schedule("structured-imp-finetune", "l2-neuron", rewind=False, retrain=True, structured=True),
    )
}


def get_schedule(name: str) -> Schedule:
    """The schedule called ``name``; ``ValueError`` lists the known ones."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown method {name!r}; choose one of {list(SCHEDULES)}")
    return SCHEDULES[name]


def model_spec(model: str, splits: Splits) -> ModelSpec:
    """The :class:`ModelSpec` for preset ``model`` on ``splits``' shapes."""
    return ModelSpec(model, splits.in_features, splits.num_classes, splits.vocab_size)


def train_dense(
    spec: ModelSpec,
    splits: Splits,
    train_cfg: TrainConfig,
    seed: int,
    initial: Mapping[str, torch.Tensor] | None = None,
) -> tuple[MLP, dict[str, torch.Tensor]]:
    """Initialise (from ``seed``, or ``initial`` if given), save the initial weights, then train.

    Returns the trained model and the initial weights IMP rewinds to.
    """
    model = init_model(spec, seed)
    if initial is not None:
        rewind(model, initial)
    init = initial_state(model)
    train(model, splits.train, train_cfg, seed, desc="train dense")
    return model, init


def prune_step(model: nn.Module, schedule: Schedule, amount: float, seed: int) -> None:
    """One pruning step of ``schedule``: ``amount`` of what remains, by its criterion, in place.

    Unstructured schedules prune :func:`~prunelib.families.mlp.models.prunable_parameters`; structured ones
    the rows of :func:`~prunelib.pruning.structured.hidden_parameters` (``model`` must be a prunelib MLP).
    """
    if schedule.structured:
        if schedule.criterion not in STRUCTURED_CRITERIA:
            raise ValueError(
                f"unknown structured criterion {schedule.criterion!r}; choose one of {sorted(STRUCTURED_CRITERIA)}"
            )
        STRUCTURED_CRITERIA[schedule.criterion](hidden_parameters(model), amount, seed)
    else:
        get_criterion(schedule.criterion)(prunable_parameters(model), amount, seed)


def iterate_schedule(
    model: nn.Module,
    initial: Mapping[str, torch.Tensor],
    train_split: Split,
    schedule: Schedule,
    prune_cfg: PruneConfig,
    train_cfg: TrainConfig,
    seed: int,
) -> Iterator[tuple[int, nn.Module]]:
    """Yield ``(0, model)`` then, after each of ``prune_cfg.iterations`` steps, ``(k, model)``.

    Mutates ``model`` in place (one model walks the whole schedule); copy what you keep.
    Each step is :func:`prune_step`; masks only ever lose entries.
    """
    yield 0, model
    for k in range(1, prune_cfg.iterations + 1):
        prune_step(model, schedule, prune_cfg.amount, seed + k)
        if schedule.rewind:
            rewind(model, initial)
        if schedule.retrain:
            train(model, train_split, train_cfg, seed + k, desc=f"retrain {k}")
        yield k, model


def neuron_sparsity(model: nn.Module) -> float:
    """Fraction of hidden neurons that are dead (all weights and bias zero); NaN if not an MLP."""
    if not isinstance(model, MLP):
        return math.nan
    total = sum(m.out_features for _, m in hidden_linears(model))
    return 1.0 - sum(neurons_remaining(model).values()) / total if total else 0.0


def static_metrics(
    model: nn.Module, splits: Splits, cfg: MeasureConfig, structured: bool = False
) -> dict[str, float | int | str]:
    """Everything measured without a clock, for ``model`` deployed at ``cfg.precision``.

    Keys, in order: ``sparsity``, ``sparsity_model`` (zeros of the pruned model's effective
    weights, :mod:`prunelib.pruning.sparsity`), ``accuracy`` (on ``splits.test``, of
    ``deploy(model, structured, cfg.precision)`` run by torch), ``params_total``,
    ``params_nonzero``, ``disk_dense_bytes``, ``disk_sparse_bytes`` (the lab's fp32 figures of
    the pruned model, :mod:`prunelib.storage.lab`), ``disk_compact_bytes`` and ``disk_bound_bytes``
    (:func:`prunelib.storage.compact.compact_stats` of the model's tensors at ``cfg.precision``; for
    ``structured``, of the physically shrunk model), ``flops`` (multiply-adds of the deployed
    model on one test row, :func:`prunelib.measure.flops.count_flops`), ``neuron_sparsity``
    (:func:`neuron_sparsity`) and ``precision``. Independent of ``cfg.runtime``.
    Never changes ``model``.
    """
    deployed = deploy(model, structured, cfg.precision)
    row = {
        **size_metrics(model, shrink(model) if structured else model, cfg.precision),
        "accuracy": evaluate(deployed, splits.test),
        "flops": count_flops(deployed, splits.test.x[:1]),
        "neuron_sparsity": neuron_sparsity(model),
        "precision": cfg.precision,
    }
    return {k: row[k] for k in SWEEP_COLUMNS if k in row}


def size_metrics(model: nn.Module, stored: nn.Module, precision: str) -> dict[str, float | int]:
    """Sparsity, parameter counts and sizes of a pruned model, for every sweep (Part I and speech).

    Keys: ``sparsity``, ``sparsity_model``, ``params_total``, ``params_nonzero``,
    ``disk_dense_bytes``, ``disk_sparse_bytes`` (the lab's figures, of ``model``), then
    ``disk_compact_bytes`` and ``disk_bound_bytes`` (:func:`prunelib.storage.compact.compact_stats` at
    ``precision`` of ``stored``, the model as shipped, e.g. shrunk). Changes neither model.
    """
    report = sparsity_report(model)
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


def measure(
    model: nn.Module, splits: Splits, cfg: MeasureConfig, structured: bool = False
) -> dict[str, float | int | str]:
    """:func:`static_metrics` plus latency (mean, std) at batch ``cfg.batch_size`` on ``cfg.runtime``.

    Keys in the sweep's column order, :data:`prunelib.results.tables.SWEEP_COLUMNS` without
    ``iteration``. The runner is :func:`~prunelib.deploy.runtimes.make_runner` of the model deployed at
    ``cfg.precision`` (shrunk when ``structured``). Never changes ``model``.
    """
    static = static_metrics(model, splits, cfg, structured)
    x = splits.test.x[: cfg.batch_size]
    runner = make_runner(  # parity-checked on 64 test rows, or the timed batch if larger
        model,
        cfg.runtime,
        splits.test.x[: max(64, cfg.batch_size)],
        cfg.threads,
        structured=structured,
        precision=cfg.precision,
        batch_size=cfg.batch_size,
    )
    mean, std = time_calls(runner, x, cfg.runs, cfg.warmup)
    timed = {"latency_mean_s": mean, "latency_std_s": std}
    row = {**static, **timed}
    return {k: row[k] for k in SWEEP_COLUMNS[1:]}


def run_sweep(
    cfg: RunConfig,
    splits: Splits | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> pd.DataFrame:
    """Train dense, run ``cfg.prune.method`` and measure every iteration: one row per iteration 0..N.

    Columns: :data:`prunelib.results.tables.SWEEP_COLUMNS`; structured methods are measured shrunk.

    ``on_step(k, model)`` is called at each step (e.g. to save checkpoints).
    """
    schedule = get_schedule(cfg.prune.method)
    splits = splits if splits is not None else load_data(cfg.data)
    model, init = train_dense(model_spec(cfg.model, splits), splits, cfg.train, cfg.seed, initial)
    rows = []
    steps = iterate_schedule(model, init, splits.train, schedule, cfg.prune, cfg.train, cfg.seed)
    for k, current in progress(steps, desc=schedule.name, total=cfg.prune.iterations + 1):
        if on_step is not None:
            on_step(k, current)
        rows.append({"iteration": k, **measure(current, splits, cfg.measure, schedule.structured)})
    return pd.DataFrame(rows)
