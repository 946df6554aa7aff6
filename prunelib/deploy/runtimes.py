"""Deployment, inference runtimes behind one callable, ONNX export, parity and latency.

:func:`deploy` turns a pruned (masked) model into what ships: reparametrization removed, dead
neurons physically removed when pruning was structured, values at a precision. Runtimes:

* ``torch``: the deployed model, dense kernels;
* ``onnxruntime``: the deployed model exported to ONNX, run by ONNX Runtime on the CPU (int8:
  the fp32 export dynamically quantized by ONNX Runtime's own tool);
* ``torch-sparse``: the deployed model with each Linear run as CSR or dense, whichever was
  measured faster on this machine (:mod:`prunelib.deploy.sparse_exec`); fp32 and fp16 only.

Every runner but plain torch is parity-checked against the deployed torch model before it is
returned (a wrong model must never be timed). Timing runs in eval mode under
``torch.inference_mode``; thread counts are set explicitly so runs are comparable.
"""

from __future__ import annotations

import io
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prunelib.deploy.precision import check_precision, dynamic_int8, quantized_copy
from prunelib.deploy.sparse_exec import Force, to_sparse_execution
from prunelib.pruning.criteria import remove_reparametrization
from prunelib.pruning.structured import shrink

RUNTIMES = ("torch", "onnxruntime", "torch-sparse")
#: Runtimes a speech (CTC) model runs on: sparse execution is for the MLP's Linear layers only.
CTC_RUNTIMES = ("torch", "onnxruntime")
Runner = Callable[[torch.Tensor], object]

#: Parity tolerance of an int8 runtime against the fp32 deployed model, relative to the largest
#: |output| (at least 1). Measured on LeNet-300-100 / MNIST-5k at 50 % sparsity: ORT int8 0.5 %,
#: torch dynamic int8 1.3 % of the largest logit.
INT8_PARITY_RTOL = 0.05


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


def deploy(model: nn.Module, structured: bool = False, precision: str = "fp32") -> nn.Module:
    """The model as it ships, in eval mode: a new module, ``model`` is not changed.

    Steps: pruning made permanent (:func:`~prunelib.pruning.criteria.remove_reparametrization`); when
    ``structured``, dead hidden neurons physically removed (:func:`~prunelib.pruning.structured.shrink`,
    same outputs, needs a prunelib MLP); then ``precision``:

    * ``fp32``: as is;
    * ``fp16``: every parameter rounded through fp16 and back (:func:`~prunelib.deploy.precision.quantized_copy`):
      the values a half-precision file holds, computed in fp32;
    * ``int8``: :func:`~prunelib.deploy.precision.dynamic_int8`, torch's dynamic quantization of every
      Linear (int8 weights per tensor, activations quantized on the fly).

    Raises:
        ValueError: unknown ``precision``.
        TypeError: ``structured`` for a model that is not a prunelib MLP.
    """
    check_precision(precision)
    plain = remove_reparametrization(model)
    if structured:
        plain = shrink(plain)
    if precision == "fp16":
        plain = quantized_copy(plain, "fp16")
    elif precision == "int8":
        plain = dynamic_int8(plain)
    return plain.eval()


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
            dense,
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
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


def forward_steps(module: nn.Module) -> list[Callable[[torch.Tensor], torch.Tensor]] | None:
    """A prunelib MLP's forward pass as its layers' bound ``forward`` methods, in order.

    Calling these skips ``nn.Module.__call__`` (hook and dispatch bookkeeping, ~3 µs a layer here):
    at batch 1 a small MLP spends as long in that overhead as in its matrix products, which hides
    what pruning removes. ``None`` when ``module`` is not an MLP or any submodule carries a hook
    (pruning reparametrizations are hooks), so behaviour never changes.
    """
    from prunelib.families.mlp.models import MLP

    if not isinstance(module, MLP):
        return None
    for m in module.modules():
        if m._forward_hooks or m._forward_pre_hooks:
            return None
    first = module.embedding.forward if module.embedding is not None else (lambda x: x.flatten(1))
    return [first, *(layer.forward for layer in module.layers), module.out.forward]


def module_runner(module: nn.Module) -> Runner:
    """A callable running ``module`` itself (put in eval mode, not copied) without autograd.

    For a prunelib MLP the layers are called directly (:func:`forward_steps`): same arithmetic,
    less per-call overhead, in every torch runtime alike.
    """
    module.eval()
    steps = forward_steps(module)
    if steps is None:

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return module(x)

        return run

    def run_steps(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            for step in steps:
                x = step(x)
            return x

    return run_steps


def torch_runner(model: nn.Module) -> Runner:
    """A callable running a dense eval copy of ``model`` without autograd."""
    return module_runner(remove_reparametrization(model))


def gemm_to_matmul(onnx_model: bytes) -> bytes:
    """``onnx_model`` with each plain ``Gemm`` of a constant weight rewritten as ``MatMul`` + ``Add``.

    The TorchScript exporter writes a Linear on 2-D input as ``Gemm``, which ONNX Runtime's
    dynamic quantization does not handle (only ``MatMul``). Rewritten: ``Gemm`` with
    ``alpha = beta = 1``, no ``transA`` and an initializer as weight (transposed once here when
    ``transB``); others are left alone. Same outputs up to float rounding.
    """
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load_from_string(onnx_model)
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    names = set(inits) | {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in inits:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        w_name = node.input[1] + "_matmul"
        while w_name in names:
            w_name += "_"
        names.add(w_name)
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), w_name))
        has_bias = len(node.input) > 2 and node.input[2] != ""
        out = node.output[0] + "_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [out], name=f"{node.name}_matmul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [out, node.input[2]], [node.output[0]], name=f"{node.name}_add"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def quantize_onnx_int8(onnx_model: bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantization of ``onnx_model``'s ``MatMul`` weights.

    ``onnxruntime.quantization.quantize_dynamic`` with weight type ``QInt8`` (per tensor, as
    torch's dynamic quantization) after :func:`gemm_to_matmul`; only ``MatMul`` is quantized, so
    embeddings stay fp32 as in :func:`~prunelib.deploy.precision.dynamic_int8`.

    Raises:
        ValueError: nothing in the model could be quantized (no MatMul of a constant weight).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    before = logging.root.manager.disable
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(gemm_to_matmul(onnx_model))
        logging.disable(logging.WARNING)  # "consider pre-processing": the shapes here are already known
        try:
            quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
        finally:
            logging.disable(before)
        quantized = dst.read_bytes()
    if not any(n.op_type == "MatMulInteger" for n in onnx.load_from_string(quantized).graph.node):
        raise ValueError("ONNX Runtime int8: no MatMul with a constant weight to quantize in this model")
    return quantized


@dataclass(frozen=True)
class Parity:
    """How far a runtime's outputs are from PyTorch's: largest |difference| and argmax agreement."""

    max_abs_diff: float
    argmax_agreement: float


def _numpy(x: object) -> np.ndarray:
    return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def compare_outputs(expected: object, got: object, atol: float, what: str = "ONNX Runtime") -> Parity:
    """How far ``got`` is from ``expected`` (tensors or arrays of the same shape).

    Raises:
        ValueError: they differ by more than ``atol`` (a wrong model must never be timed).
    """
    expected, got = _numpy(expected), _numpy(got)
    if expected.shape != got.shape:
        raise ValueError(f"{what} output has shape {got.shape}, PyTorch {expected.shape}")
    diff = float(np.max(np.abs(expected - got))) if expected.size else 0.0
    agree = float(np.mean(expected.argmax(-1) == got.argmax(-1))) if expected.size else 1.0
    if not diff <= atol:
        raise ValueError(f"{what} output differs from PyTorch by {diff:.3g} (tolerance {atol:g})")
    return Parity(diff, agree)


def check_parity(model: nn.Module, session, inputs: torch.Tensor, atol: float = 1e-4) -> Parity:
    """Compare ``session`` with ``model`` on ``inputs``.

    Raises:
        ValueError: outputs differ by more than ``atol`` (a wrong model must never be timed).
    """
    return compare_outputs(torch_runner(model)(inputs), ort_runner(session)(inputs), atol)


def int8_tolerance(reference: torch.Tensor) -> float:
    """Parity tolerance of an int8 runtime against fp32 outputs ``reference``: :data:`INT8_PARITY_RTOL` of max |output|."""
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    return INT8_PARITY_RTOL * max(1.0, scale)


def make_runner(
    model: nn.Module,
    runtime: str,
    example: torch.Tensor,
    threads: int | None = None,
    *,
    structured: bool = False,
    precision: str = "fp32",
    batch_size: int | None = None,
    sparse_force: Force = None,
) -> Runner:
    """A callable running ``deploy(model, structured, precision)`` on ``runtime``.

    ``model`` may be pruned (masks) and is not changed. Non-torch runners are parity-checked on
    ``example`` against the deployed torch model (``atol`` 1e-4; int8 ONNX Runtime against the
    fp32 deployed model within :func:`int8_tolerance`).

    Args:
        example: inputs for the parity check (its first row is the ONNX export's example).
        threads: intra-op threads for torch and ONNX Runtime (None: leave as set).
        structured: physically remove dead hidden neurons (see :func:`deploy`).
        precision: ``fp32``, ``fp16`` or ``int8`` (see :func:`deploy`).
        batch_size: the batch the runner will be timed at; ``torch-sparse`` measures its
            per-layer sparse/dense choice on ``example[:batch_size]`` (None: all of ``example``).
        sparse_force: ``"sparse"``/``"dense"`` fixes ``torch-sparse``'s choice for every Linear
            instead of timing (tests, reproducible runs).

    Raises:
        ValueError: unknown runtime or precision, ``torch-sparse`` with ``int8``, or a runner
            whose outputs differ from PyTorch's.
    """
    check_deployable(runtime, precision)
    set_torch_threads(threads)
    deployed = deploy(model, structured, precision)
    if runtime == "torch":
        return module_runner(deployed)
    expected = module_runner(deployed)(example)
    if runtime == "torch-sparse":
        chosen_on = example if batch_size is None else example[:batch_size]
        fast, _ = to_sparse_execution(deployed, chosen_on, force=sparse_force)
        run = module_runner(fast)
        compare_outputs(expected, run(example), 1e-4, "torch-sparse")
        return run
    if precision == "int8":
        fp32 = deploy(model, structured, "fp32")
        expected = module_runner(fp32)(example)
        session = ort_session(quantize_onnx_int8(export_onnx(fp32, example[:1])), threads)
        atol = int8_tolerance(expected)
    else:
        session = ort_session(export_onnx(deployed, example[:1]), threads)
        atol = 1e-4
    run = ort_runner(session)
    compare_outputs(expected, run(example), atol, "ONNX Runtime")
    return run


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
