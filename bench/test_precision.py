"""Pruning combined with quantization: accuracy, size and latency at fp16 / int8 beside fp32.

For the first, middle and last checkpoint of each sweep the surviving values are stored at
reduced precision (compact file) and run with int8 dynamic quantization; the report's
``precision`` table shows what each costs or buys against fp32.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from test_inference import timed_on_the_board

from prunelib.deploy.runtimes import make_runner
from prunelib.plugin.records import extra_info, record_entry, record_extra
from prunelib.sweep.cache import load_model
from prunelib.sweep.metrics import static_metrics

MIN_ARGMAX_AGREEMENT = 0.9


def test_precision(benchmark, precision_case, suite, request) -> None:
    spec, k, precision = precision_case
    sweep, loaded = suite.sweep(spec), suite.loaded(spec)
    family, data, structured = loaded.family, loaded.data, spec.schedule.structured
    name = family.metric.name
    model = load_model(sweep, loaded, k)
    metrics = static_metrics(family, model, data, structured, precision, spec.embeddings)
    fp32 = sweep.row(k)

    threads = suite.opts.threads
    # where the family's precision runs: torch, or ONNX Runtime for static int8 (conv models)
    runtime = "torch" if not family.supports(runtime="torch", precision=precision) else "onnxruntime"
    runner = make_runner(family, model, data, runtime, threads=threads, structured=structured, precision=precision)
    x = family.example_inputs(data, 256)
    with torch.inference_mode():
        reference = make_runner(family, model, data, "torch", threads=threads, structured=structured)(x)
    agreement = float(np.mean(np.asarray(runner(x)).argmax(-1) == np.asarray(reference).argmax(-1)))
    assert agreement >= MIN_ARGMAX_AGREEMENT, f"{precision} agrees with fp32 on only {agreement:.1%} of predictions"
    assert metrics["disk_compact_bytes"] <= fp32["disk_compact_bytes"], f"{precision} storage larger than fp32"

    xb = family.example_inputs(data, 1)
    for _ in range(20):
        runner(xb)
    benchmark.group = f"{spec.dataset}-{spec.model}-{spec.method}-precision-b1"
    info = extra_info(spec, k, metrics, runtime=runtime, batch_size=1, threads=suite.opts.threads, precision=precision)
    info[f"{name}_fp32"] = fp32[name]
    info.update(timed_on_the_board(benchmark, runner, xb, suite.opts))
    benchmark.extra_info.update(info)
    record_entry(request.config, request.node, benchmark.group, info)
    stats = getattr(benchmark, "stats", None)
    record_extra(
        request.config,
        "precision",
        pd.DataFrame(
            [
                {
                    "dataset": spec.dataset,
                    "model": spec.model,
                    "method": spec.method,
                    "iteration": k,
                    "sparsity": fp32["sparsity"],
                    "precision": precision,
                    "runtime": runtime,
                    name: metrics[name],
                    f"{name}_fp32": fp32[name],
                    f"{name}_change_points": round(100 * (metrics[name] - fp32[name]), 2),
                    "disk_compact_bytes": metrics["disk_compact_bytes"],
                    "disk_compact_bytes_fp32": fp32["disk_compact_bytes"],
                    "latency_median_s": stats.stats.median if stats is not None else float("nan"),
                }
            ]
        ),
    )
