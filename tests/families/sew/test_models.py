"""SEW architectures, the offline letter processor, and the one loader for names, dirs and hub ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import SEWForCTC

import prunelib.families.sew.train as speech_train
from prunelib.families.sew.models import (
    SEW_TINY,
    SEW_TINY_PARAMETERS,
    VOCAB,
    SewArch,
    build_processor,
    build_sew,
    load_pretrained,
    load_speech_model,
    sew_config,
)
from prunelib.pruning.params import linear_and_conv_weights

from .tiny import TINY


def test_vocab_is_the_fairseq_letter_dictionary() -> None:
    assert len(VOCAB) == 32 and len(set(VOCAB)) == 32
    assert VOCAB[:5] == ("<pad>", "<s>", "</s>", "<unk>", "|")
    assert "".join(VOCAB[5:]) == "ETAONIHSRDLUMWCFGYPBVK'XJQZ"


def test_sew_tiny_has_exactly_the_published_size() -> None:
    model, processor = load_speech_model("sew-tiny", seed=0)
    assert isinstance(model, SEWForCTC) and not model.training
    assert sum(p.numel() for p in model.parameters()) == SEW_TINY_PARAMETERS == 40_725_311
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert 160e6 < state_bytes < 166e6  # ~163 MB of float32
    assert model.config.vocab_size == len(processor.tokenizer) == 32
    assert linear_and_conv_weights(model)  # pruning sees its Linear and Conv1d weights


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


def test_save_and_load_through_the_hub_path(tmp_path: Path) -> None:
    model, proc = build_sew(TINY, seed=1), build_processor()
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == {t: i for i, t in enumerate(VOCAB)}
    loaded, loaded_proc = load_speech_model(tmp_path)  # the same from_pretrained a hub id takes
    again, _ = load_pretrained(str(tmp_path))
    x = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(input_values=x).logits
        assert torch.equal(loaded(input_values=x).logits, want)
        assert torch.equal(again(input_values=x).logits, want)
    assert loaded_proc.tokenizer.get_vocab() == proc.tokenizer.get_vocab()
    assert not loaded.training


def test_unknown_hub_id_fails_clearly_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(OSError, match="no-such-org/no-such-sew") as err:
        load_speech_model("no-such-org/no-such-sew")
    assert "no network" in str(err.value)


def test_sew_fsdd_goes_through_the_trained_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []

    def fake(cfg, data_root=None, cache_dir=None):
        calls.append((cfg, data_root, cache_dir))
        return "model", "processor"

    monkeypatch.setattr(speech_train, "trained_fsdd_model", fake)
    assert load_speech_model("sew-fsdd", data_root=tmp_path, cache_dir=tmp_path / "c") == ("model", "processor")
    assert calls == [(speech_train.SpeechTrainConfig(), tmp_path, tmp_path / "c")]


def test_load_speech_model_type_check() -> None:
    with pytest.raises(TypeError, match="int"):
        load_speech_model(42)  # type: ignore[arg-type]
