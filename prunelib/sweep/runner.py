"""One sweep end to end, for the command line: build, train dense, walk the schedule, measure and time each step.

The bench suite splits the same work in two (cached checkpoints, then pytest-benchmark timing);
this runner does both in one pass and returns the rows of ``results.csv``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from prunelib.deploy.runtimes import call_rounds, check_deployable, make_runner
from prunelib.measure.stats import summarize
from prunelib.progress import progress
from prunelib.pruning.criteria import initial_state, rewind
from prunelib.pruning.schedules import iterate_schedule
from prunelib.results.schema import sweep_columns
from prunelib.sweep.loaded import Loaded
from prunelib.sweep.metrics import static_metrics
from prunelib.sweep.spec import SweepSpec


@dataclass(frozen=True)
class Timing:
    """How each checkpoint is deployed and timed: runtime, precision, threads, calls, batch."""

    runtime: str = "torch"
    precision: str = "fp32"
    threads: int | None = None
    runs: int = 100
    warmup: int = 10
    batch: int = 1

    def __post_init__(self) -> None:
        check_deployable(self.runtime, self.precision)
        if self.runs < 2:
            raise ValueError(f"latency runs must be >= 2 to estimate a spread, got {self.runs}")
        if self.warmup < 0 or self.batch < 1 or (self.threads is not None and self.threads < 1):
            raise ValueError(f"invalid timing: {self}")


def measure(spec: SweepSpec, loaded: Loaded, model: nn.Module, timing: Timing) -> dict[str, object]:
    """:func:`~prunelib.sweep.metrics.static_metrics` plus the latency of ``timing.runs`` calls on ``timing.runtime``.

    ``latency_median_s`` and ``latency_iqr_s`` (what tables and plots show), beside
    ``latency_mean_s`` and ``latency_std_s`` (kept for readers of older ``results.csv``).
    """
    family, data, structured = loaded.family, loaded.data, spec.schedule.structured
    before = torch.get_num_threads()
    try:
        row = static_metrics(family, model, data, structured, timing.precision, spec.embeddings)
        runner = make_runner(
            family, model, data, timing.runtime, threads=timing.threads, structured=structured,
            precision=timing.precision, batch_size=timing.batch,
        )  # fmt: skip
        rounds = call_rounds(runner, family.example_inputs(data, timing.batch), timing.runs, timing.warmup)
    finally:
        torch.set_num_threads(before)
    s = summarize(rounds)
    std = statistics.stdev(rounds)
    return {
        **row,
        "latency_mean_s": s.mean_s,
        "latency_std_s": std,
        "latency_median_s": s.median_s,
        "latency_iqr_s": s.iqr_s,
    }


def run_sweep(
    spec: SweepSpec,
    loaded: Loaded,
    timing: Timing = Timing(),
    initial: Mapping[str, torch.Tensor] | None = None,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """Build, train dense, prune ``spec.iterations`` times by ``spec.method``; measure every iteration.

    ``initial``: weights to start from (and rewind to) instead of the family's seeded build.
    ``on_step(k, model)`` is called at each step before measuring. Returns the rows (columns
    :func:`prunelib.results.schema.sweep_columns`, then any further metrics of the family) and
    the initial weights.
    """
    family = loaded.family
    model = loaded.fresh(spec)
    if initial is not None:
        rewind(model, initial)
    init = initial_state(model)
    target = loaded.rewind_point(spec, model) if spec.schedule.late else init  # what survivors rewind to
    family.train(model, loaded.data, loaded.hparams, spec.seed, "dense")
    model.eval()
    steps = iterate_schedule(
        family, model, target, loaded.data, loaded.hparams, spec.schedule,
        spec.amount, spec.iterations, spec.seed, spec.embeddings, spec.unit_rule,
    )  # fmt: skip
    rows = []
    for k, current in progress(steps, desc=spec.method, total=spec.iterations + 1):
        if on_step is not None:
            on_step(k, current)
        rows.append({"iteration": k, **measure(spec, loaded, current, timing)})
    frame = pd.DataFrame(rows)
    columns = list(sweep_columns(family.metric.name))
    frame = frame[columns + [c for c in frame.columns if c not in columns]]
    frame.attrs["metric"] = family.metric
    return frame, init
