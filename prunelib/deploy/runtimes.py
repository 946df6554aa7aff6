"""Deployment and the inference runtimes behind one callable, for any family.

A checkpoint is deployed as the family says (:meth:`Family.deploy`: pruning made permanent,
shrunk when structured), made inference-ready (:func:`shipped`: BatchNorm folded into the layer
before it), then put at a precision (:func:`at_precision`), then run by:

* ``torch``: the deployed model through :meth:`Family.forward`, dense kernels;
* ``onnxruntime``: exported by :meth:`Family.export_onnx`, run by ONNX Runtime on the CPU
  (int8: the fp32 export quantized by ONNX Runtime's own tool, dynamically, or statically with
  QDQ per channel for a family whose :attr:`Family.int8` is ``"static"``, i.e. conv models);
* ``torch-sparse``: each Linear run as CSR or dense, whichever was measured faster on this
  machine (:mod:`prunelib.deploy.sparse_exec`); fp32 and fp16 only;
* ``executorch``: the deployed module exported with ``torch.export``, lowered to XNNPACK and
  run by ExecuTorch's runtime (:mod:`prunelib.deploy.executorch`; int8 through the XNNPACK
  quantizer, PT2E); fp32 and int8 only, one program per batch size (static shapes). The runner's
  ``disk_bytes`` is the ``.pte`` file's size. Needs ``pip install prunelib[executorch]``.

Every runner but plain torch is parity-checked against the deployed torch model on the
family's parity inputs before it is returned (a wrong model must never be timed). Timing runs
in eval mode under ``torch.inference_mode``; thread counts are set explicitly.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from prunelib.deploy.onnx import ort_runner, ort_session
from prunelib.deploy.precision import check_precision, dynamic_int8, quantized_copy
from prunelib.deploy.ready import OrtModule, fold_batchnorm, static_int8
from prunelib.deploy.sparse_exec import Force, to_sparse_execution
from prunelib.families.contract import ALL_RUNTIMES, Runner

if TYPE_CHECKING:
    from prunelib.families.contract import Family

RUNTIMES = ALL_RUNTIMES

#: Parity tolerance of an int8 runtime against the fp32 deployed model, relative to the largest
#: |output| (at least 1). Measured on LeNet-300-100 / MNIST-5k at 50 % sparsity: ORT int8 0.5 %,
#: torch dynamic int8 1.3 % of the largest logit.
INT8_PARITY_RTOL = 0.05
#: The same for static int8 (activations quantized too, conv models). Measured on the DS-CNN / FSDD
#: (quick schedule, 0-87 % sparse): 2.4-5.7 % of the largest logit with 92-100 % of the predictions
#: unchanged, up to 22 % on a 87 %-sparse checkpoint; a wrong model is off by about 100 %.
INT8_STATIC_PARITY_RTOL = 0.25


def check_runtime(name: str) -> str:
    """Return ``name`` if it is a known runtime, else raise ``ValueError`` listing them."""
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; choose one of {list(RUNTIMES)}")
    return name


def check_deployable(runtime: str, precision: str) -> None:
    """Raise ``ValueError`` unless ``runtime`` can run a model deployed at ``precision``.

    ``torch-sparse`` has no int8 kernels (torch's CSR matmuls are floating point only).
    """
    check_runtime(runtime)
    check_precision(precision)
    if runtime == "torch-sparse" and precision == "int8":
        raise ValueError(
            "runtime 'torch-sparse' cannot run precision 'int8' (torch has no int8 sparse kernels); "
            "use fp32 or fp16 with torch-sparse, or int8 with torch or onnxruntime"
        )
    if runtime == "executorch" and precision == "fp16":
        raise ValueError("runtime 'executorch' runs fp32 or int8 (XNNPACK's PT2E quantizer), not fp16")


def runtime_missing(runtime: str) -> str:
    """``""`` when ``runtime``'s optional package is installed, else the reason to skip it."""
    from prunelib.deploy.executorch import SKIP_REASON, executorch_available

    return SKIP_REASON if runtime == "executorch" and not executorch_available() else ""


def at_precision(deployed: nn.Module, precision: str, family: Family | None = None, data: Any = None) -> nn.Module:
    """``deployed`` (fp32, no pruning hooks) at ``precision``, in eval mode.

    * ``fp32``: as is;
    * ``fp16``: every parameter rounded through fp16 and back (the values a half-precision
      file holds, computed in fp32; :func:`~prunelib.deploy.precision.quantized_copy`);
    * ``int8``: torch's dynamic quantization of every Linear (:func:`~prunelib.deploy.precision.dynamic_int8`),
      or, for a ``family`` whose int8 is static, ONNX Runtime's static QDQ model calibrated on
      ``data`` (an :class:`~prunelib.deploy.ready.OrtModule`).
    """
    check_precision(precision)
    if precision == "fp16":
        deployed = quantized_copy(deployed, "fp16")
    elif precision == "int8" and family is not None and family.int8 == "static":
        deployed = OrtModule(static_int8(family, deployed, data))
    elif precision == "int8":
        deployed = dynamic_int8(deployed)
    return deployed.eval()


def shipped(family: Family, model: nn.Module, structured: bool = False) -> nn.Module:
    """``family.deploy`` (pruning permanent, shrunk when ``structured``) made inference-ready: BatchNorm folded."""
    return fold_batchnorm(family.deploy(model, structured))


def deploy(family: Family, model: nn.Module, structured: bool = False, precision: str = "fp32") -> nn.Module:
    """The model as it ships (:func:`shipped`) at ``precision``. A new module; ``model`` is not changed."""
    return at_precision(shipped(family, model, structured), precision)


def set_torch_threads(threads: int | None) -> int:
    """Set torch's intra-op threads when ``threads`` is given; return the number in force."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _numpy(x: object) -> np.ndarray:
    return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def int8_tolerance(reference: np.ndarray, static: bool = False) -> float:
    """Parity tolerance of an int8 runtime against fp32 outputs: :data:`INT8_PARITY_RTOL` of max |output|
    (:data:`INT8_STATIC_PARITY_RTOL` when activations are quantized too)."""
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    return (INT8_STATIC_PARITY_RTOL if static else INT8_PARITY_RTOL) * max(1.0, scale)


def make_runner(
    family: Family,
    model: nn.Module,
    data: Any,
    runtime: str,
    *,
    threads: int | None = None,
    structured: bool = False,
    precision: str = "fp32",
    batch_size: int | None = None,
    sparse_force: Force = None,
) -> Runner:
    """A callable running ``deploy(family, model, structured, precision)`` on ``runtime``.

    ``model`` may be pruned (masks) and is not changed. Non-torch runners are first checked
    on ``family.parity_inputs(data)`` against the deployed torch model
    (:meth:`Family.check_outputs`; int8 ONNX Runtime against the fp32 model within
    :func:`int8_tolerance`).

    Args:
        threads: intra-op threads for torch and ONNX Runtime (None: leave as set).
        batch_size: the batch the runner will be timed at; ``torch-sparse`` measures its
            per-layer sparse/dense choice on that many parity rows (None: all of them).
        sparse_force: ``"sparse"``/``"dense"`` fixes ``torch-sparse``'s choice for every Linear.

    Raises:
        ValueError: unknown runtime or precision, ``torch-sparse`` with ``int8``, a combination
            the family does not support, or a runner whose outputs differ from PyTorch's.
    """
    check_deployable(runtime, precision)
    reason = family.supports(runtime=runtime, precision=precision) or runtime_missing(runtime)
    if reason:
        raise ValueError(reason)
    set_torch_threads(threads)
    if runtime == "executorch":  # lowers the fp32 deployment itself
        return _executorch_runner(family, model, data, structured, precision, batch_size or 1, threads)
    deployed = deploy(family, model, structured, precision)
    if runtime == "torch":
        return family.forward(deployed)
    inputs = family.parity_inputs(data)
    expected = _numpy(family.forward(deployed)(inputs))
    if runtime == "torch-sparse":
        chosen_on = inputs if batch_size is None else inputs[:batch_size]
        fast, _ = to_sparse_execution(deployed, chosen_on, force=sparse_force)
        run = family.forward(fast)
        family.check_outputs(expected, _numpy(run(inputs)), data, "torch-sparse")
        return run
    example = family.example_inputs(data, 1)
    if precision == "int8":
        fp32 = shipped(family, model, structured)
        expected = _numpy(family.forward(fp32)(inputs))
        atol: float | None = int8_tolerance(expected, static=family.int8 == "static")
        if family.int8 == "static":
            run = ort_runner(ort_session(static_int8(family, fp32, data), threads))
        else:
            run = family.onnx_runner(fp32, example, threads, int8=True)
    else:
        run, atol = family.onnx_runner(deployed, example, threads), None
    family.check_outputs(expected, _numpy(run(inputs)), data, "ONNX Runtime", atol=atol)
    return run


def _executorch_runner(
    family: Family, model: nn.Module, data: Any, structured: bool, precision: str, batch: int, threads: int | None
) -> Runner:
    """A ``.pte`` of the fp32 deployed model (int8: quantized by XNNPACK's PT2E flow, calibrated on example
    rows) at batch ``batch``, parity-checked on the family's example inputs of that batch before it is returned."""
    from prunelib.deploy.executorch import PteConfig, int8_atol, pte_runner, require_executorch, to_pte

    require_executorch()
    fp32 = shipped(family, model, structured)
    example = family.example_inputs(data, batch)
    rows = family.calibration_inputs(data)  # calibration in batches of the program's static shape
    calibration = [rows[i : i + batch] for i in range(0, len(rows) - batch + 1, batch)] if precision == "int8" else None
    pte = to_pte(fp32, example, PteConfig(precision), calibration=calibration)
    run = pte_runner(pte, threads=threads)
    expected = family.forward(fp32)(example)
    atol = int8_atol(torch.as_tensor(expected)) if precision == "int8" else None
    family.check_outputs(_numpy(expected), _numpy(run(example)), data, "ExecuTorch", atol=atol)
    run.disk_bytes = len(pte)  # type: ignore[attr-defined]  # the .pte file: a size on disk of this deployment
    return run


def time_calls(fn: Runner, x: torch.Tensor, runs: int = 100, warmup: int = 10) -> tuple[float, float]:
    """Mean and standard deviation (seconds) of ``runs`` calls ``fn(x)`` after ``warmup`` calls."""
    times = call_rounds(fn, x, runs, warmup)
    return statistics.fmean(times), statistics.stdev(times)


def call_rounds(fn: Runner, x: torch.Tensor, runs: int = 100, warmup: int = 10) -> list[float]:
    """The duration (seconds) of each of ``runs`` calls ``fn(x)``, after ``warmup`` untimed calls."""
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
    return times
