"""SEW's component groups for the sensitivity analysis: front end against transformer blocks, layer by layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunelib.pruning.params import Params


def sew_groups(model: nn.Module, others: bool = False) -> dict[str, Params]:
    """Component groups of a SEW (or wav2vec2-style) CTC model.

    ``feature_extractor`` (every conv of the feature encoder), ``attention`` (q, k, v and out
    projections of every layer), ``feed_forward`` (both dense layers of every layer), then
    ``layer.0``, ``layer.1``, ... (every Linear of that transformer layer). With ``others``
    also ``pos_conv_embed``, ``upsample`` (SEW's upsampling projection, if any) and ``lm_head``.
    The positional conv must have its weight norm folded first
    (:func:`prunelib.families.sew.deploy.fold_weight_norm`) for ``others``.

    Raises:
        ValueError: ``model`` does not have the SEW/wav2vec2 layout.
    """
    base: Any = getattr(model, "base_model", model)  # a transformers model: its attributes are dynamic
    try:
        convs: list[nn.Module] = [layer.conv for layer in base.feature_extractor.conv_layers]
        layers: list[nn.Module] = list(base.encoder.layers)
    except AttributeError as err:
        raise ValueError(f"{type(model).__name__} does not look like a SEW/wav2vec2 CTC model: {err}") from None
    groups: dict[str, Params] = {"feature_extractor": [(c, "weight") for c in convs]}
    groups["attention"] = [
        (getattr(layer.attention, p), "weight") for layer in layers for p in ("q_proj", "k_proj", "v_proj", "out_proj")
    ]
    groups["feed_forward"] = [
        (getattr(layer.feed_forward, p), "weight") for layer in layers for p in ("intermediate_dense", "output_dense")
    ]
    for i, layer in enumerate(layers):
        groups[f"layer.{i}"] = [(m, "weight") for m in layer.modules() if isinstance(m, nn.Linear)]
    if others:
        pos: nn.Module = base.encoder.pos_conv_embed.conv
        if torch.nn.utils.parametrize.is_parametrized(pos):
            raise ValueError("pos_conv_embed weight is parametrized: call fold_weight_norm(model) first")
        groups["pos_conv_embed"] = [(pos, "weight")]
        upsample = getattr(base.encoder, "upsample", None)
        if upsample is not None:
            groups["upsample"] = [(upsample.projection, "weight")]
        head = getattr(model, "lm_head", None)
        if head is not None:
            groups["lm_head"] = [(head, "weight")]
    return groups
