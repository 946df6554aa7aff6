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

from prunelib.deploy.runtimes import int8_tolerance, make_runner
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
    ref, got = np.asarray(reference), np.asarray(runner(x))
    # Judged on the predictions rounding cannot legitimately flip: fp32's top-2 margin above the parity
    # tolerance (static int8 quantizes activations too; a 97 %-sparse model has many near-ties).
    top2 = np.sort(ref.reshape(len(ref), -1), axis=-1)[:, -2:]
    tol = int8_tolerance(ref, static=family.int8 == "static") if precision == "int8" else 0.0
    decided = (top2[:, 1] - top2[:, 0]) > tol
    same = got.argmax(-1) == ref.argmax(-1)
    # Fewer than 32 decided rows (a model near chance): the runner's parity check within tol already held.
    agreement = float(np.mean(same[decided])) if decided.sum() >= 32 else 1.0
    assert agreement >= MIN_ARGMAX_AGREEMENT, (
        f"{precision} agrees with fp32 on only {agreement:.1%} of the {int(decided.sum())} predictions "
        f"decided by more than {tol:.3g} ({np.mean(same):.1%} of all)"
    )
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
