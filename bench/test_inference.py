"""Latency of every checkpoint of every sweep, per runtime and batch size, timed by pytest-benchmark.

Each benchmark carries the checkpoint's metric, sparsity and sizes in ``extra_info`` (the
contract the report and ``prunelib compare`` read). Before anything is timed, the runtime's
outputs must match PyTorch's (:func:`prunelib.deploy.runtimes.make_runner` checks them on the
family's parity inputs): a wrong model is never timed.
"""

from __future__ import annotations

import statistics
import time

import pytest

from prunelib.deploy.runtimes import make_runner
from prunelib.measure.stats import rounds_for
from prunelib.measure.thermal import cooldown, read_board, thermal_extra_info
from prunelib.plugin.records import extra_info, record_entry
from prunelib.sweep.cache import load_model

WARMUP_CALLS = 20  # caches and lazy initialisation settle before the first timed round
#: Rounds timed at least per benchmark, whatever the time budget: a median, its IQR and a bootstrap
#: interval on a speed-up need more than pytest-benchmark's default minimum of 5 (slow models got 5).
MIN_ROUNDS = 20
#: Rounds timed at most (fast calls under a long --benchmark-max-time): enough for the median's interval.
MAX_ROUNDS = 20_000


def time_case(benchmark, case, suite, request: pytest.FixtureRequest, group: str) -> None:
    """Parity-check then time one checkpoint on one runtime (shared with the speech benchmarks)."""
    spec = case.spec
    loaded = suite.loaded(spec)
    family = loaded.family
    sweep = suite.sweep(spec)
    model = load_model(sweep, loaded, case.iteration)
    runner = make_runner(
        family, model, loaded.data, case.runtime, threads=case.threads,
        structured=spec.schedule.structured, batch_size=case.batch,
    )  # fmt: skip
    x = family.example_inputs(loaded.data, case.batch)
    warmup, rounds = family.timing or (WARMUP_CALLS, MIN_ROUNDS)
    for _ in range(warmup):
        runner(x)
    benchmark.group = group
    info = extra_info(
        spec, case.iteration, sweep.row(case.iteration), runtime=case.runtime, batch_size=case.batch,
        threads=case.threads,
    )  # fmt: skip
    if hasattr(runner, "disk_bytes"):  # the ExecuTorch program, or a family's ONNX graphs: this deployment on disk
        info["disk_pte_bytes" if case.runtime == "executorch" else "disk_onnx_bytes"] = runner.disk_bytes
    info.update(timed_on_the_board(benchmark, runner, x, suite.opts, min_rounds=rounds))
    info.update(real_time(benchmark, family.example_seconds(loaded.data)))
    benchmark.extra_info.update(info)
    record_entry(request.config, request.node, benchmark.group, info)


def real_time(benchmark, seconds: float | None) -> dict:
    """``audio_seconds`` and ``rtf`` (median latency over them: the real-time factor) when the example is audio."""
    if seconds is None:
        return {}
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    rtf = stats.median / seconds if stats is not None and seconds > 0 else None
    return {"audio_seconds": seconds, "rtf": rtf}


def timed_on_the_board(benchmark, runner, x, opts, min_rounds: int = MIN_ROUNDS) -> dict:
    """Time ``runner(x)`` with pytest-benchmark (:func:`timed`), after an optional cooldown; the board's state around it.

    Returns the thermal ``extra_info`` keys (:data:`prunelib.measure.thermal.EXTRA_INFO_KEYS`):
    SoC temperature and slowest CPU clock before and after, governor, throttled flags and the
    verdict, plus ``cooldown_waited_s`` when ``--prune-cooldown`` is on. Missing files (x86, a
    container) give ``None`` values, never an error.
    """
    waited: dict = {}
    if opts.cooldown_s > 0:
        _, _, seconds = cooldown(opts.cooldown_below_c, timeout_s=opts.cooldown_s)
        waited = {"cooldown_waited_s": round(seconds, 1)}
    before = read_board()
    timed(benchmark, runner, x, min_rounds)
    return {**thermal_extra_info(before, read_board()), **waited}


def timed(benchmark, runner, x, min_rounds: int = MIN_ROUNDS) -> None:
    """Time ``runner(x)``: ``--benchmark-max-time`` worth of rounds, and at least ``min_rounds`` of them.

    pytest-benchmark picks its rounds from the time budget with a floor of ``--benchmark-min-rounds``
    (default 5); when that floor is below ``min_rounds``, the rounds are chosen here from the
    budget and a pilot of three calls (:func:`prunelib.measure.stats.rounds_for`) and timed with
    ``benchmark.pedantic``, one call per round. Under ``--benchmark-disable`` it calls once.
    """
    floor = int(getattr(benchmark, "_min_rounds", 0) or 0)
    if not getattr(benchmark, "enabled", False) or floor >= min_rounds:
        benchmark(runner, x)
        return
    pilot = []
    for _ in range(3):
        start = time.perf_counter()
        runner(x)
        pilot.append(time.perf_counter() - start)
    budget = float(getattr(benchmark, "_max_time", 1.0))
    rounds = rounds_for(statistics.median(pilot), budget, min_rounds, max(min_rounds, MAX_ROUNDS))
    benchmark.pedantic(runner, args=(x,), rounds=rounds, iterations=1)


def test_inference(benchmark, inference_case, suite, request: pytest.FixtureRequest) -> None:
    spec = inference_case.spec
    time_case(
        benchmark, inference_case, suite, request, f"{spec.dataset}-{spec.model}-{spec.method}-b{inference_case.batch}"
    )
