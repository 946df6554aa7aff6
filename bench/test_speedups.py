"""Does pruning pay in speed? Each family's speed-up pair, dense against one pruning step, at batch 1.

A family names the (dataset, model) to time and its targets (``Family.speedup_pair``,
``Family.speedup_targets``): the MLP's ~1.4M-parameter ``mlp1m`` (structured >= 0.7 x the ideal
FLOP ratio at 50 % of neurons removed and >= 4x at 90 %, PyTorch and ONNX Runtime; sparse
execution >= 2x dense at 95 % sparsity; those two fixed PyTorch ratios are gated where dense
weights stream from DRAM, as on the Pi), the conv families' 50 % and 90 % of channels. Structured
variants round the widths they keep to a multiple of :data:`SPEEDUP_ROUND`. Each case is timed by
pytest-benchmark (its figures go to the JSON and the report); the last test times each family's
cases again, in turn, so that drift hits all alike, and holds the ratios to the targets: a target
is met when the lower bound of the speed-up's 95 % bootstrap interval reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest
import torch
from test_inference import timed_on_the_board

from prunelib.deploy.runtimes import make_runner
from prunelib.families.registry import get_family
from prunelib.measure.alternating import alternating_rounds
from prunelib.measure.machine import last_level_cache_bytes
from prunelib.measure.targets import Timing, judge
from prunelib.plugin.records import extra_info, record_extra
from prunelib.pruning.structured import UnitRule
from prunelib.sweep.cache import load_model
from prunelib.sweep.spec import SweepSpec

#: Structured variants keep widths that are multiples of this (or of ``--prune-unit-round`` when
#: given): ONNX Runtime ran a DS-CNN pruned to 138 channels 4.4x slower than one of 136 or 140.
SPEEDUP_ROUND = 8
#: variant -> (method, amount): one pruning step from the trained dense model.
VARIANTS = {
    "structured-50": ("structured-no-retrain", 0.5),
    "structured-90": ("structured-no-retrain", 0.9),
    "unstructured-95": ("no-retrain", 0.95),
}
CASES = pytest.StashKey[dict]()
#: Seconds the targets test spends timing each family's cases again, in turn (:func:`alternating_rounds`).
GATE_BUDGET_S = 3.0


@dataclass(frozen=True)
class GateCase:
    """A timed speed-up case kept for the gate: the call, its multiply-adds and its weights' bytes stored dense."""

    call: Callable[[], object]
    flops: int
    weight_bytes: int


def spec_for(suite, family, variant: str) -> SweepSpec:
    method, amount = VARIANTS.get(variant, ("structured-no-retrain", 0.5))
    dataset, model = family.speedup_pair
    opts = suite.opts
    rule = opts.unit_rule if method.startswith("structured") else UnitRule()
    round_to = (rule.round_to if rule.round_to > 1 else SPEEDUP_ROUND) if method.startswith("structured") else 1
    return SweepSpec(
        family.name, dataset, model, method, amount, 1, seed=opts.seed, quick=opts.quick, data_dir=opts.data_dir,
        unit_criterion=rule.criterion, unit_scope=rule.scope, unit_round=round_to,
    )  # fmt: skip


def test_speedup(benchmark, speedup_case, suite, request) -> None:
    family, runtime, variant = speedup_case.family, speedup_case.runtime, speedup_case.variant
    spec = spec_for(suite, family, variant)
    sweep, loaded = suite.sweep(spec), suite.loaded(spec)
    data = loaded.data
    k = 0 if variant == "dense" else 1
    structured = variant.startswith("structured")
    model = load_model(sweep, loaded, k)
    runner = make_runner(family, model, data, runtime, threads=suite.opts.threads, structured=structured, batch_size=1)
    x = family.example_inputs(data, 1)
    with torch.inference_mode():
        want = make_runner(family, model, data, "torch", threads=suite.opts.threads)(x)
    torch.testing.assert_close(torch.as_tensor(runner(x)), want, atol=1e-4, rtol=0)
    for _ in range(50):
        runner(x)
    benchmark.group = f"{spec.dataset}-{spec.model}-speedups-b1"
    info = extra_info(spec, k, sweep.row(k), runtime=runtime, batch_size=1, threads=suite.opts.threads)
    info["method"] = variant  # the variant names the row: dense, structured-50, ...
    info.update(timed_on_the_board(benchmark, runner, x, suite.opts))
    benchmark.extra_info.update(info)
    if getattr(benchmark, "stats", None) is not None:  # timed: the targets test times it again, alternating
        row = sweep.row(k)  # the dense baseline's disk_dense_bytes decide whether memory-bound targets are gated
        cases = request.config.stash.setdefault(CASES, {}).setdefault(family.name, {})
        cases[(runtime, variant)] = GateCase(partial(runner, x), row["flops"], row["disk_dense_bytes"])


def test_speedup_targets(suite, request) -> None:
    """The ratios of this run's timings against each family's targets (needs timing: not under --benchmark-disable).

    A target passes only when the lower bound of the speed-up's 95 % bootstrap interval (ratio of
    medians, both cases' rounds resampled, fixed seed; :func:`prunelib.measure.targets.judge`)
    meets it, so a noisy run can fail a target but never pass one. The rounds are this test's own:
    every case of a family visited once a round, the order rotating, for :data:`GATE_BUDGET_S`
    (:func:`prunelib.measure.alternating.alternating_rounds`; a visit is one warm call, then the
    median of five). The ratio of fastest rounds is reported beside it.
    A ``memory-bound`` target is gated only where the dense weights exceed this CPU's last-level
    cache (:class:`prunelib.measure.targets.Target`); elsewhere its row says why it is not.
    """
    cases = request.config.stash.get(CASES, {})
    if not cases:
        pytest.skip("no timings in this run (--benchmark-disable, xdist, or no family with a speed-up pair)")
    failures = []
    for name, family_cases in cases.items():
        family = get_family(name)
        rounds = alternating_rounds({key: case.call for key, case in family_cases.items()}, GATE_BUDGET_S)
        timed = {
            key: Timing.of(rounds[key], case.flops, weight_bytes=case.weight_bytes)
            for key, case in family_cases.items()
        }
        dataset, model = family.speedup_pair
        table, missed = judge(f"{dataset}-{model}", timed, family.speedup_targets, last_level_cache_bytes())
        record_extra(request.config, "speedups", table)
        print("\n" + table.to_string(index=False))
        failures += missed
    assert not failures, "; ".join(failures)
