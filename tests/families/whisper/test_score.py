"""WER and CER after Whisper's normaliser: case, punctuation and spelling forgiven, digits as numerals."""

from __future__ import annotations

import pytest

from prunelib.families.whisper.score import error_rates, normalise


def test_case_punctuation_and_titles_are_normalised_on_both_sides() -> None:
    assert normalise(" And Mr. John Dashwood, had then leisure.") == "and mister john dashwood had then leisure"
    assert error_rates(["and mister john dashwood"], [" And Mr. John Dashwood."]) == {"wer": 0.0, "cer": 0.0}


def test_word_errors_count_over_all_reference_words() -> None:
    got = error_rates(["he was not an ill disposed young man", "a b"], ["He was not an old-sposed young man.", "a b"])
    assert got["wer"] == pytest.approx(2 / 10)  # "ill disposed" -> "old sposed": two substitutions
    assert 0 < got["cer"] < got["wer"]


def test_spoken_digits_match_as_numerals_whatever_form_whisper_writes() -> None:
    assert normalise("One!", digits=True) == "1" and normalise("one", digits=False) == "one"
    refs = ["seven", "one", "zero", "nine", "two"]
    assert error_rates(refs, ["7.", "One.", "Oh.", "Nine!", "2"], digits=True)["wer"] == 0.0
    assert error_rates(refs, ["7.", "Won.", "Oh.", "Nein.", "to"], digits=True)["wer"] == pytest.approx(3 / 5)


def test_an_empty_transcript_is_all_deletions_and_bad_input_is_refused() -> None:
    assert error_rates(["a b c"], [""])["wer"] == 1.0
    with pytest.raises(ValueError, match="2 references but 1"):
        error_rates(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty after"):
        error_rates(["uh hmm"], ["a"])  # filler words only
    with pytest.raises(ValueError, match="no references"):
        error_rates([], [])
