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
        load_speech_model("hf:no-such-org/no-such-sew")
    assert "no network" in str(err.value)


@pytest.fixture
def hub_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """Every from_pretrained call (model and processor), refused as if nothing were cached or reachable."""
    import prunelib.families.sew.models as models

    calls: list[tuple[str, dict]] = []

    class Refuse:
        @staticmethod
        def from_pretrained(name: str, **kw: object) -> None:
            calls.append((name, kw))
            raise OSError(f"{name} not found")

    monkeypatch.setattr(models, "AutoModelForCTC", Refuse)
    monkeypatch.setattr(models, "AutoProcessor", Refuse)
    return calls


@pytest.mark.parametrize("name", ["sew-fdsd", "sew_tiny", "SEW-FSDD"])
def test_a_misspelt_name_is_named_and_never_asks_the_hub(hub_calls: list, name: str) -> None:
    with pytest.raises(OSError, match=rf"^no speech model '{name}': not one of .*sew-fsdd.*hf:org/name"):
        load_speech_model(name)
    assert hub_calls == []


def test_only_hf_ids_may_download_and_a_revision_is_pinned(hub_calls: list, tmp_path: Path) -> None:
    with pytest.raises(OSError, match="local Hugging Face cache.*hf:org/name"):
        load_speech_model("asapp/sew-tiny-100k-ft-ls100h")  # an org/name not written as a hub id: cache only
    with pytest.raises(OSError, match="not a save_pretrained directory"):
        load_speech_model(tmp_path)  # an empty folder: local only, too
    with pytest.raises(OSError, match="from the Hugging Face hub at revision '1a2b3c'"):
        load_speech_model("hf:asapp/sew-tiny-100k-ft-ls100h@1a2b3c")
    with pytest.raises(OSError, match="from the Hugging Face hub"):
        load_speech_model("hf:asapp/sew-tiny-100k-ft-ls100h")
    assert [(name, kw["local_files_only"], kw["revision"]) for name, kw in hub_calls] == [
        ("asapp/sew-tiny-100k-ft-ls100h", True, None),
        (str(tmp_path), True, None),
        ("asapp/sew-tiny-100k-ft-ls100h", False, "1a2b3c"),
        ("asapp/sew-tiny-100k-ft-ls100h", False, None),
    ]


@pytest.mark.parametrize("bad", ["hf:", "hf:asapp", "hf:/sew", "hf:a/b/c", "hf:a/b@"])
def test_a_malformed_hub_id_is_named(hub_calls: list, bad: str) -> None:
    with pytest.raises(ValueError, match=rf"'{bad}'.*hf:org/name"):
        load_speech_model(bad)
    assert hub_calls == []


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
