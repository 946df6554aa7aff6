"""Inference runtimes (PyTorch, ONNX Runtime) behind one callable, ONNX export, parity and latency.

Timing always runs on a copy with the pruning reparametrization removed, in eval mode, under
``torch.inference_mode``; thread counts are set explicitly so runs are comparable.
"""
from __future__ import annotations

import io
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from prunelib.pruning import remove_reparametrization

RUNTIMES = ("torch", "onnxruntime")
Runner = Callable[[torch.Tensor], object]


def check_runtime(name: str) -> str:
    """Return ``name`` if it is a known runtime, else raise ``ValueError`` listing them."""
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; choose one of {list(RUNTIMES)}")
    return name


def set_torch_threads(threads: int | None) -> int:
    """Set torch's intra-op threads when ``threads`` is given; return the number in force."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def export_onnx(model: nn.Module, example: torch.Tensor, opset: int = 17) -> bytes:
    """Export ``model`` (reparametrization removed) to ONNX bytes with a dynamic batch axis.

    Uses the TorchScript exporter: it needs no extra package and handles these models exactly.
    """
    dense = remove_reparametrization(model).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            dense, (example,), buf, dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return buf.getvalue()


def ort_session(onnx_model: bytes, threads: int | None = None):
    """An ONNX Runtime CPU session for ``onnx_model`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(onnx_model, sess_options=opts, providers=["CPUExecutionProvider"])


def ort_runner(session) -> Runner:
    """A callable running ``session`` on a torch tensor (numpy in, numpy out)."""
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def torch_runner(model: nn.Module) -> Runner:
    """A callable running a dense eval copy of ``model`` without autograd."""
    dense = remove_reparametrization(model).eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return dense(x)

    return run


@dataclass(frozen=True)
class Parity:
    """How far ONNX Runtime's outputs are from PyTorch's."""

    max_abs_diff: float
    argmax_agreement: float


def check_parity(model: nn.Module, session, inputs: torch.Tensor, atol: float = 1e-4) -> Parity:
    """Compare ``session`` with ``model`` on ``inputs``.

    Raises:
        ValueError: outputs differ by more than ``atol`` (a wrong model must never be timed).
    """
    expected = torch_runner(model)(inputs).numpy()
    got = ort_runner(session)(inputs)
    diff = float(np.max(np.abs(expected - got))) if expected.size else 0.0
    agree = float(np.mean(expected.argmax(-1) == got.argmax(-1))) if expected.size else 1.0
    if not diff <= atol:
        raise ValueError(f"ONNX Runtime output differs from PyTorch by {diff:.3g} (tolerance {atol:g})")
    return Parity(diff, agree)


def make_runner(model: nn.Module, runtime: str, example: torch.Tensor, threads: int | None = None) -> Runner:
    """A callable for ``runtime`` (``torch`` or ``onnxruntime``); ONNX is parity-checked on ``example``."""
    check_runtime(runtime)
    set_torch_threads(threads)
    if runtime == "torch":
        return torch_runner(model)
    session = ort_session(export_onnx(model, example[:1]), threads)
    check_parity(model, session, example)
    return ort_runner(session)


def time_calls(fn: Runner, x: torch.Tensor, runs: int = 100, warmup: int = 10) -> tuple[float, float]:
    """Mean and standard deviation (seconds) of ``runs`` calls ``fn(x)`` after ``warmup`` calls."""
    if runs < 2:
        raise ValueError(f"runs must be >= 2 to estimate a spread, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.fmean(times), statistics.stdev(times)
