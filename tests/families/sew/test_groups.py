"""SEW's sensitivity groups: feature encoder, attention, feed-forward, each transformer layer, and the others."""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

from prunelib.families.sew.deploy import prepare_model
from prunelib.families.sew.family import SewFamily
from prunelib.families.sew.groups import sew_groups
from prunelib.families.sew.models import build_sew

from .tiny import TINY as TINY_BASE

TINY = dataclasses.replace(TINY_BASE, num_hidden_layers=2, mask_time_prob=0.0, dropout=0.0)


def ids(pairs) -> set[int]:
    return {id(m) for m, _ in pairs}


def test_sew_groups_cover_the_components() -> None:
    model = prepare_model(build_sew(TINY, seed=0))
    groups = sew_groups(model)
    assert list(groups) == ["feature_extractor", "attention", "feed_forward", "layer.0", "layer.1"]
    assert all(name == "weight" for pairs in groups.values() for _, name in pairs)
    assert ids(groups["feature_extractor"]) == {id(c.conv) for c in model.sew.feature_extractor.conv_layers}
    assert len(groups["feature_extractor"]) == 3
    assert len(groups["attention"]) == 8 and len(groups["feed_forward"]) == 4
    layers = model.sew.encoder.layers
    assert ids(groups["attention"]) == {
        id(getattr(layer.attention, p)) for layer in layers for p in ("q_proj", "k_proj", "v_proj", "out_proj")
    }
    assert ids(groups["feed_forward"]) == {
        id(getattr(layer.feed_forward, p)) for layer in layers for p in ("intermediate_dense", "output_dense")
    }
    assert len(groups["layer.0"]) == 6
    for i in (0, 1):
        assert ids(groups[f"layer.{i}"]) == {id(m) for m in layers[i].modules() if isinstance(m, nn.Linear)}


def test_others_add_the_pos_conv_upsampling_and_head() -> None:
    model = prepare_model(build_sew(TINY, seed=0))
    more = sew_groups(model, others=True)
    assert list(more)[:5] == list(sew_groups(model))
    assert list(more)[5:] == ["pos_conv_embed", "upsample", "lm_head"]
    assert ids(more["pos_conv_embed"]) == {id(model.sew.encoder.pos_conv_embed.conv)}
    assert ids(more["upsample"]) == {id(model.sew.encoder.upsample.projection)}
    assert ids(more["lm_head"]) == {id(model.lm_head)}


def test_others_need_weight_norm_folded_and_non_sew_models_are_rejected() -> None:
    with pytest.raises(ValueError, match="fold_weight_norm"):
        sew_groups(build_sew(TINY, seed=0), others=True)
    sew_groups(build_sew(TINY, seed=0))  # without the pos conv, folding is not needed
    with pytest.raises(ValueError, match="SEW"):
        sew_groups(nn.Linear(2, 2))


def test_the_family_uses_these_groups_for_sensitivity() -> None:
    model = prepare_model(build_sew(TINY, seed=0))
    family, groups = SewFamily().sensitivity_groups(model), sew_groups(model)
    assert list(family) == list(groups)
    assert all(ids(family[k]) == ids(groups[k]) for k in groups)
