"""Structured pruning of SEW CTC models: feed-forward units and conv channels through the engine, heads by hand.

As everywhere in prunelib, choosing and removing are separate steps. :func:`structured_prune_step`
records its choice as ``torch.nn.utils.prune`` masks, so IMP's rewind and retraining work
unchanged; :func:`shrink_sew` then builds a copy with smaller layers and the same outputs, which
runs faster in PyTorch and exports smaller to ONNX.

What may lose units, and why exactly these (the forward pass must not change when they go):

* **Feed-forward units** of every transformer layer (Torch-Pruning engine): rows of
  ``intermediate_dense`` (and their bias) with the matching columns of ``output_dense``. A dead
  unit outputs ``act(0) = 0``.
* **Feature-encoder channels** of conv layers whose output feeds another conv and is not
  normalised across channels (Torch-Pruning engine): layers ``1 .. n-2`` in SEW's ``"group"``
  layout (SEW-tiny's), with the next conv's input channels. Layer 0 is followed by a per-channel
  GroupNorm (Torch-Pruning leaves its ``num_groups`` stale), the last layer by a LayerNorm over
  channels; the ``"layer"`` layout has a LayerNorm over channels after every conv, so it has no
  removable channels.
* **Attention heads** of every transformer layer (by hand, here): the head's ``head_dim`` rows of
  ``q_proj``, ``k_proj`` and ``v_proj`` (and biases) with the matching columns of ``out_proj``.
  With its value rows zero a head adds nothing, whatever its attention pattern. SEW's attention
  splits heads with ``view(..., -1, head_dim)``, so fewer heads need no other change. They stay
  hand-written because the engine's units are single q/k/v rows: cuts that are not whole heads
  break SEW's attention (a ``view`` error) or silently merge what is left into fewer heads.

The engine (:mod:`prunelib.pruning.structured`) traces the model on a short clip
(:func:`structure`) and must see exactly the first two kinds: every other Linear and Conv layer is
in ``Structure.ignored``. Those are ``lm_head``, ``upsample.projection`` (its reshape into
``lm_head`` Torch-Pruning maps wrongly), the feature projection if any, conv 0 and the last conv,
the grouped positional conv (which Torch-Pruning cannot shrink and the engine cannot score), and
every ``q/k/v_proj``, ``out_proj`` and ``output_dense`` (the latter two produce the hidden size,
which LayerNorms make non-removable).

The rule, as the engine's: per group (one layer's units), ``count_to_prune(amount, alive)`` of the
alive units with the smallest L2 norm go, ties to the lower index, at least one unit stays. An
engine unit's norm is over every weight coupled to it (its ``intermediate_dense`` row and bias and
``output_dense`` column; its conv filter and the next conv's input slice); a head's over its
``q/k/v`` rows and ``out_proj`` columns. A non-default :class:`~prunelib.pruning.structured.UnitRule`
applies to the engine's groups only; heads are always ranked by L2, per layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn
from torch.nn.utils import prune

from prunelib.families.sew.deploy import fold_weight_norm
from prunelib.families.sew.onnx import latency_input
from prunelib.pruning import structured as engine
from prunelib.pruning.neurons import alive_neurons, effective_tensor, rebuild_layer
from prunelib.pruning.structured import DEFAULT_RULE, Structure, UnitRule, count_to_prune

#: Seconds of audio the engine traces a SEW model on (a dozen frames of SEW-tiny: tracing is quick).
TRACE_SECONDS = 0.25


def _base(model: nn.Module) -> nn.Module:
    base = getattr(model, "sew", None)
    base = base if base is not None else getattr(model, "base_model", model)
    if not hasattr(base, "encoder") or not hasattr(base, "feature_extractor"):
        raise TypeError(f"expected a SEW model (SEWForCTC or SEWModel), got {type(model).__name__}")
    return cast(nn.Module, base)


def _zero_preserving(act: Callable[[torch.Tensor], torch.Tensor], where: str) -> None:
    if float(act(torch.zeros(1))[0]) != 0.0:
        raise ValueError(f"{where}: activation {act!r} does not map 0 to 0, so its dead units cannot be removed")


def engine_roots(model: nn.Module) -> dict[str, nn.Module]:
    """The root layer of every group the engine prunes, by group name, feature encoder first.

    ``feature_extractor.conv_layers.i`` -> its conv (inner layers without a norm across channels);
    ``encoder.layers.i.feed_forward`` -> its ``intermediate_dense``.

    Raises:
        TypeError: ``model`` is not a SEW model.
        ValueError: an activation does not map 0 to 0 (dead units would not be silent).
    """
    base = _base(model)
    roots: dict[str, nn.Module] = {}
    convs = list(cast(nn.ModuleList, cast(nn.Module, base.feature_extractor).conv_layers))
    for i in range(1, len(convs) - 1):
        layer = convs[i]
        if hasattr(layer, "layer_norm"):  # normalised across channels: not removable
            continue
        _zero_preserving(cast(nn.Module, layer.activation), f"feature_extractor.conv_layers.{i}")
        roots[f"feature_extractor.conv_layers.{i}"] = cast(nn.Module, layer.conv)
    for i, layer in enumerate(cast(nn.ModuleList, cast(nn.Module, base.encoder).layers)):
        feed_forward = cast(nn.Module, layer.feed_forward)
        _zero_preserving(cast(nn.Module, feed_forward.intermediate_act_fn), f"encoder.layers.{i}.feed_forward")
        roots[f"encoder.layers.{i}.feed_forward"] = cast(nn.Module, feed_forward.intermediate_dense)
    return roots


def attention_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every transformer layer's attention (whose heads are pruned by hand), by group name."""
    layers = cast(nn.ModuleList, cast(nn.Module, _base(model).encoder).layers)
    return {f"encoder.layers.{i}.attention": cast(nn.Module, layer.attention) for i, layer in enumerate(layers)}


def structure(model: nn.Module) -> Structure:
    """How the engine traces ``model``: a short clip, and every Linear/Conv but the roots of :func:`engine_roots` ignored."""
    roots = {id(m) for m in engine_roots(model).values()}
    ignored = tuple(
        m for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and id(m) not in roots
    )
    return Structure(latency_input(TRACE_SECONDS), ignored)


def _engine_names(model: nn.Module) -> dict[str, str]:
    """Engine group key (the root's name in ``model``) -> group name of :func:`engine_roots`."""
    full = {id(m): n for n, m in model.named_modules()}
    return {full[id(m)]: name for name, m in engine_roots(model).items()}


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
    n = count_to_prune(amount, int(alive.sum()))
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


def structured_prune_step(model: nn.Module, amount: float, rule: UnitRule = DEFAULT_RULE) -> None:
    """One structured step in place: the engine's groups by ``rule``, then every layer's heads (L2, per layer)."""
    engine.prune_units(model, structure(model), amount, rule)
    for attn in attention_layers(model).values():
        head_prune(attn, amount)


def unit_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``(alive, total)`` units per group: conv channels, then each layer's heads and feed-forward units.

    Raises:
        RuntimeError: the engine's groups are not exactly those of :func:`engine_roots`.
    """
    names = _engine_names(model)
    counts = engine.unit_counts(model, structure(model))
    if set(counts) != set(names):
        raise RuntimeError(f"Torch-Pruning found the unit groups {sorted(counts)}, expected {sorted(names)}")
    by_name = {names[key]: c for key, c in counts.items()}
    out = {name: c for name, c in by_name.items() if name.startswith("feature_extractor.")}
    for name, attn in attention_layers(model).items():
        out[name] = (int(alive_heads(attn).sum()), head_count(attn))
        ffn = name.removesuffix("attention") + "feed_forward"
        out[ffn] = by_name[ffn]
    return out


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
    and weight norm folded (as every exported or timed model, :func:`prunelib.families.sew.deploy.inference_copy`):
    the engine cuts the dead feed-forward units and conv channels on its own copy, the dead heads go by hand.
    Its config still states the original sizes: it is for inference and export, not ``save_pretrained``.
    """
    small = fold_weight_norm(engine.shrink(model, structure(model)).eval())  # the engine's copy: pruning made permanent
    for attn in attention_layers(small).values():
        keep = _keep(alive_heads(attn))
        if not bool(keep.all()):
            _shrink_heads(attn, keep)
    for layer in cast(nn.ModuleList, cast(nn.Module, _base(small).feature_extractor).conv_layers):
        conv = cast(nn.Conv1d, layer.conv)  # keep the layers' own size attributes true
        layer.in_conv_dim, layer.out_conv_dim = conv.in_channels, conv.out_channels  # type: ignore[assignment]
    return small.eval()
