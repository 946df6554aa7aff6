"""Latency of every checkpoint of every sweep, per runtime and batch size, timed by pytest-benchmark.

Each benchmark carries the checkpoint's accuracy, sparsity and sizes in ``extra_info`` (the
contract the report and ``prunelib compare`` read). Before anything is timed, the runtime's
outputs must match PyTorch's: a wrong model is never timed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunelib.deploy.runtimes import deploy, make_runner
from prunelib.plugin.records import extra_info, record_entry
from prunelib.pruning.schedules import get_schedule
from prunelib.sweep.cache import load_model

WARMUP_CALLS = 20  # caches and lazy initialisation settle before the first timed round
PARITY_ATOL = 1e-4


def batch_of(x: torch.Tensor, size: int) -> torch.Tensor:
    """The first ``size`` rows of ``x``, cycled when ``x`` has fewer."""
    reps = -(-size // len(x))
    return x.repeat((reps,) + (1,) * (x.dim() - 1))[:size].contiguous()


def test_inference(benchmark, inference_case, suite, request: pytest.FixtureRequest) -> None:
    case, spec = inference_case, inference_case.spec
    splits = suite.splits(spec)
    sweep = suite.sweep(spec)
    structured = get_schedule(spec.prune.method).structured
    model = load_model(sweep, splits, case.iteration)
    x = batch_of(splits.test.x, case.batch)

    runner = make_runner(model, case.runtime, splits.test.x[:64], suite.opts.threads, structured=structured)
    with torch.inference_mode():
        expected = deploy(model, structured=structured, precision="fp32")(x).numpy()
    got = np.asarray(runner(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=PARITY_ATOL, rtol=0, err_msg=f"{case.runtime} differs from PyTorch")
    for _ in range(WARMUP_CALLS):
        runner(x)

    benchmark.group = f"{spec.data.name}-{spec.model}-{spec.prune.method}-b{case.batch}"
    info = extra_info(
        spec,
        case.iteration,
        sweep.row(case.iteration),
        runtime=case.runtime,
        batch_size=case.batch,
        threads=suite.opts.threads,
    )
    benchmark.extra_info.update(info)
    record_entry(request.config, request.node, benchmark.group, info)
    benchmark(runner, x)
