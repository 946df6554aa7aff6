"""ONNX Runtime: sessions, runners, and its int8 quantization of an exported model (dynamic, or static QDQ)."""

from __future__ import annotations

import logging
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

Runner = Callable[[torch.Tensor], Any]


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


def quantize_onnx_static(onnx_model: bytes, calibration: np.ndarray, batch: int = 16) -> bytes:
    """ONNX Runtime's static int8 quantization (QDQ, int8 weights per output channel), calibrated on ``calibration``.

    What int8 means for a convolutional model: dynamic quantization leaves every Conv in fp32.
    Activation ranges come from running ``calibration`` (training rows) through the fp32 model
    in batches of ``batch`` (``MinMax``); weights and activations are signed int8, as checked on
    the Cortex-A72 by ``tools/pi4-check``.

    Raises:
        ValueError: ``calibration`` is empty, or nothing in the model could be quantized.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rows = np.asarray(calibration)
    if len(rows) == 0:
        raise ValueError("ONNX Runtime static int8 needs calibration rows, got none")
    name = onnx.load_from_string(onnx_model).graph.input[0].name
    batches = [{name: rows[i : i + batch]} for i in range(0, len(rows), batch)]

    class Rows(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.left, None)

    before = logging.root.manager.disable
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx_model)
        logging.disable(logging.WARNING)
        try:
            quantize_static(
                src, dst, Rows(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            )  # fmt: skip
        finally:
            logging.disable(before)
        quantized = dst.read_bytes()
    if not any(n.op_type == "QuantizeLinear" for n in onnx.load_from_string(quantized).graph.node):
        raise ValueError("ONNX Runtime static int8: nothing in this model could be quantized")
    return quantized


#: x86 flags of an int8 dot product that sums in 32 bits (VNNI, AMX): without one, ONNX Runtime's u8 x s8 kernels add
#: pairs of products in 16 bits with saturation, so weights are quantized to 7 bits (``reduce_range``) instead.
X86_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")


def reduce_range(machine: str | None = None, cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether dynamic int8 should quantize weights to 7 bits here: an x86 CPU without :data:`X86_INT8_DOT`.

    ONNX Runtime's advice for non-VNNI x86: there, LeNet-300-100's logits moved 5.6 % of the largest in int8
    with 8-bit weights (0.5 % on a VNNI machine). Arm (the Pi's Cortex-A72) and VNNI CPUs keep 8 bits.
    """
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return True  # unknown x86: the safe choice
    return not any(f in flags for f in X86_INT8_DOT)


def quantize_onnx_int8(onnx_model: bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantization of ``onnx_model``'s ``MatMul`` weights.

    ``onnxruntime.quantization.quantize_dynamic`` with weight type ``QInt8`` (per tensor, as
    torch's dynamic quantization; 7-bit where :func:`reduce_range` says so) after :func:`gemm_to_matmul`; only ``MatMul`` is quantized, so
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
            quantize_dynamic(
                src, dst, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8, reduce_range=reduce_range()
            )
        finally:
            logging.disable(before)
        quantized = dst.read_bytes()
    if not any(n.op_type == "MatMulInteger" for n in onnx.load_from_string(quantized).graph.node):
        raise ValueError("ONNX Runtime int8: no MatMul with a constant weight to quantize in this model")
    return quantized
