"""FSDD as keyword-spotting data: one spoken digit per clip, as a (frames, coefficients) MFCC matrix.

Recordings are found, named and read by the SEW family's FSDD reader
(:func:`~prunelib.families.sew.data.list_fsdd`, :func:`~prunelib.families.sew.data.load_audio`,
:func:`~prunelib.families.sew.data.split_fsdd`): ``fsdd/recordings/{digit}_{speaker}_{take}.wav``,
8 kHz mono, the official split (takes 0-4 test, 5-49 train) with a seeded ``DEV_TAKES`` of the
train takes held out as dev (for tuning; never part of a reported metric).

Each clip is peak-normalised, centred in a 1 s window (zero-padded, or centre-cropped when longer)
and turned into MFCCs by librosa, as in "Hello Edge": 40 ms windows every 20 ms, 40 mel bands,
10 coefficients, 49 x 10 per clip. Features are standardised per coefficient by the train split's
statistics. Reading and extracting all 3,000 recordings takes about 1.5 s on one x86 core (plus
about 1.7 s, once per process, for librosa's lazy imports) and is cached per process, keyed by the
files' names, sizes and modification times, so every sweep of a session reads them once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np
import torch

from prunelib.families.datadir import DataError
from prunelib.families.sew.data import FsddConfig, Recording, dataset_folder, list_fsdd, load_audio, split_fsdd

SAMPLE_RATE = 8_000  # FSDD's rate
DEV_TAKES = 5  # of the 45 train takes, held out as dev (10 %), drawn from the seed
NUM_CLASSES = 10


@dataclass(frozen=True)
class Features:
    """How a recording becomes a ``(frames, coeffs)`` matrix: window, STFT, mel bands, MFCC or log-mel.

    ``kind="mfcc"`` keeps ``n_mfcc`` cepstral coefficients of the log-mel spectrogram; ``"log-mel"``
    keeps the ``n_mels`` log-mel bands. Log power is ``10 log10(max(power, amin))`` per element (no
    per-clip or per-batch reference, so a clip's features never depend on the others).
    """

    kind: str = "mfcc"
    clip_samples: int = SAMPLE_RATE  # 1 s
    n_fft: int = 320  # 40 ms
    hop_length: int = 160  # 20 ms
    n_mels: int = 40
    n_mfcc: int = 10
    fmin: float = 20.0
    amin: float = 1e-10

    def __post_init__(self) -> None:
        if self.kind not in ("mfcc", "log-mel"):
            raise ValueError(f"feature kind must be 'mfcc' or 'log-mel', got {self.kind!r}")
        if not 0 < self.n_fft <= self.clip_samples or self.hop_length < 1 or self.n_mels < 1:
            raise ValueError(f"invalid feature settings: {self}")
        if self.kind == "mfcc" and not 1 <= self.n_mfcc <= self.n_mels:
            raise ValueError(f"n_mfcc must be in 1..n_mels={self.n_mels}, got {self.n_mfcc}")

    @property
    def frames(self) -> int:
        return 1 + (self.clip_samples - self.n_fft) // self.hop_length

    @property
    def coeffs(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels


#: The features every kws model is trained on: 49 frames x 10 MFCCs, as "Hello Edge".
FEATURES = Features()


@dataclass(frozen=True)
class KwsData:
    """Standardised features ``(n, 1, frames, coeffs)`` and digit labels per split.

    ``mean``/``std``: the train split's per-coefficient statistics every split was standardised
    with, ``(coeffs,)`` (a deployed front end applies the same). ``silence``: the standardised
    feature frame of an all-zero window, ``(coeffs,)``; a time shift fills the frames it opens with
    it, exactly what a shifted recording's zero padding would give.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    dev_x: torch.Tensor
    dev_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    silence: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(frames, coeffs)`` of one example."""
        return int(self.test_x.shape[-2]), int(self.test_x.shape[-1])


def fit_window(audio: np.ndarray, length: int) -> np.ndarray:
    """``audio`` peak-normalised and centred in ``length`` samples (zero-padded, or centre-cropped)."""
    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) > length:
        start = (len(audio) - length) // 2
        audio = audio[start : start + length]
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    out = np.zeros(length, np.float32)
    offset = (length - len(audio)) // 2
    out[offset : offset + len(audio)] = audio / peak if peak > 0 else audio
    return out


def extract(windows: np.ndarray, cfg: Features = FEATURES) -> np.ndarray:
    """Features ``(n, frames, coeffs)`` (float32) of ``windows``, ``(n, cfg.clip_samples)`` audio at 8 kHz.

    librosa computes the mel power spectrogram (Hann window, no centre padding) and the MFCCs
    (DCT-II, orthonormal); every row is processed independently of the others.
    """
    if windows.ndim != 2 or windows.shape[1] != cfg.clip_samples:
        raise ValueError(f"expected windows of shape (n, {cfg.clip_samples}), got {windows.shape}")
    mel = librosa.feature.melspectrogram(
        y=np.ascontiguousarray(windows, dtype=np.float32), sr=SAMPLE_RATE, n_fft=cfg.n_fft,
        hop_length=cfg.hop_length, center=False, power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin,
        fmax=SAMPLE_RATE / 2,
    )  # fmt: skip
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=cfg.amin, top_db=None)
    out = librosa.feature.mfcc(S=log_mel, n_mfcc=cfg.n_mfcc) if cfg.kind == "mfcc" else log_mel
    return np.ascontiguousarray(np.swapaxes(out, -1, -2), dtype=np.float32)


def read_clip(path: Path) -> np.ndarray:
    """One recording at 8 kHz (several channels: their mean).

    Raises:
        DataError: the file is unreadable, empty or holds non-finite samples (the message names it).
    """
    try:
        return load_audio(path, SAMPLE_RATE)
    except (ValueError, FileNotFoundError) as exc:
        raise DataError(f"FSDD recording: {exc}") from None


def _signature(recordings: list[Recording]) -> tuple[tuple[str, int, int], ...]:
    stats = [(r.path, r.path.stat()) for r in recordings]
    return tuple((str(p), s.st_size, s.st_mtime_ns) for p, s in stats)


@lru_cache(maxsize=4)
def _cached_features(signature: tuple[tuple[str, int, int], ...], cfg: Features) -> np.ndarray:
    windows = np.stack([fit_window(read_clip(Path(p)), cfg.clip_samples) for p, _, _ in signature])
    out = extract(windows, cfg)
    out.flags.writeable = False
    return out


def fsdd_features(recordings: list[Recording], cfg: Features = FEATURES) -> np.ndarray:
    """Unstandardised features ``(n, frames, coeffs)`` of ``recordings``, in their order (read-only).

    Cached per process by the files' names, sizes and modification times (an edited file is read again).
    """
    return _cached_features(_signature(recordings), cfg)


def load_fsdd(data_root: Path | None, seed: int, cfg: Features = FEATURES) -> KwsData:
    """FSDD under ``data_root/fsdd/recordings`` as :class:`KwsData`: official test split, seeded dev cut.

    Raises:
        DataError: no data root, a recording that is empty, or a split without recordings.
        FileNotFoundError: no ``fsdd`` folder, or no ``*.wav`` in it (the message names the folder).
        ValueError: a file that is not readable audio or not named ``{digit}_{speaker}_{take}.wav``.
    """
    if data_root is None:
        raise DataError("dataset 'fsdd' needs a data root: pass --data-dir DIR or set PRUNELIB_DATA_DIR")
    folder = dataset_folder(data_root, "fsdd")
    recordings = list_fsdd(folder)
    splits = split_fsdd(recordings, FsddConfig(dev_takes=DEV_TAKES, seed=seed))
    if not splits["train"] or not splits["test"]:
        counts = ", ".join(f"{len(v)} {k}" for k, v in splits.items())
        raise DataError(
            f"FSDD folder {folder} has {counts} recordings: it needs test takes (0-4) and train takes "
            f"(5-49) beyond the {DEV_TAKES} held out as dev"
        )
    feats = fsdd_features(recordings, cfg)
    position = {r.path: i for i, r in enumerate(recordings)}
    train = torch.from_numpy(feats[[position[r.path] for r in splits["train"]]])
    mean, std = train.mean(dim=(0, 1)), train.std(dim=(0, 1)).clamp_min(1e-6)
    silence = (torch.from_numpy(extract(np.zeros((1, cfg.clip_samples), np.float32), cfg))[0, 0] - mean) / std

    def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [position[r.path] for r in splits[name]]
        x = (torch.from_numpy(feats[rows]).reshape(len(rows), cfg.frames, cfg.coeffs) - mean) / std
        return x.unsqueeze(1).contiguous(), torch.tensor([r.digit for r in splits[name]], dtype=torch.long)

    (train_x, train_y), (dev_x, dev_y), (test_x, test_y) = split("train"), split("dev"), split("test")
    return KwsData(train_x, train_y, dev_x, dev_y, test_x, test_y, mean, std, silence.contiguous())


def subset(data: KwsData, train: int | None, test: int | None, seed: int) -> KwsData:
    """At most ``train`` training and ``test`` test examples, drawn with ``seed`` (``None`` keeps a split whole)."""
    gen = torch.Generator().manual_seed(seed)

    def cut(x: torch.Tensor, y: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        if n is None or n >= len(y):
            return x, y
        if n < 1:
            raise DataError(f"subset size must be >= 1, got {n}")
        idx = torch.randperm(len(y), generator=gen)[:n].sort().values
        return x[idx], y[idx]

    train_x, train_y = cut(data.train_x, data.train_y, train)
    test_x, test_y = cut(data.test_x, data.test_y, test)
    return replace(data, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
