"""Structured pruning of SEW CTC models: feed-forward units, attention heads and conv channels, then shrinking.

As for the MLP (:mod:`prunelib.pruning.neurons`), choosing and removing are separate steps.
:func:`structured_prune_step` records its choice as ``torch.nn.utils.prune`` masks, so IMP's
rewind and retraining work unchanged; :func:`shrink_sew` then builds a copy with smaller layers
and the same outputs, which runs faster in PyTorch and exports smaller to ONNX.

What may lose units, and why exactly these (the forward pass must not change when they go):

* **Feed-forward units** of every transformer layer: rows of ``intermediate_dense`` (and their
  bias) with the matching columns of ``output_dense``. A dead unit outputs ``act(0) = 0``.
* **Attention heads** of every transformer layer: the head's ``head_dim`` rows of ``q_proj``,
  ``k_proj`` and ``v_proj`` (and biases) with the matching columns of ``out_proj``. With its
  value rows zero a head adds nothing, whatever its attention pattern. SEW's attention splits
  heads with ``view(..., -1, head_dim)``, so fewer heads need no other change.
* **Feature-encoder channels** of conv layers whose output feeds another conv and is not
  normalised across channels: layers ``1 .. n-2`` in SEW's ``"group"`` layout (SEW-tiny's).
  Layer 0 is followed by a per-channel GroupNorm, which turns a zero channel into the constant
  ``act(beta)``, and the last layer by a LayerNorm over channels; the ``"layer"`` layout has a
  LayerNorm over channels after every conv, so it has no removable channels.

The rule is the MLP's: per group (one layer's units), ``count_to_prune(amount, alive)`` of the
alive units with the smallest L2 norm go, ties to the lower index, at least one unit stays.
A unit's norm is over every weight that belongs to it: its ``intermediate_dense`` row, its
conv filter, or its head's ``q/k/v`` rows and ``out_proj`` columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn.utils import prune

from prunelib.families.sew.deploy import inference_copy
from prunelib.pruning.neurons import (
    alive_neurons,
    count_to_prune,
    effective_tensor,
    neuron_prune,
    rebuild_layer,
    shrink_pair,
)


@dataclass(frozen=True)
class UnitGroup:
    """One set of units pruned together: its name, kind (``ffn``, ``heads``, ``conv``) and module."""

    name: str
    kind: str
    module: nn.Module  # SEWFeedForward, SEWAttention, or the conv layer (with ``.conv``)
    consumer: nn.Module | None = None  # conv groups: the next conv layer


def _base(model: nn.Module) -> nn.Module:
    base = getattr(model, "sew", None)
    base = base if base is not None else getattr(model, "base_model", model)
    if not hasattr(base, "encoder") or not hasattr(base, "feature_extractor"):
        raise TypeError(f"expected a SEW model (SEWForCTC or SEWModel), got {type(model).__name__}")
    return cast(nn.Module, base)


def _zero_preserving(act: Callable[[torch.Tensor], torch.Tensor], where: str) -> None:
    if float(act(torch.zeros(1))[0]) != 0.0:
        raise ValueError(f"{where}: activation {act!r} does not map 0 to 0, so its dead units cannot be removed")


def unit_groups(model: nn.Module) -> list[UnitGroup]:
    """Every group of removable units of a SEW model, feature encoder first (see the module docstring).

    Raises:
        TypeError: ``model`` is not a SEW model.
        ValueError: an activation does not map 0 to 0 (dead units would not be silent).
    """
    base = _base(model)
    groups: list[UnitGroup] = []
    convs = list(cast(nn.ModuleList, cast(nn.Module, base.feature_extractor).conv_layers))
    for i in range(1, len(convs) - 1):
        layer = convs[i]
        if hasattr(layer, "layer_norm"):  # normalised across channels: not removable
            continue
        _zero_preserving(cast(nn.Module, layer.activation), f"feature_extractor.conv_layers.{i}")
        groups.append(UnitGroup(f"feature_extractor.conv_layers.{i}", "conv", layer, convs[i + 1]))
    for i, layer in enumerate(cast(nn.ModuleList, cast(nn.Module, base.encoder).layers)):
        groups.append(UnitGroup(f"encoder.layers.{i}.attention", "heads", cast(nn.Module, layer.attention)))
        feed_forward = cast(nn.Module, layer.feed_forward)
        _zero_preserving(cast(nn.Module, feed_forward.intermediate_act_fn), f"encoder.layers.{i}.feed_forward")
        groups.append(UnitGroup(f"encoder.layers.{i}.feed_forward", "ffn", feed_forward))
    return groups


# --------------------------------------------------------------------------- attention heads


def _head_rows(attn: nn.Module, heads: torch.Tensor) -> torch.Tensor:
    """Row indices of ``q/k/v_proj`` (and columns of ``out_proj``) belonging to ``heads``."""
    d = cast(int, attn.head_dim)
    return (heads.reshape(-1, 1) * d + torch.arange(d)).reshape(-1)


def _qkv(attn: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module]:
    """``attn``'s ``q_proj``, ``k_proj`` and ``v_proj``, in that order."""
    return cast(nn.Module, attn.q_proj), cast(nn.Module, attn.k_proj), cast(nn.Module, attn.v_proj)


def head_count(attn: nn.Module) -> int:
    """Heads ``attn`` currently has (its projection width over ``head_dim``)."""
    return cast(nn.Linear, attn.v_proj).weight.shape[0] // cast(int, attn.head_dim)


def alive_heads(attn: nn.Module) -> torch.Tensor:
    """Boolean vector over heads: False where the head's q, k and v rows and biases are all zero."""
    n, d = head_count(attn), cast(int, attn.head_dim)
    alive = torch.zeros(n, dtype=torch.bool)
    for proj in _qkv(attn):
        alive |= alive_neurons(proj).reshape(n, d).any(dim=1)
    return alive


def head_norms(attn: nn.Module) -> torch.Tensor:
    """L2 norm of every head's weights: its rows of ``q/k/v_proj`` and columns of ``out_proj``."""
    n, d = head_count(attn), cast(int, attn.head_dim)
    squares = torch.zeros(n, dtype=torch.float64)
    for proj in _qkv(attn):
        weight = cast(torch.Tensor, effective_tensor(proj, "weight"))
        squares += weight.double().pow(2).reshape(n, d, -1).sum(dim=(1, 2))
    out = cast(torch.Tensor, effective_tensor(cast(nn.Module, attn.out_proj), "weight")).double().pow(2)
    squares += out.reshape(out.shape[0], n, d).sum(dim=(0, 2))
    return squares.sqrt()


def head_prune(attn: nn.Module, amount: float) -> None:
    """Prune ``amount`` of ``attn``'s alive heads (lowest L2 norm), in place, as masks on q/k/v rows and biases."""
    alive = alive_heads(attn)
    remaining = int(alive.sum())
    if remaining == 0:
        return
    n = count_to_prune(amount, remaining)
    if n == 0:
        return
    norms = head_norms(attn)
    candidates = alive.nonzero().flatten()
    order = candidates[torch.sort(norms[candidates], stable=True).indices]
    rows = _head_rows(attn, order[:n])
    for proj in _qkv(attn):
        mask = torch.ones_like(cast(torch.Tensor, effective_tensor(proj, "weight")))
        mask[rows] = 0
        prune.custom_from_mask(proj, "weight", mask)
        if getattr(proj, "bias", None) is not None:
            prune.custom_from_mask(proj, "bias", mask[:, 0].clone())


# --------------------------------------------------------------------------- one step, counts


def structured_prune_step(model: nn.Module, amount: float) -> None:
    """One L2 structured step: ``amount`` of each group's alive units (:func:`unit_groups`), in place."""
    for group in unit_groups(model):
        if group.kind == "heads":
            head_prune(group.module, amount)
        elif group.kind == "ffn":
            neuron_prune([(cast(nn.Module, group.module.intermediate_dense), "weight")], amount)
        else:
            neuron_prune([(cast(nn.Module, group.module.conv), "weight")], amount)


def alive_units(group: UnitGroup) -> torch.Tensor:
    """Boolean vector over the units of ``group``: False where the unit is dead."""
    if group.kind == "heads":
        return alive_heads(group.module)
    if group.kind == "ffn":
        return alive_neurons(cast(nn.Module, group.module.intermediate_dense))
    return alive_neurons(cast(nn.Module, group.module.conv))


def units_remaining(model: nn.Module) -> dict[str, int]:
    """Alive units per group, e.g. ``{"encoder.layers.0.attention": 4, "encoder.layers.0.feed_forward": 1024}``."""
    return {g.name: int(alive_units(g).sum()) for g in unit_groups(model)}


def unit_sparsity(model: nn.Module) -> float:
    """Fraction of the removable units (channels, heads, feed-forward units) that are dead."""
    alive = [alive_units(g) for g in unit_groups(model)]
    total = sum(a.numel() for a in alive)
    return 1.0 - sum(int(a.sum()) for a in alive) / total if total else 0.0


# --------------------------------------------------------------------------- shrinking


def _keep(alive: torch.Tensor) -> torch.Tensor:
    keep = alive.clone()
    if not keep.any():  # a fully dead group keeps one (zero) unit so shapes stay valid
        keep[0] = True
    return keep


def _shrink_heads(attn: nn.Module, keep: torch.Tensor) -> None:
    rows = _head_rows(attn, keep.nonzero().flatten())
    for name in ("q_proj", "k_proj", "v_proj"):
        proj = getattr(attn, name)
        bias = effective_tensor(proj, "bias")
        setattr(
            attn,
            name,
            rebuild_layer(
                proj, cast(torch.Tensor, effective_tensor(proj, "weight"))[rows], None if bias is None else bias[rows]
            ),
        )
    out = cast(nn.Module, attn.out_proj)
    attn.out_proj = rebuild_layer(
        out, cast(torch.Tensor, effective_tensor(out, "weight"))[:, rows], effective_tensor(out, "bias")
    )
    # torch's stub types Module.__setattr__ values as Tensor | Module; plain int attributes are fine
    attn.num_heads = int(keep.sum())  # type: ignore[assignment]
    attn.embed_dim = cast(int, attn.num_heads) * cast(int, attn.head_dim)  # type: ignore[assignment]


def shrink_sew(model: nn.Module) -> nn.Module:
    """A new SEW model with every dead unit physically removed, in eval mode; same outputs.

    ``model`` is not changed; it may carry pruning masks. The copy has pruning made permanent
    and weight norm folded (as every exported or timed model, :func:`prunelib.families.sew.deploy.inference_copy`).
    Its config still states the original sizes: it is for inference and export, not ``save_pretrained``.
    """

    small = inference_copy(model)
    for group in unit_groups(small):
        keep = _keep(alive_units(group))
        if bool(keep.all()):
            continue
        if group.kind == "heads":
            _shrink_heads(group.module, keep)
        elif group.kind == "ffn":
            ff = group.module
            ff.intermediate_dense, ff.output_dense = shrink_pair(
                cast(nn.Module, ff.intermediate_dense), cast(nn.Module, ff.output_dense), keep
            )
        else:
            layer, nxt = group.module, cast(nn.Module, group.consumer)  # conv groups always have a consumer
            layer.conv, nxt.conv = shrink_pair(cast(nn.Module, layer.conv), cast(nn.Module, nxt.conv), keep)
            layer.out_conv_dim = nxt.in_conv_dim = int(keep.sum())  # type: ignore[assignment]
    return small.eval()
