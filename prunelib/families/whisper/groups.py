"""Whisper's layout, and its component groups for the sensitivity analysis.

:func:`whisper_parts` finds the encoder and decoder of a transformers Whisper model (and says
clearly when a model is laid out otherwise); :mod:`prunelib.families.whisper.structured` uses it
too. :func:`whisper_groups` lists what the sensitivity analysis prunes one group at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from prunelib.pruning.params import Params

#: Linear layers of one attention module, in the order they are listed.
ATTENTION_LINEARS = ("q_proj", "k_proj", "v_proj", "out_proj")
#: Linear layers of one feed-forward block.
FFN_LINEARS = ("fc1", "fc2")


@dataclass(frozen=True)
class WhisperParts:
    """The pieces of a Whisper model pruning touches, as modules of the model itself."""

    base: nn.Module  # the WhisperModel (``model.model`` of WhisperForConditionalGeneration)
    prefix: str  # its name in the model: "model." or ""
    convs: tuple[nn.Module, ...]  # the encoder's front end: conv1, conv2
    encoder_layers: tuple[nn.Module, ...]
    decoder_layers: tuple[nn.Module, ...]


def whisper_parts(model: nn.Module) -> WhisperParts:
    """The encoder front end and layers of a ``WhisperForConditionalGeneration`` or ``WhisperModel``.

    Raises:
        ValueError: ``model`` does not have Whisper's layout (``encoder.conv1/conv2``, ``encoder.layers``
            and ``decoder.layers`` with ``self_attn``, ``fc1`` and ``fc2``, and ``encoder_attn`` in the decoder).
    """
    base: Any = getattr(model, "model", model)  # transformers modules: attributes are dynamic
    prefix = "model." if base is not model else ""
    kind = type(model).__name__
    try:
        convs = (base.encoder.conv1, base.encoder.conv2)
        encoder_layers = tuple(base.encoder.layers)
        decoder_layers = tuple(base.decoder.layers)
    except (AttributeError, TypeError) as err:
        raise ValueError(
            f"{kind} does not have Whisper's layout (encoder.conv1/conv2, encoder/decoder.layers): {err}"
        ) from None
    if not encoder_layers or not decoder_layers:
        raise ValueError(f"{kind} has no encoder or no decoder layers")
    needs: list[tuple[str, int, Any, tuple[str, ...]]] = [
        ("encoder", i, layer, ("self_attn",)) for i, layer in enumerate(encoder_layers)
    ]
    needs += [("decoder", i, layer, ("self_attn", "encoder_attn")) for i, layer in enumerate(decoder_layers)]
    for side, i, layer, attentions in needs:
        for name in FFN_LINEARS + tuple(f"{a}.{p}" for a in attentions for p in ATTENTION_LINEARS):
            owner, _, leaf = name.rpartition(".")
            module = getattr(getattr(layer, owner) if owner else layer, leaf, None)
            if not isinstance(module, nn.Linear):
                raise ValueError(f"{kind} does not have Whisper's layout: {side}.layers.{i}.{name} is not a Linear")
    return WhisperParts(base, prefix, convs, encoder_layers, decoder_layers)


def _weights(modules: list[nn.Module]) -> Params:
    return [(m, "weight") for m in modules]


def _linears(layer: nn.Module, names: tuple[str, ...]) -> list[nn.Module]:
    return [layer.get_submodule(name) for name in names]


def whisper_groups(model: nn.Module) -> dict[str, Params]:
    """Component groups of a Whisper model, each a list of ``(module, "weight")``.

    ``encoder`` (front end and every Linear of the encoder layers), ``decoder`` (every Linear of
    the decoder layers), ``encoder.conv`` (conv1, conv2), ``encoder.blocks``, ``decoder.blocks``
    (the layers' Linears), ``encoder.attention``, ``encoder.ffn``, ``decoder.self_attention``,
    ``decoder.cross_attention``, ``decoder.ffn``, then ``encoder.layers.<i>`` and
    ``decoder.layers.<i>`` (every Linear of that layer). The token embedding (to which ``proj_out``
    is tied), the positional embeddings and the layer norms are in no group.

    Raises:
        ValueError: ``model`` does not have Whisper's layout.
    """
    parts = whisper_parts(model)
    enc_attn = [a for layer in parts.encoder_layers for a in _linears(layer, _prefixed("self_attn"))]
    enc_ffn = [f for layer in parts.encoder_layers for f in _linears(layer, FFN_LINEARS)]
    dec_self = [a for layer in parts.decoder_layers for a in _linears(layer, _prefixed("self_attn"))]
    dec_cross = [a for layer in parts.decoder_layers for a in _linears(layer, _prefixed("encoder_attn"))]
    dec_ffn = [f for layer in parts.decoder_layers for f in _linears(layer, FFN_LINEARS)]
    enc_blocks = [m for layer in parts.encoder_layers for m in _layer_linears(layer)]
    dec_blocks = [m for layer in parts.decoder_layers for m in _layer_linears(layer)]
    groups: dict[str, Params] = {
        "encoder": _weights(list(parts.convs) + enc_blocks),
        "decoder": _weights(dec_blocks),
        "encoder.conv": _weights(list(parts.convs)),
        "encoder.blocks": _weights(enc_blocks),
        "decoder.blocks": _weights(dec_blocks),
        "encoder.attention": _weights(enc_attn),
        "encoder.ffn": _weights(enc_ffn),
        "decoder.self_attention": _weights(dec_self),
        "decoder.cross_attention": _weights(dec_cross),
        "decoder.ffn": _weights(dec_ffn),
    }
    for side, layers in (("encoder", parts.encoder_layers), ("decoder", parts.decoder_layers)):
        for i, layer in enumerate(layers):
            groups[f"{side}.layers.{i}"] = _weights(_layer_linears(layer))
    return groups


def _prefixed(attention: str) -> tuple[str, ...]:
    return tuple(f"{attention}.{p}" for p in ATTENTION_LINEARS)


def _layer_linears(layer: nn.Module) -> list[nn.Module]:
    """Every Linear of one encoder or decoder layer, in module order."""
    return [m for m in layer.modules() if isinstance(m, nn.Linear)]
