"""Speech data: FSDD digit recordings joined into utterances, and a LibriSpeech-layout reader.

Every utterance is 16 kHz mono float32 audio (several channels: their mean) plus its upper-case
transcript. Errors name the
path and what was expected (``FileNotFoundError`` for missing things, ``ValueError`` for
malformed ones).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from prunelib.families.mlp.data import DATA_DIR_ENV

SAMPLE_RATE = 16_000  # what every SEW/wav2vec2 checkpoint expects
DIGIT_WORDS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
FSDD_TAKES = 50  # takes per digit per speaker in FSDD v1.0.10
FSDD_TEST_TAKES = range(0, 5)  # the official split: takes 0-4 test, 5-49 train
#: Sample rates an audio file may declare (outside: a damaged header, refused before resampling).
MIN_RATE, MAX_RATE = 1_000, 192_000
_BLOCK_FRAMES = 1 << 16
#: Shortest utterance a speech model can score: one frame of the wav2vec2/SEW feature extractor (25 ms).
MIN_UTTERANCE_SAMPLES = 400
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


@dataclass(frozen=True)
class Utterance:
    """One utterance: an id, 16 kHz mono float32 audio and its transcript."""

    id: str
    audio: np.ndarray
    text: str

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class Recording:
    """One FSDD file, ``{digit}_{speaker}_{take}.wav``."""

    digit: int
    speaker: str
    take: int
    path: Path


@dataclass(frozen=True)
class FsddConfig:
    """How FSDD recordings become utterances: digits per utterance, silences, dev carve-out."""

    min_digits: int = 1
    max_digits: int = 5
    gap_min_s: float = 0.05  # silence between two digits, drawn uniformly per gap
    gap_max_s: float = 0.25
    edge_max_s: float = 0.15  # leading/trailing silence, drawn uniformly in [0, edge_max_s]
    min_duration_s: float = 0.5  # shorter utterances get trailing silence (models need a few frames)
    dev_takes: int = 5  # train takes (of 5-49) held out as dev, drawn from ``seed``
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(f"need 1 <= min_digits <= max_digits, got {self.min_digits}, {self.max_digits}")
        if not 0.0 <= self.gap_min_s <= self.gap_max_s or self.edge_max_s < 0.0 or self.min_duration_s < 0.0:
            raise ValueError(
                f"invalid silences: gap [{self.gap_min_s}, {self.gap_max_s}] s, edge {self.edge_max_s} s, "
                f"min duration {self.min_duration_s} s"
            )
        if not 0 <= self.dev_takes < FSDD_TAKES - len(FSDD_TEST_TAKES):
            raise ValueError(f"dev_takes must be in [0, {FSDD_TAKES - len(FSDD_TEST_TAKES)}), got {self.dev_takes}")


def default_data_root(repo_root: Path | None = None) -> Path | None:
    """The data root: ``$PRUNELIB_DATA_DIR``, else ``<repo>/../shared/data``; None if neither exists."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    repo = repo_root if repo_root is not None else Path(__file__).resolve().parents[3]
    fallback = repo.parent / "shared" / "data"
    return fallback if fallback.is_dir() else None


def dataset_folder(root: Path | str, name: str) -> Path:
    """``root/name`` if ``root`` is a data root, or ``root`` itself if it already is that folder.

    Raises:
        FileNotFoundError: neither ``root/name`` nor ``root`` is the data-set folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data directory {root} does not exist or is not a directory")
    if (root / name).is_dir():
        return root / name
    if root.name == name:
        return root
    raise FileNotFoundError(f"data root {root} has no folder {name!r}: expected {root / name}")


def load_audio(path: Path | str, sample_rate: int = SAMPLE_RATE, min_samples: int = 1) -> np.ndarray:
    """Read an audio file as mono float32, resampled to ``sample_rate``.

    Several channels are downmixed to their mean (a recording on the right channel only keeps its
    signal, at half amplitude). Resampling is polyphase (``scipy.signal.resample_poly``), exact for
    8 kHz → 16 kHz.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not readable audio, holds non-finite samples, or has fewer than
            ``min_samples`` samples at ``sample_rate`` (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist")
    try:
        audio, rate = _read_blocks(path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as err:
        raise ValueError(f"{path} is not a readable audio file: {err}") from err
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"audio file {path} declares {rate} Hz, outside {MIN_RATE}-{MAX_RATE} Hz (damaged header?)")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(f"audio file {path} is empty (no samples)")
    if not np.isfinite(audio).all():
        raise ValueError(f"audio file {path} holds non-finite samples (NaN or infinity)")
    mono = audio.mean(axis=1, dtype=np.float32) if audio.shape[1] > 1 else audio[:, 0]
    out = resample(mono, rate, sample_rate)
    if len(out) < min_samples:
        raise ValueError(
            f"audio file {path} is too short: {len(out)} samples at {sample_rate} Hz, need at least {min_samples}"
        )
    return out


def _read_blocks(path: Path) -> tuple[np.ndarray, int]:
    """All frames ``(n, channels)`` as float32 and the rate, read in blocks.

    Never allocates what the header merely declares: a damaged header may claim billions of frames.
    """
    with sf.SoundFile(path) as fh:
        blocks = []
        while block := len(chunk := fh.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)):
            blocks.append(chunk[:block])
        audio = np.concatenate(blocks) if blocks else np.zeros((0, fh.channels), np.float32)
        return audio, int(fh.samplerate)


def resample(audio: np.ndarray, rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``audio`` (1-D) from ``rate`` to ``target_rate`` Hz as float32; unchanged if equal."""
    if rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {rate} -> {target_rate}")
    if rate == target_rate:
        return np.ascontiguousarray(audio, dtype=np.float32)
    g = gcd(int(rate), int(target_rate))
    return resample_poly(audio, target_rate // g, rate // g).astype(np.float32)


# --------------------------------------------------------------------------- FSDD


def list_fsdd(folder: Path | str) -> list[Recording]:
    """Every ``{digit}_{speaker}_{take}.wav`` under ``folder/recordings`` (or ``folder``), sorted.

    Raises:
        FileNotFoundError: no recordings folder, or no wav files in it.
        ValueError: a wav file whose name does not follow the FSDD pattern.
    """
    folder = Path(folder)
    rec_dir = folder / "recordings" if (folder / "recordings").is_dir() else folder
    if not rec_dir.is_dir():
        raise FileNotFoundError(f"FSDD folder {folder} does not exist (expected {folder}/recordings/*.wav)")
    recordings = []
    for path in sorted(rec_dir.glob("*.wav")):
        m = _FSDD_NAME.match(path.name)
        if m is None:
            raise ValueError(f"{path}: expected an FSDD name '{{digit}}_{{speaker}}_{{take}}.wav'")
        recordings.append(Recording(int(m.group(1)), m.group(2), int(m.group(3)), path))
    if not recordings:
        raise FileNotFoundError(f"no FSDD recordings (*.wav) in {rec_dir}")
    recordings.sort(key=lambda r: (r.speaker, r.digit, r.take))
    return recordings


def split_fsdd(recordings: list[Recording], cfg: FsddConfig = FsddConfig()) -> dict[str, list[Recording]]:
    """The official split (takes 0-4 test, 5-49 train) with ``cfg.dev_takes`` train takes moved to dev.

    Dev takes are drawn once from ``cfg.seed`` and shared by every speaker and digit, so no
    single recording sits in two splits.
    """
    train_takes = sorted({r.take for r in recordings} - set(FSDD_TEST_TAKES))
    rng = np.random.default_rng(cfg.seed)
    dev = set(rng.choice(train_takes, size=min(cfg.dev_takes, len(train_takes)), replace=False).tolist())
    splits: dict[str, list[Recording]] = {"train": [], "dev": [], "test": []}
    for r in recordings:
        name = "test" if r.take in FSDD_TEST_TAKES else "dev" if r.take in dev else "train"
        splits[name].append(r)
    return splits


def load_clips(recordings: list[Recording]) -> list[tuple[int, np.ndarray]]:
    """``(digit, 16 kHz audio)`` per recording, peak-normalised so loud and quiet takes match."""
    clips = []
    for r in recordings:
        audio = load_audio(r.path)
        peak = float(np.abs(audio).max())
        clips.append((r.digit, audio / peak if peak > 0 else audio))
    return clips


def join_digits(
    clips: list[tuple[int, np.ndarray]], rng: np.random.Generator, cfg: FsddConfig = FsddConfig()
) -> tuple[np.ndarray, str]:
    """Join ``clips`` with random silences into one utterance; returns ``(audio, "SEVEN THREE")``."""
    if not clips:
        raise ValueError("join_digits needs at least one clip")
    pieces = [np.zeros(int(rng.uniform(0.0, cfg.edge_max_s) * SAMPLE_RATE), np.float32)]
    for i, (_, audio) in enumerate(clips):
        if i:
            pieces.append(np.zeros(int(rng.uniform(cfg.gap_min_s, cfg.gap_max_s) * SAMPLE_RATE), np.float32))
        pieces.append(audio)
    pieces.append(np.zeros(int(rng.uniform(0.0, cfg.edge_max_s) * SAMPLE_RATE), np.float32))
    audio = np.concatenate(pieces)
    short = int(cfg.min_duration_s * SAMPLE_RATE) - len(audio)
    if short > 0:
        audio = np.concatenate([audio, np.zeros(short, np.float32)])
    return audio, " ".join(DIGIT_WORDS[d] for d, _ in clips)


def sample_utterance(
    clips: list[tuple[int, np.ndarray]],
    rng: np.random.Generator,
    cfg: FsddConfig = FsddConfig(),
    num_digits: int | None = None,
) -> tuple[np.ndarray, str]:
    """A random utterance of ``num_digits`` clips (default: uniform in ``cfg.min_digits..max_digits``).

    Clips are drawn uniformly with replacement.
    """
    n = int(rng.integers(cfg.min_digits, cfg.max_digits + 1)) if num_digits is None else num_digits
    if n < 1:
        raise ValueError(f"num_digits must be >= 1, got {n}")
    picks = rng.integers(0, len(clips), size=n)
    return join_digits([clips[i] for i in picks], rng, cfg)


def fsdd_utterances(
    data_root: Path | str, split: str, count: int, seed: int = 0, cfg: FsddConfig = FsddConfig()
) -> list[Utterance]:
    """A fixed, seeded set of ``count`` utterances synthesised from the ``split`` recordings.

    The same ``(split, count, seed, cfg)`` always gives the same audio and transcripts.

    Raises:
        ValueError: unknown split or ``count < 1``.
    """
    if split not in ("train", "dev", "test"):
        raise ValueError(f"unknown FSDD split {split!r}; choose train, dev or test")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    recordings = split_fsdd(list_fsdd(dataset_folder(data_root, "fsdd")), cfg)[split]
    clips = load_clips(recordings)
    rng = np.random.default_rng([seed, 0x5EED])
    out = []
    for i in range(count):
        audio, text = sample_utterance(clips, rng, cfg)
        out.append(Utterance(f"fsdd-{split}-{seed}-{i:05d}", audio, text))
    return out


# --------------------------------------------------------------------------- LibriSpeech


def read_transcripts(path: Path) -> dict[str, str]:
    """``{utterance_id: TEXT}`` from a LibriSpeech ``speaker-chapter.trans.txt``.

    Raises:
        ValueError: the file is not UTF-8, or a line is not ``<speaker>-<chapter>-<index> TEXT`` for this
            chapter (the message names the file and line).
    """
    prefix = path.name[: -len(".trans.txt")] + "-"
    out: dict[str, str] = {}
    try:
        text_of_file = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for lineno, line in enumerate(text_of_file.splitlines(), start=1):
        if not line.strip():
            continue
        utt_id, _, text = line.strip().partition(" ")
        if not utt_id.startswith(prefix) or not utt_id[len(prefix) :].isdigit() or not text.strip():
            raise ValueError(f"{path}:{lineno}: expected '{prefix}NNNN TRANSCRIPT', got {line.strip()[:80]!r}")
        if utt_id in out:
            raise ValueError(f"{path}:{lineno}: utterance {utt_id} is listed twice")
        out[utt_id] = text.strip()
    return out


def read_librispeech(folder: Path | str, subset: int | None = None) -> list[Utterance]:
    """Utterances of a LibriSpeech split folder (``speaker/chapter/*.flac`` + ``*.trans.txt``).

    Order is deterministic (sorted by speaker, chapter, utterance id); ``subset`` keeps the
    first ``subset`` of that order. Audio at another rate is resampled to 16 kHz.

    Raises:
        FileNotFoundError: ``folder`` is missing, has no chapters, a chapter lacks its
            transcript, or a transcript line names an audio file that is absent.
        ValueError: ``subset < 1`` or a malformed transcript line.
    """
    folder = Path(folder)
    if subset is not None and subset < 1:
        raise ValueError(f"subset must be >= 1 or None, got {subset}")
    if not folder.is_dir():
        raise FileNotFoundError(f"LibriSpeech folder {folder} does not exist (expected speaker/chapter/*.flac)")
    chapters = sorted(p for p in folder.glob("*/*") if p.is_dir())
    if not chapters:
        raise FileNotFoundError(f"no speaker/chapter folders in {folder} (expected e.g. {folder}/2412/153948/)")
    out: list[Utterance] = []
    for chapter in chapters:
        trans = chapter / f"{chapter.parent.name}-{chapter.name}.trans.txt"
        if not trans.is_file():
            raise FileNotFoundError(f"missing transcript {trans} for chapter folder {chapter}")
        for utt_id, text in sorted(read_transcripts(trans).items()):
            if subset is not None and len(out) >= subset:
                return out
            audio_path = chapter / f"{utt_id}.flac"
            if not audio_path.is_file():
                raise FileNotFoundError(f"transcript {trans} lists {utt_id} but {audio_path} is missing")
            out.append(Utterance(utt_id, load_audio(audio_path, min_samples=MIN_UTTERANCE_SAMPLES), text))
    return out
