"""An inference-ready copy of a deployed model: BatchNorm folded, and static int8 through ONNX Runtime.

* :func:`fold_batchnorm`: every Conv/Linear followed by a BatchNorm becomes one layer
  (torch's own conv-BN fusion on the pairs an ``fx`` trace finds),
  as users ship a CNN; ONNX Runtime folds it on its own, PyTorch eager does not.
* :func:`static_int8` and :class:`OrtModule`: what int8 means for a convolutional model, ONNX
  Runtime's static QDQ quantization calibrated on the family's training rows, wrapped as a module
  so the family's own ``evaluate`` scores it.
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from prunelib.deploy.onnx import ort_session, quantize_onnx_static

if TYPE_CHECKING:
    from prunelib.families.contract import Family


def has_batchnorm(model: nn.Module) -> bool:
    """Whether any layer of ``model`` is a BatchNorm."""
    return any(isinstance(m, _BatchNorm) for m in model.modules())


def batchnorm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(layer, batchnorm)`` names where a BatchNorm reads only a Conv or Linear's output (an ``fx`` trace)."""
    traced = fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    pairs = []
    for node in traced.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], _BatchNorm):
            continue
        source = node.args[0] if node.args else None
        if not isinstance(source, fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        layer, bn = modules[source.target], modules[node.target]
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and bn.track_running_stats:
            pairs.append((str(source.target), str(node.target)))
    return pairs


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with each BatchNorm folded into the Conv/Linear before it; same outputs.

    torch's own fusion (``fuse_conv_bn_eval``, ``fuse_linear_bn_eval``) on the pairs an ``fx``
    trace finds; the folded BatchNorm becomes ``nn.Identity``, so the model keeps its class and
    its forward. ``model`` itself when it has no BatchNorm; a model ``torch.fx`` cannot trace
    keeps its BatchNorm layers, with a warning that says why.
    """
    model.eval()
    if not has_batchnorm(model):
        return model
    try:
        pairs = batchnorm_pairs(model)
    except Exception as exc:  # fx cannot trace data-dependent control flow: ship it unfolded
        warnings.warn(f"BatchNorm not folded: torch.fx cannot trace {type(model).__name__} ({exc})", stacklevel=2)
        return model
    folded = copy.deepcopy(model)
    for layer_name, bn_name in pairs:
        layer, bn = folded.get_submodule(layer_name), cast(_BatchNorm, folded.get_submodule(bn_name))
        fused = (
            fuse_linear_bn_eval(layer, bn) if isinstance(layer, nn.Linear) else fuse_conv_bn_eval(cast(Any, layer), bn)
        )
        folded.set_submodule(layer_name, fused)
        folded.set_submodule(bn_name, nn.Identity())
    return folded.eval()


class OrtModule(nn.Module):
    """An ONNX Runtime session behind ``nn.Module``'s call: ``module(x)`` runs the ONNX model on ``x``."""

    def __init__(self, onnx_model: bytes, threads: int | None = None) -> None:
        super().__init__()
        self.onnx_model = onnx_model
        self.session = ort_session(onnx_model, threads)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x.detach().cpu().numpy())})[0]
        return torch.from_numpy(np.asarray(out))


def static_int8(family: Family, deployed: nn.Module, data: Any) -> bytes:
    """ONNX bytes of ``deployed`` quantized statically to int8 (QDQ, per channel) on ``family.calibration_inputs``."""
    example = family.example_inputs(data, 1)
    calibration = family.calibration_inputs(data).detach().cpu().numpy()
    return quantize_onnx_static(family.export_onnx(deployed, example), calibration)
