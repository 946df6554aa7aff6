"""FSDD CTC training: batches, schedule, loss goes down, seeded weights, and the on-disk cache."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import prunelib.families.sew.train as speech_train
from prunelib.families.sew.data import DIGIT_WORDS, FsddConfig
from prunelib.families.sew.models import build_processor, build_sew
from prunelib.families.sew.train import (
    SEW_FSDD,
    SPEECH_FILES,
    SpeechTrainConfig,
    cache_path,
    default_cache_dir,
    lr_factor,
    make_batch,
    max_digits_at,
    normalise_batch,
    train_ctc,
    trained_fsdd_model,
)
from prunelib.storage import entries
from prunelib.storage.entries import CacheWarning

from .tiny import TINY as TINY_BASE
from .tiny import TINY_DATA, tone_clips, write_fake_fsdd

TINY = dataclasses.replace(TINY_BASE, mask_time_prob=0.05, mask_time_length=2, dropout=0.1)
TINY_CFG = SpeechTrainConfig(
    arch=TINY,
    data=TINY_DATA,
    steps=20,
    batch_size=4,
    lr=1e-2,
    warmup_steps=2,
)


def test_default_full_config_is_the_small_sew() -> None:
    cfg = SpeechTrainConfig()
    assert cfg.arch == SEW_FSDD and SEW_FSDD.frame_stride == 320
    assert 1e5 < sum(p.numel() for p in build_sew(SEW_FSDD).parameters()) < 2e6
    with pytest.raises(ValueError, match="steps=-1"):
        SpeechTrainConfig(steps=-1)


def test_lr_factor_warms_up_then_decays_to_zero() -> None:
    cfg = SpeechTrainConfig(steps=100, warmup_steps=10)
    factors = [lr_factor(s, cfg) for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[100] == pytest.approx(0.0, abs=1e-12)


def test_curriculum_grows_the_longest_utterance() -> None:
    cfg = SpeechTrainConfig(steps=100, curriculum_steps=40, data=FsddConfig(min_digits=1, max_digits=5))
    tops = [max_digits_at(s, cfg) for s in range(100)]
    assert tops[0] == 1 and tops[39] == 4 and set(tops[40:]) == {5}
    assert all(a <= b for a, b in zip(tops, tops[1:]))
    assert max_digits_at(0, SpeechTrainConfig()) == SpeechTrainConfig().data.max_digits  # off by default


def test_normalise_batch_matches_the_feature_extractor() -> None:
    x = np.random.default_rng(0).standard_normal((2, 500)).astype(np.float32) * 3 + 1
    want = build_processor()(audio=list(x), sampling_rate=16000, return_tensors="pt")["input_values"]
    assert torch.allclose(normalise_batch(torch.from_numpy(x)), want, atol=1e-5)


def test_make_batch_equal_lengths_and_labels() -> None:
    proc = build_processor()
    inputs, labels = make_batch(tone_clips(), proc.tokenizer, np.random.default_rng(1), TINY_CFG)
    assert inputs.shape[0] == labels.shape[0] == TINY_CFG.batch_size
    assert torch.allclose(inputs.mean(1), torch.zeros(4), atol=1e-4)  # normalised per row
    for row in labels:
        text = proc.tokenizer.decode(row[row >= 0].tolist(), group_tokens=False)
        words = text.split()
        assert 1 <= len(words) <= 2 and set(words) <= set(DIGIT_WORDS)


def test_tiny_training_lowers_the_loss_and_is_seeded() -> None:
    proc = build_processor()
    runs = []
    for _ in range(2):
        model = build_sew(TINY, seed=TINY_CFG.seed)
        losses = train_ctc(model, proc, tone_clips(), TINY_CFG)
        runs.append((model, losses))
    (a, losses_a), (b, losses_b) = runs
    assert len(losses_a) == TINY_CFG.steps and np.isfinite(losses_a).all()
    assert np.mean(losses_a[-5:]) < 0.8 * np.mean(losses_a[:5])
    assert losses_a == losses_b
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    assert not a.training
    other = build_sew(TINY, seed=TINY_CFG.seed)
    train_ctc(other, proc, tone_clips(), dataclasses.replace(TINY_CFG, seed=1))
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), other.state_dict().values()))


def test_train_ctc_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    np.random.seed(123)
    train_ctc(build_sew(TINY), build_processor(), tone_clips(), dataclasses.replace(TINY_CFG, steps=1))
    after = (torch.rand(1).item(), np.random.rand())
    torch.manual_seed(123)
    np.random.seed(123)
    assert after == (torch.rand(1).item(), np.random.rand())
    with pytest.raises(ValueError, match="clip"):
        train_ctc(build_sew(TINY), build_processor(), [], TINY_CFG)


def test_cache_dir_env_and_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRUNELIB_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    fsdd = write_fake_fsdd(tmp_path / "data", speakers=("ann",), takes=7) / "fsdd"
    base = cache_path(TINY_CFG, fsdd)
    assert base.parent == tmp_path / "env-cache" / "speech"
    assert cache_path(TINY_CFG, fsdd) == base  # stable
    assert cache_path(dataclasses.replace(TINY_CFG, lr=1e-3), fsdd) != base
    assert cache_path(dataclasses.replace(TINY_CFG, data=FsddConfig(max_digits=3)), fsdd) != base
    assert cache_path(dataclasses.replace(TINY_CFG, arch=dataclasses.replace(TINY, dropout=0.0)), fsdd) != base
    monkeypatch.setattr(speech_train, "library_versions", lambda: {"torch": "0.0"})
    assert cache_path(TINY_CFG, fsdd) != base
    monkeypatch.delenv("PRUNELIB_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "prunelib"


def test_trained_model_is_cached_and_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = write_fake_fsdd(tmp_path / "data", speakers=("ann",), takes=7)
    cfg = dataclasses.replace(TINY_CFG, steps=2)
    model, proc = trained_fsdd_model(cfg, data_root=root, cache_dir=tmp_path / "cache")
    saved = cache_path(cfg, root / "fsdd", tmp_path / "cache")
    assert (saved / "config.json").is_file() and (saved / "vocab.json").is_file()
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".") and p.suffix != ".lock"]  # no temp dirs
    assert entries.problem(saved, SPEECH_FILES) is None  # every file hashed in its manifest

    def must_not_train(*args, **kwargs):
        raise AssertionError("the cache was ignored")

    monkeypatch.setattr(speech_train, "train_fsdd_model", must_not_train)
    again, _ = trained_fsdd_model(cfg, data_root=root, cache_dir=tmp_path / "cache")
    for (name, x), (_, y) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(x, y), name
    with pytest.raises(AssertionError, match="cache was ignored"):  # a changed config retrains
        trained_fsdd_model(dataclasses.replace(cfg, seed=5), data_root=root, cache_dir=tmp_path / "cache")


def test_a_corrupt_speech_entry_is_moved_aside_and_retrained(monkeypatch, tmp_path: Path) -> None:
    root = write_fake_fsdd(tmp_path / "data", speakers=("ann",), takes=7)
    cfg = dataclasses.replace(TINY_CFG, steps=2)
    trained, real = [], speech_train.train_fsdd_model
    monkeypatch.setattr(speech_train, "train_fsdd_model", lambda *a: trained.append(1) or real(*a))
    trained_fsdd_model(cfg, data_root=root, cache_dir=tmp_path / "cache")
    saved = cache_path(cfg, root / "fsdd", tmp_path / "cache")
    weights = saved / "model.safetensors"
    torn = weights.read_bytes()[:-100]
    weights.write_bytes(torn)  # truncated: would not even load
    with pytest.warns(CacheWarning, match=r"model\.safetensors does not match"):
        trained_fsdd_model(cfg, data_root=root, cache_dir=tmp_path / "cache")
    assert len(trained) == 2 and entries.problem(saved, SPEECH_FILES) is None
    (aside,) = saved.parent.glob(f".corrupt-{saved.name}-*")
    assert (aside / "model.safetensors").read_bytes() == torn


def test_the_key_follows_the_recordings_contents_and_the_code(monkeypatch, tmp_path: Path) -> None:
    fsdd = write_fake_fsdd(tmp_path / "data", speakers=("ann",), takes=7) / "fsdd"
    base = cache_path(TINY_CFG, fsdd)
    wav = sorted(fsdd.rglob("*.wav"))[0]
    data = bytearray(wav.read_bytes())
    data[-1] ^= 0xFF  # same name, same size, other content
    wav.write_bytes(bytes(data))
    edited = cache_path(TINY_CFG, fsdd)
    assert edited != base
    monkeypatch.setattr(speech_train, "code_fingerprint", lambda: "0" * 16)
    assert cache_path(TINY_CFG, fsdd) != edited


def test_trained_model_needs_fsdd(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fsdd"):
        trained_fsdd_model(TINY_CFG, data_root=tmp_path, cache_dir=tmp_path / "cache")
