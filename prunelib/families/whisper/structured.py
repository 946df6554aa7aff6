"""Structured pruning of Whisper: attention heads and feed-forward neurons, both through Torch-Pruning.

As everywhere in prunelib, choosing and removing are separate steps. :func:`structured_step`
records its choice as ``torch.nn.utils.prune`` masks (IMP's rewind and retraining work
unchanged); :func:`shrink` then builds a physically smaller copy with the same outputs.

The units, in the encoder and the decoder alike:

* **Attention heads** of every attention module (encoder self-attention, decoder self- and
  cross-attention). Torch-Pruning (1.6) couples a module's ``q_proj``, ``k_proj`` and ``v_proj``
  rows with the ``out_proj`` columns in one group (the attention op joins them elementwise), whose
  units are single rows. prunelib's units are whole heads: a head is its ``head_dim`` rows, its
  score the L2 norm of all its coupled weights (rows, biases, ``out_proj`` columns), and a step
  passes Torch-Pruning head-aligned row sets, as Torch-Pruning's own ``MetaPruner(num_heads=...,
  prune_num_heads=True, prune_head_dims=False)`` does. With its value rows zero a masked head adds
  nothing, whatever its attention pattern.
* **Feed-forward neurons** (``fc1`` rows and bias with the ``fc2`` columns): a dead neuron outputs
  ``gelu(0) = 0``. They are exactly the engine's units.

The hidden size (``d_model``) is never pruned: the engine ignores (keeps whole) the conv front end,
every ``out_proj`` and ``fc2`` (their outputs are the hidden size) and ``proj_out``; embeddings,
positional embeddings and layer norms are never roots. The engine traces the model through
:class:`Traced`, a module sharing the model's layers whose forward takes only the log-mel features
(Whisper's full ``2 × max_source_positions`` frames) and decodes one start token.

The rule (:class:`~prunelib.pruning.structured.UnitRule`) is the engine's: criterion (``l2``;
``bn-scale`` falls back to ``l2``, Whisper has no BatchNorm), scope per module or global (heads
ranked with heads, neurons with neurons, each by score over its module's mean), ``round_to`` on the
neurons kept per layer (heads are never rounded). Every module keeps at least one head and every
layer one neuron.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils import prune

from prunelib.config import check_fraction
from prunelib.families.whisper.groups import whisper_parts
from prunelib.pruning import structured as engine
from prunelib.pruning.structured import DEFAULT_RULE, Structure, UnitRule

#: Kinds of units a structured step may remove.
UNIT_KINDS = ("heads", "ffn")
_INNER = "inner."  # the model's name inside Traced
_QKV = ("q_proj", "k_proj", "v_proj")


class Traced(nn.Module):
    """What the engine traces: ``model`` (shared, not copied) on log-mel features and one start token."""

    def __init__(self, model: nn.Module, start_token: int) -> None:
        super().__init__()
        self.inner = model
        self.register_buffer("decoder_input_ids", torch.tensor([[start_token]]), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.inner(input_features=features, decoder_input_ids=self.decoder_input_ids, use_cache=False)
        logits = getattr(out, "logits", None)
        return cast(torch.Tensor, logits if logits is not None else out.last_hidden_state)


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every attention module whose heads are pruned, by its name in ``model``, encoder first.

    Raises:
        ValueError: ``model`` does not have Whisper's layout.
    """
    parts = whisper_parts(model)
    out: dict[str, nn.Module] = {}
    for side, layers, kinds in (
        ("encoder", parts.encoder_layers, ("self_attn",)),
        ("decoder", parts.decoder_layers, ("self_attn", "encoder_attn")),
    ):
        for i, layer in enumerate(layers):
            for kind in kinds:
                out[f"{parts.prefix}{side}.layers.{i}.{kind}"] = layer.get_submodule(kind)
    return out


def ffn_roots(model: nn.Module) -> dict[str, nn.Module]:
    """Every ``fc1`` (the root of a layer's feed-forward neurons), by its name in ``model``, encoder first."""
    parts = whisper_parts(model)
    return {
        f"{parts.prefix}{side}.layers.{i}.fc1": layer.get_submodule("fc1")
        for side, layers in (("encoder", parts.encoder_layers), ("decoder", parts.decoder_layers))
        for i, layer in enumerate(layers)
    }


def _kinds(units: Iterable[str]) -> tuple[str, ...]:
    kinds = tuple(units)
    if isinstance(units, str) or not kinds or any(k not in UNIT_KINDS for k in kinds):
        raise ValueError(f"units must be a non-empty selection of {list(UNIT_KINDS)}, got {units!r}")
    return kinds


def structure(model: nn.Module, units: Iterable[str] = UNIT_KINDS) -> Structure:
    """How the engine traces ``Traced(model)``: full-length silent features, every non-root Linear/Conv ignored.

    The roots are each attention module's ``q/k/v_proj`` (``"heads"`` in ``units``) and each
    layer's ``fc1`` (``"ffn"``); the structure's modules are ``model``'s own.
    """
    kinds = _kinds(units)
    roots: list[nn.Module] = []
    if "heads" in kinds:
        roots += [cast(nn.Module, getattr(a, p)) for a in attention_modules(model).values() for p in _QKV]
    if "ffn" in kinds:
        roots += list(ffn_roots(model).values())
    keep = {id(m) for m in roots}
    ignored = tuple(
        m for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and id(m) not in keep
    )
    conv1, conv2 = (cast(nn.Conv1d, c) for c in whisper_parts(model).convs)
    frames = int(_config(model).max_source_positions) * conv1.stride[0] * conv2.stride[0]
    return Structure(torch.zeros(1, conv1.in_channels, frames), ignored)


def _config(model: nn.Module) -> Any:
    whisper_parts(model)  # a model laid out otherwise is named as such first
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "max_source_positions"):
        raise ValueError(f"{type(model).__name__} has no Whisper config (config.max_source_positions)")
    return config


def _traced(model: nn.Module) -> Traced:
    start = getattr(_config(model), "decoder_start_token_id", None)
    return Traced(model, int(start) if start is not None else 0)


def _group_names(model: nn.Module, scored: Iterable[str], kinds: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Engine root key -> (kind, group name): an attention module's name for heads, ``fc1``'s for neurons.

    Raises:
        RuntimeError: Torch-Pruning's groups are not one per attention module and one per ``fc1``.
    """
    attentions = attention_modules(model) if "heads" in kinds else {}
    ffns = ffn_roots(model) if "ffn" in kinds else {}
    out: dict[str, tuple[str, str]] = {}
    for key in scored:
        name = key.removeprefix(_INNER)
        owner, _, leaf = name.rpartition(".")
        if name in ffns:
            out[key] = ("ffn", name)
        elif owner in attentions and leaf in _QKV:
            out[key] = ("heads", owner)
    found = sorted(n for _, n in out.values())
    if len(out) != len(list(scored)) or found != sorted([*attentions, *ffns]):
        raise RuntimeError(
            f"Torch-Pruning found the unit groups {sorted(scored)}; expected one per attention module "
            f"({len(attentions)}) rooted at q/k/v_proj and one per fc1 ({len(ffns)})"
        )
    return out


def _head_dim(model: nn.Module, name: str) -> int:
    return int(cast(Any, model.get_submodule(name)).head_dim)


def _heads(score: torch.Tensor, alive: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row scores and alive flags -> per head: the L2 norm over its rows, alive while any row is."""
    n = score.numel() // head_dim
    return score.pow(2).reshape(n, head_dim).sum(1).sqrt(), alive.reshape(n, head_dim).any(1)


def _scored(model: nn.Module, kinds: tuple[str, ...], criterion: str) -> dict[str, tuple[str, str, Any, Any]]:
    """Engine key -> (kind, group name, score, alive): per head for attention, per neuron for ``fc1``."""
    rows = engine.unit_scores(_traced(model), structure(model, kinds), criterion)
    out = {}
    for key, (kind, name) in _group_names(model, rows, kinds).items():
        score, alive = rows[key]
        if kind == "heads":
            score, alive = _heads(score, alive, _head_dim(model, name))
        out[key] = (kind, name, score, alive)
    return out


def structured_step(
    model: nn.Module, amount: float, rule: UnitRule = DEFAULT_RULE, units: Iterable[str] = UNIT_KINDS
) -> None:
    """One structured step in place: mask ``amount`` of the alive heads and/or FFN neurons (per ``rule``).

    ``units``: ``("heads", "ffn")`` (default), ``("ffn",)`` or ``("heads",)``. Heads are ranked
    among heads and neurons among neurons; ``rule.round_to`` applies to neurons only.

    Raises:
        TypeError: ``rule`` is not a :class:`UnitRule`.
        ValueError: ``amount`` is not in [0, 1], ``units`` names an unknown kind, or the model is not Whisper.
    """
    check_fraction("amount", amount)
    if not isinstance(rule, UnitRule):
        raise TypeError(f"rule must be a UnitRule, got {type(rule).__name__}")
    kinds = _kinds(units)
    scored = _scored(model, kinds, rule.criterion)
    chosen: dict[str, list[int]] = {}
    for kind in kinds:
        mine = {key: (s, a) for key, (k, _, s, a) in scored.items() if k == kind}
        picked = engine.choose_scored(mine, amount, rule if kind == "ffn" else replace(rule, round_to=1))
        if kind == "heads":
            for key, heads in picked.items():
                d = _head_dim(model, scored[key][1])
                picked[key] = [h * d + j for h in heads for j in range(d)]
        chosen.update(picked)
    if not chosen:
        return
    traced = _traced(model)
    masks = engine.group_masks(traced, structure(model, kinds), chosen)
    modules = dict(traced.named_modules())
    for name, mask in masks.items():
        owner, _, param = name.rpartition(".")
        prune.custom_from_mask(modules[owner], param, mask)


def unit_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``(alive, total)`` per group: heads of each attention module, neurons of each ``fc1``, in layer order."""
    scored = _scored(model, UNIT_KINDS, "l2")
    return {name: (int(a.sum()), a.numel()) for _, name, _, a in scored.values()}


def shrink(model: nn.Module) -> nn.Module:
    """A physically smaller copy of ``model`` without its dead heads and neurons, in eval mode; same outputs.

    ``model`` is not changed; it may carry pruning masks (the copy has pruning made permanent).
    Torch-Pruning cuts the dead rows; each attention module's ``num_heads`` is then set to what is
    left (its ``embed_dim``, the unpruned input width, stays). The config still states the original
    sizes: the copy is for inference and export, not ``save_pretrained``.

    Raises:
        ValueError: an attention module has no live head, or dead rows that are not whole heads
            (pruned other than by :func:`structured_step`).
    """
    rows = engine.unit_scores(_traced(model), structure(model), "l2")
    for key, (kind, name) in _group_names(model, rows, UNIT_KINDS).items():
        if kind != "heads":
            continue
        alive = rows[key][1].reshape(-1, _head_dim(model, name))
        if not bool(alive.any()):
            raise ValueError(f"{name}: every head is dead; an attention module must keep one")
        if not bool((alive.all(1) | ~alive.any(1)).all()):
            raise ValueError(f"{name}: some heads are only partly dead; shrink removes whole heads")
    small = cast(Traced, engine.shrink(_traced(model), structure(model))).inner
    for attn in attention_modules(small).values():
        width = cast(nn.Linear, attn.q_proj).out_features
        # torch's stub types Module.__setattr__ values as Tensor | Module; a plain int attribute is fine
        attn.num_heads = width // int(cast(Any, attn).head_dim)  # type: ignore[assignment]
    return small.eval()
