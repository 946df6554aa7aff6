"""SEW architectures, the offline letter processor, and the one loader for names, dirs and hub ids."""

from __future__ import annotations

import pytest
import torch

from prunelib.families.sew.models import (
    SEW_TINY,
    VOCAB,
    SewArch,
    build_processor,
    build_sew,
    sew_config,
)

from .tiny import TINY


def test_vocab_is_the_fairseq_letter_dictionary() -> None:
    assert len(VOCAB) == 32 and len(set(VOCAB)) == 32
    assert VOCAB[:5] == ("<pad>", "<s>", "</s>", "<unk>", "|")
    assert "".join(VOCAB[5:]) == "ETAONIHSRDLUMWCFGYPBVK'XJQZ"


def test_sew_config_carries_the_arch() -> None:
    cfg = sew_config(SEW_TINY)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.squeeze_factor) == (512, 12, 2)
    assert cfg.feat_extract_norm == "group" and cfg.conv_bias is False
    assert (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) == (0, 1, 2)
    assert SEW_TINY.frame_stride == TINY.frame_stride == 320


def test_arch_validation_shows_bad_values() -> None:
    with pytest.raises(ValueError, match="3, 2, 2"):
        SewArch(conv_dim=(1, 2, 3), conv_stride=(1, 1), conv_kernel=(1, 1))
    with pytest.raises(ValueError, match="100"):
        SewArch(hidden_size=100)
    with pytest.raises(ValueError, match="'batch'"):
        SewArch(feat_extract_norm="batch")


def test_arch_fields_reach_the_config() -> None:
    cfg = sew_config(SewArch(initializer_range=0.09, feat_extract_norm="layer", dropout=0.0, mask_time_prob=0.0))
    assert cfg.initializer_range == 0.09 and cfg.feat_extract_norm == "layer"
    assert cfg.hidden_dropout == cfg.attention_dropout == cfg.final_dropout == 0.0 and cfg.mask_time_prob == 0.0


def test_build_sew_is_seeded() -> None:
    a, b, c = build_sew(TINY, seed=3), build_sew(TINY, seed=3), build_sew(TINY, seed=4)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    assert any(not torch.equal(x, z) for x, z in zip(a.state_dict().values(), c.state_dict().values()))


def test_processor_round_trips_a_transcript() -> None:
    proc = build_processor()
    ids = proc.tokenizer("SEVEN THREE").input_ids
    assert ids == [VOCAB.index(ch) for ch in "SEVEN|THREE"]
    # CTC output: blanks (pad) between the doubled E, repeats collapsed, '|' splits words
    frames = [0, 12, 12, 5, 25, 5, 9, 4, 4, 6, 11, 13, 5, 0, 5, 0]
    assert proc.batch_decode(torch.tensor([frames])) == ["SEVEN THREE"]
    assert proc.feature_extractor.sampling_rate == 16000
    assert proc.feature_extractor.return_attention_mask is False
