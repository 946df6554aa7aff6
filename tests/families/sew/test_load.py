"""One loader for every SEW model: the presets, a save_pretrained directory, a hub id; clear errors offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import SEWForCTC

import prunelib.families.sew.load as sew_load
from prunelib.families.sew.load import load_speech_model
from prunelib.families.sew.models import SEW_TINY_PARAMETERS, VOCAB, build_processor, build_sew, load_pretrained
from prunelib.families.sew.train import SpeechTrainConfig
from prunelib.pruning.params import linear_and_conv_weights

from .tiny import TINY


def test_sew_tiny_has_exactly_the_published_size() -> None:
    model, processor = load_speech_model("sew-tiny", seed=0)
    assert isinstance(model, SEWForCTC) and not model.training
    assert sum(p.numel() for p in model.parameters()) == SEW_TINY_PARAMETERS == 40_725_311
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert 160e6 < state_bytes < 166e6  # ~163 MB of float32
    assert model.config.vocab_size == len(processor.tokenizer) == 32
    assert linear_and_conv_weights(model)  # pruning sees its Linear and Conv1d weights


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

    monkeypatch.setattr(sew_load, "trained_fsdd_model", fake)
    assert load_speech_model("sew-fsdd", data_root=tmp_path, cache_dir=tmp_path / "c") == ("model", "processor")
    assert calls == [(SpeechTrainConfig(), tmp_path, tmp_path / "c")]


def test_load_speech_model_type_check() -> None:
    with pytest.raises(TypeError, match="int"):
        load_speech_model(42)  # type: ignore[arg-type]
