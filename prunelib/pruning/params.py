"""Which parameters exist as the forward pass sees them, and which ones pruning may touch by default."""

from __future__ import annotations

import torch
from torch import nn

Params = list[tuple[nn.Module, str]]

#: Layers whose ``weight`` unstructured pruning touches by default (biases and norms stay dense, as in the lab).
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def linear_and_conv_weights(model: nn.Module, embeddings: bool = False) -> Params:
    """``(module, "weight")`` of every Linear and Conv layer, plus every Embedding when ``embeddings``."""
    kinds = WEIGHT_LAYERS + ((nn.Embedding,) if embeddings else ())
    return [(m, "weight") for m in model.modules() if isinstance(m, kinds)]


def effective_parameters(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Each parameter as the forward pass sees it: ``weight_orig * weight_mask`` where pruned.

    Names are the plain ones (``layers.0.weight``), so the list is the same before and after
    ``prune.remove``.
    """
    out: list[tuple[str, torch.Tensor]] = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for p_name, param in module.named_parameters(recurse=False):
            if p_name.endswith("_orig"):
                base = p_name[: -len("_orig")]
                mask = getattr(module, f"{base}_mask", None)
                value = param.detach() if mask is None else param.detach() * mask
                out.append((prefix + base, value))
            else:
                out.append((prefix + p_name, param.detach()))
    return out


def count_parameters(model: nn.Module) -> int:
    """Total number of parameters (effective weights; masks and buffers not counted)."""
    return sum(p.numel() for _, p in effective_parameters(model))


def param_names(model: nn.Module, params: Params) -> list[str]:
    """Plain names (``layers.0.weight``) of ``params`` within ``model``."""
    ids = {id(m): name for name, m in model.named_modules()}
    return [f"{ids[id(m)]}.{n}" if ids[id(m)] else n for m, n in params]
