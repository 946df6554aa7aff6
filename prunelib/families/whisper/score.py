"""Word and character error rates of Whisper transcripts, after Whisper's English normaliser.

Both sides go through Whisper's own English text normaliser (the ``whisper-normalizer`` package,
the normaliser of OpenAI's Whisper repository): lower case, punctuation and filler words removed,
British spellings and numbers standardised ("Mr." becomes "mister", "seven" becomes "7"). The
normaliser writes most number words as digits but leaves a lone "one" alone (it cannot tell the
pronoun from the number), so for spoken digits (:data:`DIGIT_FORMS`) every word that is a digit's
name or its numeral is then mapped to the numeral: a reference "seven" and a transcript "7." or
"Seven!" are all "7", "oh" and "zero" are "0". Then jiwer scores the whole set at once: WER is the
total of word edits over the total of reference words (not a mean of per-utterance rates).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jiwer

#: Spoken digits as the scorer writes them (after the normaliser): every form of a digit -> its numeral.
DIGIT_FORMS = {
    **{
        w: str(d)
        for d, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))
    },
    **{str(d): str(d) for d in range(10)},
    "oh": "0",
}


@cache
def _normaliser() -> Any:
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError:
        from prunelib.errors import Unsupported

        raise Unsupported("Whisper's English normaliser is missing: pip install 'prunelib[whisper]'") from None
    return EnglishTextNormalizer()


def normalise(text: str, digits: bool = False) -> str:
    """``text`` through Whisper's English normaliser; with ``digits``, every digit word as its numeral."""
    out = _normaliser()(text)
    if digits:
        out = " ".join(DIGIT_FORMS.get(w, w) for w in out.split())
    return out


def error_rates(references: list[str], hypotheses: list[str], digits: bool = False) -> dict[str, float]:
    """``{"wer": ..., "cer": ...}`` of ``hypotheses`` against ``references``, both normalised (module docstring).

    Raises:
        ValueError: the lists differ in length, are empty, or a reference is empty after normalisation
            (it names the reference).
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} transcripts")
    if not references:
        raise ValueError("no references to score")
    refs = [normalise(r, digits) for r in references]
    hyps = [normalise(h, digits) for h in hypotheses]
    for raw, ref in zip(references, refs):
        if not ref.strip():
            raise ValueError(f"reference {raw!r} is empty after Whisper's normaliser")
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}
