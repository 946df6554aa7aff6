"""Word error rate of a CTC model: greedy decoding through the processor, jiwer over normalised text.

Evaluation never changes the model (it runs under ``torch.no_grad`` in eval mode and restores
the previous mode).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jiwer
import numpy as np
import torch
from torch import nn

from prunelib.families.sew.data import SAMPLE_RATE, Utterance
from prunelib.progress import progress

_PUNCT = re.compile(r"[^\w\s']|_")
_SPACE = re.compile(r"\s+")


def normalise_transcript(text: str) -> str:
    """Upper-case, punctuation except the apostrophe removed, whitespace collapsed and stripped."""
    if not isinstance(text, str):
        raise TypeError(f"transcript must be a str, got {type(text).__name__}: {text!r}")
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.upper())).strip()


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER (total edits / total reference words) after :func:`normalise_transcript`.

    Raises:
        ValueError: lengths differ, no pairs, or a reference is empty after normalisation.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("word_error_rate needs at least one reference")
    refs = [normalise_transcript(r) for r in references]
    hyps = [normalise_transcript(h) for h in hypotheses]
    for i, (raw, ref) in enumerate(zip(references, refs)):
        if not ref:
            raise ValueError(f"reference {i} is empty after normalisation: {raw!r}")
    return float(jiwer.wer(refs, hyps))


def _uses_attention_mask(processor: Any) -> bool:
    """HF's convention: group-norm SEW/wav2vec2 checkpoints set ``return_attention_mask=False``."""
    return bool(getattr(processor.feature_extractor, "return_attention_mask", False))


@torch.no_grad()
def transcribe(
    model: nn.Module,
    processor: Any,
    audios: Sequence[np.ndarray],
    batch_size: int = 1,
    attention_mask: bool | None = None,
) -> list[str]:
    """Greedy CTC transcripts of 16 kHz ``audios`` (argmax per frame → ``processor.batch_decode``).

    Args:
        batch_size: utterances per forward pass. 1 (the default) is exact for every model; larger
            batches zero-pad, normalise each row over its own samples only, and drop the frames
            beyond each row's length before decoding.
        attention_mask: pass the padding mask to the model; ``None`` follows the processor
            (``feature_extractor.return_attention_mask``), as HF recommends per checkpoint.

    Raises:
        ValueError: ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    use_mask = _uses_attention_mask(processor) if attention_mask is None else attention_mask
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        starts = range(0, len(audios), batch_size)
        for start in progress(starts, desc="transcribe", total=len(starts)):
            chunk = [np.asarray(a, dtype=np.float32) for a in audios[start : start + batch_size]]
            feats = processor(
                audio=chunk,
                sampling_rate=SAMPLE_RATE,
                padding=True,
                return_attention_mask=True,
                return_tensors="pt",
            )
            mask = feats["attention_mask"]
            logits = model(input_values=feats["input_values"], attention_mask=mask if use_mask else None).logits
            lengths = _output_lengths(model, mask.sum(-1), logits.shape[1])
            ids = logits.argmax(-1)
            for row, n in enumerate(lengths.tolist()):
                ids[row, n:] = processor.tokenizer.pad_token_id
            out.extend(processor.batch_decode(ids))
    finally:
        model.train(was_training)
    return out


def _output_lengths(model: nn.Module, sample_lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """Valid CTC frames per row, from the model's own conv arithmetic when it exposes it."""
    fn = getattr(model, "_get_feat_extract_output_lengths", None)
    if fn is None:
        return torch.full_like(sample_lengths, frames)
    return fn(sample_lengths).clamp(max=frames)


def evaluate_wer(
    model: nn.Module,
    processor: Any,
    dataset: Sequence[Utterance],
    batch_size: int = 1,
    attention_mask: bool | None = None,
) -> float:
    """WER (0 = perfect; can exceed 1) of ``model`` with greedy CTC decoding on ``dataset``.

    Raises:
        ValueError: ``dataset`` is empty.
    """
    if len(dataset) == 0:
        raise ValueError("cannot evaluate WER on an empty dataset")
    hyps = transcribe(model, processor, [u.audio for u in dataset], batch_size, attention_mask)
    return word_error_rate([u.text for u in dataset], hyps)
