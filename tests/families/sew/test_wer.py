"""Transcript normalisation, corpus WER, greedy CTC decoding and the end-to-end WER path."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from prunelib.families.sew.data import Utterance, dataset_folder, read_librispeech
from prunelib.families.sew.load import load_speech_model
from prunelib.families.sew.models import VOCAB, build_processor, build_sew
from prunelib.families.sew.wer import evaluate_wer, normalise_transcript, transcribe, word_error_rate

from .tiny import TINY

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("it's a Test, ok?", "IT'S A TEST OK"),
        ("  seven\tthree\n nine ", "SEVEN THREE NINE"),
        ('well--done; "quoted" (x)', "WELL DONE QUOTED X"),
        ("snake_case", "SNAKE CASE"),
        ("", ""),
    ],
)
def test_normalise_transcript_examples(raw: str, want: str) -> None:
    assert normalise_transcript(raw) == want


@given(st.text(max_size=60))
def test_normalise_transcript_is_idempotent_and_clean(text: str) -> None:
    out = normalise_transcript(text)
    assert normalise_transcript(out) == out
    assert out == out.strip() and "  " not in out and out == out.upper()
    assert all(ch.isalnum() or ch in " '" for ch in out)


def test_normalise_transcript_type_check() -> None:
    with pytest.raises(TypeError, match="None"):
        normalise_transcript(None)  # type: ignore[arg-type]


def test_word_error_rate_counts_edits_over_reference_words() -> None:
    assert word_error_rate(["SEVEN THREE"], ["seven, three."]) == 0.0
    assert word_error_rate(["ONE TWO THREE FOUR"], ["ONE TOO THREE"]) == pytest.approx(2 / 4)
    assert word_error_rate(["A B", "C"], ["A", "C D"]) == pytest.approx(2 / 3)  # corpus, not mean
    assert word_error_rate(["A"], [""]) == 1.0
    assert word_error_rate(["A"], ["B C D"]) == 3.0  # insertions push WER above 1


def test_word_error_rate_validates() -> None:
    with pytest.raises(ValueError, match="2 references but 1"):
        word_error_rate(["A", "B"], ["A"])
    with pytest.raises(ValueError, match="at least one"):
        word_error_rate([], [])
    with pytest.raises(ValueError, match="reference 1 is empty.*'\\?!'"):
        word_error_rate(["A", "?!"], ["A", "B"])


class FrameCounter(nn.Module):
    """A fake CTC model: one frame per 320 samples, alternating 'A' and blank, so a transcript
    is as long as the frames the decoder is shown (padding frames would show as extra A's)."""

    def _get_feat_extract_output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths // 320

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None):
        frames = input_values.shape[1] // 320
        logits = torch.zeros(input_values.shape[0], frames, len(VOCAB))
        logits[:, 0::2, VOCAB.index("A")] = 1.0
        logits[:, 1::2, VOCAB.index("<pad>")] = 1.0
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_transcribe_drops_padding_frames(batch_size: int) -> None:
    audios = [np.ones(320 * n, np.float32) for n in (2, 6, 4)]  # 1, 3, 2 'A's
    out = transcribe(FrameCounter(), build_processor(), audios, batch_size=batch_size)
    assert out == ["A", "AAA", "AA"]  # 'A' blank 'A' → 'AA' (blank separates repeats)


def test_transcribe_validates_and_restores_mode() -> None:
    model = build_sew(TINY).train()
    with pytest.raises(ValueError, match="0"):
        transcribe(model, build_processor(), [np.zeros(3200, np.float32)], batch_size=0)
    transcribe(model, build_processor(), [np.zeros(3200, np.float32)])
    assert model.training
    with pytest.raises(ValueError, match="empty"):
        evaluate_wer(model, build_processor(), [])


def test_batched_group_norm_sew_matches_one_at_a_time_only_on_equal_lengths() -> None:
    """Group norm normalises over time, so zero padding changes a shorter row's features."""
    model, proc = build_sew(TINY, seed=0), build_processor()
    rng = np.random.default_rng(0)
    same = [rng.standard_normal(6400).astype(np.float32) for _ in range(3)]
    assert transcribe(model, proc, same, batch_size=3) == transcribe(model, proc, same, batch_size=1)
    assert evaluate_wer(model, proc, [Utterance(str(i), a, "X") for i, a in enumerate(same)]) >= 0.0


def test_evaluate_wer_of_a_saved_model_on_librispeech_mini(tmp_path: Path) -> None:
    root = Path(os.environ.get("PRUNELIB_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (root / "librispeech-mini").is_dir():
        pytest.skip(f"librispeech-mini not found under {root} (set PRUNELIB_DATA_DIR)")
    build_sew(TINY, seed=0).save_pretrained(tmp_path)
    build_processor().save_pretrained(tmp_path)
    model, proc = load_speech_model(tmp_path)
    data = read_librispeech(dataset_folder(root, "librispeech-mini"), subset=1)
    wer = evaluate_wer(model, proc, data)
    assert wer >= 0.9  # a random model gets (almost) every word wrong, but the path runs end to end
