"""What a Whisper sweep listens to: ``speech-eval`` (real read speech) and FSDD's test digits, as log-mel features.

* ``speech-eval``: the Hugging Face *audiofolder* layout, audio files plus ``metadata.csv`` with
  the columns ``file_name`` and ``transcription`` (``source`` and others are ignored). Any sample
  rate and channel count: downmixed and resampled to 16 kHz (:func:`prunelib.families.sew.data.load_audio`).
* ``fsdd``: FSDD's official test takes (0-4), one spoken digit per clip, 8 kHz resampled to 16 kHz,
  transcribed as the digit's word (``seven``). :data:`FSDD_PER_DIGIT` clips per digit, drawn by the seed.

Every utterance becomes Whisper's input once, here: 80 log-mel bins over 30 s (3,000 frames;
Whisper pads every clip to 30 s), by the model's own feature extractor.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunelib.families.datadir import DataError
from prunelib.families.sew.data import (
    DIGIT_WORDS,
    SAMPLE_RATE,
    Utterance,
    dataset_folder,
    list_fsdd,
    load_audio,
    split_fsdd,
)

#: Whisper's window: every clip is padded (or cut) to this many seconds.
WINDOW_SECONDS = 30.0
#: FSDD test clips scored per digit (6 speakers x 5 takes = 30 exist per digit); quick runs score fewer.
FSDD_PER_DIGIT, FSDD_QUICK_PER_DIGIT = 6, 2
#: Shortest clip scored: 0.1 s (Whisper's 10 ms frames need some audio to say anything).
MIN_SAMPLES = SAMPLE_RATE // 10


@dataclass
class WhisperData:
    """The scored utterances, their log-mel features ``[N, 80, 3000]`` and the processor that made them."""

    processor: Any
    utterances: list[Utterance]
    features: torch.Tensor
    digits: bool = False  # transcripts are spoken digits (scored with number words as digits)

    @property
    def seconds(self) -> list[float]:
        return [u.duration_s for u in self.utterances]


def read_audiofolder(folder: Path) -> list[Utterance]:
    """Every row of ``folder/metadata.csv`` (``file_name``, ``transcription``) as a 16 kHz utterance, in file order.

    Raises:
        DataError: no ``metadata.csv``, a missing column, an empty transcription or an unreadable
            audio file (the message names the file and the row).
    """
    meta = folder / "metadata.csv"
    if not meta.is_file():
        raise DataError(f"{meta} does not exist: an audiofolder holds metadata.csv (file_name,transcription)")
    with meta.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"file_name", "transcription"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{meta} lacks column(s) {sorted(missing)}; its header is {reader.fieldnames}")
        rows = list(reader)
    if not rows:
        raise DataError(f"{meta} lists no utterances")
    out = []
    for line, row in enumerate(rows, start=2):
        text = (row["transcription"] or "").strip()
        if not text:
            raise DataError(f"{meta} line {line}: empty transcription for {row['file_name']!r}")
        try:
            audio = load_audio(folder / row["file_name"], min_samples=MIN_SAMPLES)
        except (OSError, ValueError) as err:
            raise DataError(f"{meta} line {line}: {err}") from None
        out.append(Utterance(Path(row["file_name"]).stem, audio, text))
    return out


def fsdd_digits(root: Path, per_digit: int, seed: int) -> list[Utterance]:
    """``per_digit`` FSDD test clips of each digit (drawn by ``seed`` from the official test takes), word transcripts.

    Raises:
        DataError: FSDD is missing under ``root`` or has fewer test clips of a digit than asked.
    """
    try:
        test = split_fsdd(list_fsdd(dataset_folder(root, "fsdd")))["test"]
    except (OSError, ValueError) as err:
        raise DataError(str(err)) from None
    rng = np.random.default_rng(seed)
    out = []
    for digit, word in enumerate(DIGIT_WORDS):
        clips = [r for r in test if r.digit == digit]
        if len(clips) < per_digit:
            raise DataError(f"FSDD under {root} has {len(clips)} test clips of digit {digit}, need {per_digit}")
        for i in sorted(rng.choice(len(clips), size=per_digit, replace=False)):
            rec = clips[int(i)]
            audio = load_audio(rec.path, min_samples=MIN_SAMPLES)
            out.append(Utterance(rec.path.stem, audio, word.lower()))
    return out


def log_mel(processor: Any, utterances: list[Utterance]) -> torch.Tensor:
    """``[N, 80, 3000]`` float32 log-mel features of ``utterances`` by ``processor``'s feature extractor."""
    if not utterances:
        return torch.zeros(0, 80, 3000)
    audio = [np.asarray(u.audio, np.float32) for u in utterances]
    feats = processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    return feats["input_features"].float()


def load_whisper_data(dataset: str, root: Path | None, processor: Any, seed: int, quick: bool) -> WhisperData:
    """The utterances of ``dataset`` (``speech-eval`` or ``fsdd``) under the data root, with their features.

    Raises:
        DataError: no data root, or the data set's folder is missing or malformed.
    """
    if root is None:
        raise DataError(f"dataset {dataset!r} needs a data root: pass --data-dir DIR or set PRUNELIB_DATA_DIR")
    if dataset == "speech-eval":
        try:
            folder = dataset_folder(root, "speech-eval")
        except FileNotFoundError as err:
            raise DataError(str(err)) from None
        utterances = read_audiofolder(folder)
    elif dataset == "fsdd":
        utterances = fsdd_digits(root, FSDD_QUICK_PER_DIGIT if quick else FSDD_PER_DIGIT, seed)
    else:
        raise DataError(f"the whisper family reads 'speech-eval' or 'fsdd', not {dataset!r}")
    return WhisperData(processor, utterances, log_mel(processor, utterances), digits=dataset == "fsdd")
