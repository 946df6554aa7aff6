"""Pruning schedules — when to prune, rewind and retrain — and the sweep that measures each step.

A schedule reads like the algorithm: train dense; then N times prune → (rewind) → (retrain).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

import pandas as pd
import torch
from torch import nn

from prunelib.config import MeasureConfig, PruneConfig, RunConfig, TrainConfig
from prunelib.data import Split, Splits, load_data
from prunelib.models import MLP, ModelSpec, count_parameters, prunable_parameters
from prunelib.progress import progress
from prunelib.pruning import get_criterion, initial_state, rewind
from prunelib.runtime import make_runner, time_calls
from prunelib.sparsity import count_nonzero, sparsity_report
from prunelib.storage import disk_dense_bytes, disk_sparse_bytes
from prunelib.train import evaluate, init_model, train


@dataclass(frozen=True)
class Schedule:
    """Which criterion prunes, and whether survivors are rewound to init and retrained after each step."""

    name: str
    criterion: str
    rewind: bool
    retrain: bool


SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in (
        Schedule("no-retrain", "magnitude", rewind=False, retrain=False),
        Schedule("imp-rewind", "magnitude", rewind=True, retrain=True),
        Schedule("imp-finetune", "magnitude", rewind=False, retrain=True),
        Schedule("random", "random", rewind=False, retrain=False),
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
    spec: ModelSpec, splits: Splits, train_cfg: TrainConfig, seed: int,
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
    """
    prune_step = get_criterion(schedule.criterion)
    yield 0, model
    for k in range(1, prune_cfg.iterations + 1):
        prune_step(prunable_parameters(model), prune_cfg.amount, seed + k)
        if schedule.rewind:
            rewind(model, initial)
        if schedule.retrain:
            train(model, train_split, train_cfg, seed + k, desc=f"retrain {k}")
        yield k, model


def measure(model: nn.Module, splits: Splits, cfg: MeasureConfig) -> dict[str, float | int]:
    """Accuracy, latency (mean, std at batch ``cfg.batch_size``), parameter counts and sizes on disk.

    Never changes ``model``: timing and sizes use a copy with the reparametrization removed.
    """
    report = sparsity_report(model)
    x = splits.test.x[: cfg.batch_size]
    runner = make_runner(model, cfg.runtime, splits.test.x[:64], cfg.threads)
    mean, std = time_calls(runner, x, cfg.runs, cfg.warmup)
    return {
        "sparsity": report.sparsity,
        "sparsity_model": report.sparsity_model,
        "accuracy": evaluate(model, splits.test),
        "latency_mean_s": mean,
        "latency_std_s": std,
        "params_total": count_parameters(model),
        "params_nonzero": count_nonzero(model),
        "disk_dense_bytes": disk_dense_bytes(model),
        "disk_sparse_bytes": disk_sparse_bytes(model),
    }


def run_sweep(
    cfg: RunConfig,
    splits: Splits | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> pd.DataFrame:
    """Train dense, run ``cfg.prune.method`` and measure every iteration: one row per iteration 0..N.

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
        rows.append({"iteration": k, **measure(current, splits, cfg.measure)})
    return pd.DataFrame(rows)
