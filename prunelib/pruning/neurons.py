"""Layer helpers for hand-written unit pruning (SEW's attention heads, :mod:`prunelib.families.sew.structured`).

Every other unit (a Linear's neurons, a Conv's channels, SEW's feed-forward units and conv
channels) is chosen, masked and cut by the Torch-Pruning engine, :mod:`prunelib.pruning.structured`,
which also holds the counting rule (:func:`~prunelib.pruning.structured.count_to_prune`). What is
left here reads a layer as the forward pass sees it and rebuilds one smaller:

* :func:`effective_tensor`: ``weight_orig * weight_mask`` (fresh, also right after a rewind);
* :func:`alive_neurons`: which output rows still have a nonzero weight or bias;
* :func:`rebuild_layer`: a plain Linear holding given (sliced) weights.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn


def effective_tensor(module: nn.Module, name: str) -> torch.Tensor | None:
    """``name`` of ``module`` as the forward pass uses it, recomputed from ``*_orig * *_mask``.

    Recomputed rather than read from ``module.<name>``, which torch refreshes only on forward
    and so is stale right after a rewind.
    """
    orig = getattr(module, name + "_orig", None)
    if orig is not None:
        return (orig * getattr(module, name + "_mask").to(orig.dtype)).detach()
    value = getattr(module, name, None)
    return None if value is None else value.detach()


def alive_neurons(module: nn.Module) -> torch.Tensor:
    """Boolean vector over output units of ``module``: False where the unit is dead.

    Dead means its effective weight row and bias are all zero, so after a ReLU it outputs 0
    for every input. Judged on values, so it works on masked and on ``prune.remove``-d models.
    """
    weight = effective_tensor(module, "weight")
    if weight is None:
        raise ValueError(f"module {module!r} has no weight")
    alive = weight.reshape(weight.shape[0], -1).ne(0).any(dim=1)
    bias = effective_tensor(module, "bias")
    if bias is not None:
        alive |= bias.ne(0)
    return alive


def rebuild_layer(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A fresh Linear like ``module`` holding ``weight`` and ``bias`` (no pruning hooks), in their dtype."""
    if not isinstance(module, nn.Linear):
        raise TypeError(f"can rebuild a Linear, got {type(module).__name__}")
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None).to(dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            cast(torch.Tensor, new.bias).copy_(bias)  # built with bias=True just above
    return new
