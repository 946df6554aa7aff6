"""Latency of every checkpoint of every sweep, per runtime and batch size, timed by pytest-benchmark.

Each benchmark carries the checkpoint's metric, sparsity and sizes in ``extra_info`` (the
contract the report and ``prunelib compare`` read). Before anything is timed, the runtime's
outputs must match PyTorch's (:func:`prunelib.deploy.runtimes.make_runner` checks them on the
family's parity inputs): a wrong model is never timed.
"""

from __future__ import annotations

import pytest

from prunelib.deploy.runtimes import make_runner
from prunelib.plugin.records import extra_info, record_entry
from prunelib.sweep.cache import load_model

WARMUP_CALLS = 20  # caches and lazy initialisation settle before the first timed round


def time_case(benchmark, case, suite, request: pytest.FixtureRequest, group: str) -> None:
    """Parity-check then time one checkpoint on one runtime (shared with the speech benchmarks)."""
    spec = case.spec
    loaded = suite.loaded(spec)
    family = loaded.family
    sweep = suite.sweep(spec)
    model = load_model(sweep, loaded, case.iteration)
    runner = make_runner(
        family, model, loaded.data, case.runtime, threads=suite.opts.threads,
        structured=spec.schedule.structured, batch_size=case.batch,
    )  # fmt: skip
    x = family.example_inputs(loaded.data, case.batch)
    for _ in range(WARMUP_CALLS):
        runner(x)
    benchmark.group = group
    info = extra_info(
        spec, case.iteration, sweep.row(case.iteration), runtime=case.runtime, batch_size=case.batch,
        threads=suite.opts.threads,
    )  # fmt: skip
    benchmark.extra_info.update(info)
    record_entry(request.config, request.node, benchmark.group, info)
    benchmark(runner, x)


def test_inference(benchmark, inference_case, suite, request: pytest.FixtureRequest) -> None:
    spec = inference_case.spec
    time_case(
        benchmark, inference_case, suite, request, f"{spec.dataset}-{spec.model}-{spec.method}-b{inference_case.batch}"
    )
