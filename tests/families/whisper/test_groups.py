"""Whisper's sensitivity groups: front end, blocks, attention against FFN, each layer; embeddings left out."""

from __future__ import annotations

import pytest
from torch import nn

from prunelib.families.whisper.groups import whisper_groups, whisper_parts

from .random_whisper import random_whisper


def ids(pairs) -> list[int]:
    return [id(m) for m, _ in pairs]


def test_the_groups_are_named_in_order_and_prune_weights_only() -> None:
    groups = whisper_groups(random_whisper(layers=2))
    assert list(groups) == [
        "encoder",
        "decoder",
        "encoder.conv",
        "encoder.blocks",
        "decoder.blocks",
        "encoder.attention",
        "encoder.ffn",
        "decoder.self_attention",
        "decoder.cross_attention",
        "decoder.ffn",
        "encoder.layers.0",
        "encoder.layers.1",
        "decoder.layers.0",
        "decoder.layers.1",
    ]
    assert all(name == "weight" for pairs in groups.values() for _, name in pairs)


def test_per_layer_groups_and_the_conv_group_cover_every_encoder_and_decoder_layer_exactly_once() -> None:
    model = random_whisper(layers=3)
    groups = whisper_groups(model)
    per_layer = [
        i for name, pairs in groups.items() if ".layers." in name or name == "encoder.conv" for i in ids(pairs)
    ]
    expected = [
        id(m)
        for part in (model.model.encoder, model.model.decoder)
        for m in part.modules()
        if isinstance(m, (nn.Linear, nn.Conv1d))
    ]
    assert sorted(per_layer) == sorted(expected) and len(set(per_layer)) == len(per_layer)
    assert sorted(ids(groups["encoder"])) == sorted(ids(groups["encoder.conv"]) + ids(groups["encoder.blocks"]))
    assert ids(groups["decoder"]) == ids(groups["decoder.blocks"])
    assert len(groups["encoder.layers.0"]) == 6 and len(groups["decoder.layers.0"]) == 10
    whole = {id(m) for m in (model.proj_out, model.model.decoder.embed_tokens, model.model.decoder.embed_positions)}
    assert not whole & {i for pairs in groups.values() for i in ids(pairs)}


def test_attention_and_ffn_split_each_side() -> None:
    model = random_whisper(layers=2)
    groups = whisper_groups(model)
    enc, dec = model.model.encoder.layers, model.model.decoder.layers
    proj = ("q_proj", "k_proj", "v_proj", "out_proj")
    assert ids(groups["encoder.attention"]) == [id(getattr(layer.self_attn, p)) for layer in enc for p in proj]
    assert ids(groups["decoder.self_attention"]) == [id(getattr(layer.self_attn, p)) for layer in dec for p in proj]
    assert ids(groups["decoder.cross_attention"]) == [id(getattr(layer.encoder_attn, p)) for layer in dec for p in proj]
    assert ids(groups["encoder.ffn"]) == [id(getattr(layer, f)) for layer in enc for f in ("fc1", "fc2")]
    assert ids(groups["decoder.ffn"]) == [id(getattr(layer, f)) for layer in dec for f in ("fc1", "fc2")]
    assert ids(groups["encoder.conv"]) == [id(model.model.encoder.conv1), id(model.model.encoder.conv2)]


def test_the_base_whisper_model_has_the_same_groups_without_a_prefix() -> None:
    model = random_whisper()
    assert whisper_parts(model).prefix == "model."
    assert whisper_parts(model.model).prefix == ""
    assert {k: ids(v) for k, v in whisper_groups(model.model).items()} == {
        k: ids(v) for k, v in whisper_groups(model).items()
    }


def test_a_model_without_whisper_layout_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="Sequential does not have Whisper's layout"):
        whisper_groups(nn.Sequential(nn.Linear(2, 2)))
    model = random_whisper()
    model.model.decoder.layers[1].encoder_attn.k_proj = nn.Identity()
    with pytest.raises(ValueError, match=r"decoder\.layers\.1\.encoder_attn\.k_proj is not a Linear"):
        whisper_groups(model)
