"""Does pruning pay in speed? Structured shrinking and sparse execution on the ~1.4M-parameter MLP.

Timed by pytest-benchmark at batch 1; the last test takes the ratios within this run and holds
them to the targets: structured speedup >= 0.7 x the ideal FLOP ratio at 50 % of neurons removed
and >= 4x at 90 % (PyTorch and ONNX Runtime); sparse execution >= 2x dense at 95 % sparsity.
"""

from __future__ import annotations

import pytest
import torch
from test_inference import timed_on_the_board

from prunelib.deploy.runtimes import make_runner
from prunelib.measure.targets import Target, Timing, judge
from prunelib.plugin.records import extra_info, record_extra
from prunelib.sweep.cache import load_model
from prunelib.sweep.spec import SweepSpec

#: variant -> (method, amount): one pruning step from the trained dense model.
VARIANTS = {
    "structured-50": ("structured-no-retrain", 0.5),
    "structured-90": ("structured-no-retrain", 0.9),
    "unstructured-95": ("no-retrain", 0.95),
}
CASES = [
    ("torch", "dense"),
    ("onnxruntime", "dense"),
    ("torch", "structured-50"),
    ("onnxruntime", "structured-50"),
    ("torch", "structured-90"),
    ("onnxruntime", "structured-90"),
    ("torch", "unstructured-95"),
    ("torch-sparse", "unstructured-95"),
]
TARGETS = [
    Target("torch", "structured-50", "torch", "flop-fraction", 0.7),
    Target("onnxruntime", "structured-50", "onnxruntime", "flop-fraction", 0.7),
    Target("torch", "structured-90", "torch", "speedup", 4.0),
    Target("onnxruntime", "structured-90", "onnxruntime", "speedup", 4.0),
    Target("torch-sparse", "unstructured-95", "torch", "speedup", 2.0),
]
TIMINGS = pytest.StashKey[dict]()


def spec_for(suite, variant: str) -> SweepSpec:
    method, amount = VARIANTS.get(variant, ("structured-no-retrain", 0.5))
    opts = suite.opts
    return SweepSpec(
        "mlp", "mnist5k", "mlp1m", method, amount, 1, seed=opts.seed, quick=opts.quick, data_dir=opts.data_dir
    )


@pytest.mark.parametrize("runtime,variant", CASES, ids=[f"mlp1m-{v}-{r}" for r, v in CASES])
def test_speedup(benchmark, runtime: str, variant: str, suite, request) -> None:
    if not any(t.family == "mlp" for t in suite.opts.triples):
        pytest.skip("the MLP speed-up benchmark runs when an mlp pair is requested")
    spec = spec_for(suite, variant)
    sweep, loaded = suite.sweep(spec), suite.loaded(spec)
    family, data = loaded.family, loaded.data
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
    benchmark.group = "mnist5k-mlp1m-speedups-b1"
    info = extra_info(
        spec,
        k,
        sweep.row(k),
        runtime=runtime,
        batch_size=1,
        threads=suite.opts.threads,
    )
    info["method"] = variant  # the variant names the row: dense, structured-50, ...
    info.update(timed_on_the_board(benchmark, runner, x, suite.opts))
    benchmark.extra_info.update(info)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        timings = request.config.stash.setdefault(TIMINGS, {})
        timings[(runtime, variant)] = Timing(stats.stats.min, stats.stats.median, sweep.row(k)["flops"])


def test_speedup_targets(suite, request) -> None:
    """The ratios of this run's timings against the targets (needs timing: not under --benchmark-disable).

    Judged on the ratio of medians; the ratio of fastest rounds (noise from other processes only ever
    adds time) is reported beside it.
    """
    timings = request.config.stash.get(TIMINGS, {})
    if not timings:
        pytest.skip("no timings in this run (--benchmark-disable or xdist): speedups cannot be judged")
    table, failures = judge("mnist5k-mlp1m", timings, TARGETS)
    record_extra(request.config, "speedups", table)
    print("\n" + table.to_string(index=False))
    assert not failures, "; ".join(failures)
