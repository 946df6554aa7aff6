"""Value precision: fp16 / int8 storage of weights, and int8 dynamic quantization for inference.

Storage precision is lossy for values only; where values sit (the sparsity pattern) is kept
exactly by :mod:`prunelib.storage.compact`. The rule for which tensors a precision touches lives here,
in :func:`stored_kind`, so the container and :func:`quantized_copy` can never disagree:

* ``"fp32"``: every tensor is stored bit-exactly in its own dtype (the name means "no loss").
* ``"fp16"``: floating-point tensors are stored as IEEE half; others exactly.
* ``"int8"``: floating-point tensors of 2 or more dimensions are stored as int8, symmetric, one
  fp32 scale per output channel (dim 0, ``scale = max|row| / 127``); lower-dimensional floating
  tensors (biases) stay exact, since a scale per element would cost more than it saves, and
  torch's dynamic quantization keeps biases in float too. Integer and bool tensors stay exact.
"""

from __future__ import annotations

import copy
import math
import platform
import warnings
from typing import Literal

import torch
from torch import nn

from prunelib.pruning.criteria import refresh_masked, remove_reparametrization

Precision = Literal["fp32", "fp16", "int8"]

#: The storage precisions, in the order the sweep reports them.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")

#: Largest magnitude of a symmetric int8 code (-127..127; -128 unused so the range is symmetric).
INT8_MAX = 127


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`.

    Raises:
        ValueError: any other value (shown in the message).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def stored_kind(tensor: torch.Tensor, precision: str) -> str:
    """How ``tensor``'s values are stored at ``precision``: ``"exact"``, ``"fp16"`` or ``"int8"``."""
    check_precision(precision)
    if not tensor.dtype.is_floating_point or precision == "fp32":
        return "exact"
    if precision == "fp16":
        return "fp16"
    return "int8" if tensor.dim() >= 2 else "exact"


def _rows(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as ``(output channels, rest)``; explicit sizes so empty tensors reshape too."""
    return tensor.reshape(tensor.shape[0], math.prod(tensor.shape[1:]))


def int8_scales(tensor: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric scales (fp32, shape ``(tensor.shape[0],)``): ``max|row| / 127``.

    Raises:
        ValueError: ``tensor`` has fewer than 2 dimensions, or non-finite values.
    """
    if tensor.dim() < 2:
        raise ValueError(f"int8 per-channel scales need a tensor of >= 2 dims, got shape {tuple(tensor.shape)}")
    if tensor.numel() and not bool(torch.isfinite(tensor).all()):
        raise ValueError("int8 storage needs finite values; tensor holds NaN or inf")
    rows = _rows(tensor).to(torch.float32)
    if rows.shape[1] == 0:
        return torch.zeros(tensor.shape[0], dtype=torch.float32)
    return rows.abs().amax(dim=1) / INT8_MAX


def quantize_int8(tensor: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 codes ``round(tensor / scale)`` per output channel, same shape as ``tensor``.

    A channel with scale 0 (all zeros) gets code 0. The rounding error is at most ``scale / 2``.
    """
    rows = _rows(tensor).to(torch.float32)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales)).unsqueeze(1)
    codes = torch.round(rows / safe).clamp_(-INT8_MAX, INT8_MAX)
    codes = torch.where(scales.unsqueeze(1) > 0, codes, torch.zeros_like(codes))
    return codes.to(torch.int8).reshape(tensor.shape)


def dequantize_int8(codes: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Values ``codes * scale`` (computed in fp32) per output channel, cast to ``dtype``."""
    rows = _rows(codes).to(torch.float32) * scales.to(torch.float32).unsqueeze(1)
    return rows.reshape(codes.shape).to(dtype)


def round_trip(tensor: torch.Tensor, precision: str) -> torch.Tensor:
    """``tensor`` as it comes back from storage at ``precision`` (same dtype and shape).

    Exactly what :func:`prunelib.storage.compact.load_compact` returns for a tensor saved at
    ``precision``: the accuracy of a stored model is measured on these values.
    """
    kind = stored_kind(tensor, precision)
    if kind == "exact":
        return tensor.clone()
    if kind == "fp16":
        return tensor.to(torch.float16).to(tensor.dtype)
    scales = int8_scales(tensor)
    return dequantize_int8(quantize_int8(tensor, scales), scales, tensor.dtype)


def _pruned_names(module: nn.Module) -> list[str]:
    return [n[: -len("_orig")] for n, _ in module.named_parameters(recurse=False) if n.endswith("_orig")]


@torch.no_grad()
def quantized_copy(model: nn.Module, precision: str) -> nn.Module:
    """A copy of ``model`` whose parameters went through storage at ``precision`` and back.

    ``model`` is not mutated. A pruned parameter is quantized as its effective weight
    (``orig * mask``, per-channel scales from the surviving values) and written back to
    ``*_orig``; masks and pruning hooks are kept, so the copy is still a pruned model.
    Its outputs equal those of the model restored from a :func:`prunelib.storage.compact.save_compact`
    file written at the same precision.

    Raises:
        ValueError: unknown ``precision``; int8 with NaN/inf weights.
    """
    check_precision(precision)
    refresh_masked(model)  # a stale cached ``weight`` with autograd history breaks deepcopy
    out = copy.deepcopy(model)
    for module in out.modules():
        pruned = _pruned_names(module)
        for name in pruned:
            orig = getattr(module, f"{name}_orig")
            mask = getattr(module, f"{name}_mask")
            effective = torch.where(mask != 0, orig, torch.zeros_like(orig))
            orig.copy_(round_trip(effective, precision))
        for name, param in module.named_parameters(recurse=False):
            if not name.endswith("_orig"):
                param.copy_(round_trip(param, precision))
    refresh_masked(out)
    return out


def quantized_engine() -> str:
    """Select and return the int8 kernel engine for this CPU: x86/fbgemm on x86, qnnpack on ARM.

    Raises:
        RuntimeError: this torch build has no quantized engine (the list is shown).
    """
    supported = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    arm = platform.machine().lower() in ("aarch64", "arm64") or platform.machine().lower().startswith("arm")
    preference = ("qnnpack",) if arm else ("x86", "fbgemm", "onednn", "qnnpack")
    for engine in preference + tuple(supported):
        if engine in supported:
            torch.backends.quantized.engine = engine
            return engine
    raise RuntimeError(f"no quantized engine in this torch build: {torch.backends.quantized.supported_engines}")


def dynamic_int8(model: nn.Module) -> nn.Module:
    """An int8 dynamically quantized copy of ``model`` for inference (every ``nn.Linear``).

    Weights become int8 (per-tensor, as torch does), activations are quantized on the fly;
    ``model`` is not mutated. Pruning is made permanent in the copy first, so pruned weights
    are the zeros of the int8 weight. The copy is in eval mode.

    Note:
        ``torch.ao.quantization`` is deprecated in favour of torchao; it still works on this
        build and its deprecation warnings are silenced here.
    """
    quantized_engine()
    out = remove_reparametrization(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(out, {nn.Linear}, dtype=torch.qint8)
