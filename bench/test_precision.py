"""Pruning combined with quantization: accuracy, size and latency at fp16 / int8 beside fp32.

For the first, middle and last checkpoint of each sweep the surviving values are stored at
reduced precision (compact file) and run with int8 dynamic quantization; the report's
``precision`` table shows what each costs or buys against fp32.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from prunelib.config import MeasureConfig
from prunelib.deploy.runtimes import make_runner
from prunelib.plugin.records import extra_info, record_entry, record_extra
from prunelib.pruning.schedules import get_schedule, static_metrics
from prunelib.sweep.cache import load_model

#: Reduced precision may flip a few borderline predictions, not many.
MIN_ARGMAX_AGREEMENT = 0.9


def test_precision(benchmark, precision_case, suite, request) -> None:
    spec, k, precision = precision_case
    sweep, splits = suite.sweep(spec), suite.splits(spec)
    structured = get_schedule(spec.prune.method).structured
    model = load_model(sweep, splits, k)
    metrics = static_metrics(
        model, splits, MeasureConfig(threads=suite.opts.threads, precision=precision), structured=structured
    )
    fp32 = sweep.row(k)

    runner = make_runner(
        model, "torch", splits.test.x[:64], suite.opts.threads, structured=structured, precision=precision
    )
    x = splits.test.x[:256]
    with torch.inference_mode():
        reference = make_runner(model, "torch", x, suite.opts.threads, structured=structured)(x)
    agreement = float(np.mean(np.asarray(runner(x)).argmax(-1) == np.asarray(reference).argmax(-1)))
    assert agreement >= MIN_ARGMAX_AGREEMENT, f"{precision} agrees with fp32 on only {agreement:.1%} of predictions"
    assert metrics["disk_compact_bytes"] <= fp32["disk_compact_bytes"], f"{precision} storage larger than fp32"

    xb = splits.test.x[:1]
    for _ in range(20):
        runner(xb)
    benchmark.group = f"{spec.data.name}-{spec.model}-{spec.prune.method}-precision-b1"
    info = extra_info(spec, k, metrics, runtime="torch", batch_size=1, threads=suite.opts.threads, precision=precision)
    info["accuracy_fp32"] = fp32["accuracy"]
    benchmark.extra_info.update(info)
    record_entry(request.config, request.node, benchmark.group, info)
    benchmark(runner, xb)
    stats = getattr(benchmark, "stats", None)
    record_extra(
        request.config,
        "precision",
        pd.DataFrame(
            [
                {
                    "dataset": spec.data.name,
                    "model": spec.model,
                    "method": spec.prune.method,
                    "iteration": k,
                    "sparsity": fp32["sparsity"],
                    "precision": precision,
                    "accuracy": metrics["accuracy"],
                    "accuracy_fp32": fp32["accuracy"],
                    "accuracy_change_points": round(100 * (metrics["accuracy"] - fp32["accuracy"]), 2),
                    "disk_compact_bytes": metrics["disk_compact_bytes"],
                    "disk_compact_bytes_fp32": fp32["disk_compact_bytes"],
                    "latency_median_s": stats.stats.median if stats is not None else float("nan"),
                }
            ]
        ),
    )
