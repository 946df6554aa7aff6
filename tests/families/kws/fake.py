"""What the kws tests share: a fake FSDD folder, synthetic features, and the real data or a skip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from prunelib.families.kws.data import FEATURES, KwsData
from tests.conftest import shared_data_root

#: Takes per digit and speaker in the fake folder: 0-4 test, 5 of 5-11 dev, the rest train.
FAKE_TAKES = 12


def write_fsdd(root: Path, speakers: tuple[str, ...] = ("alice", "bob"), takes: int = FAKE_TAKES) -> Path:
    """A data root ``root`` holding ``fsdd/recordings/{digit}_{speaker}_{take}.wav``: 0.1-0.3 s tones, 8 kHz."""
    rec = root / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for s, speaker in enumerate(speakers):
        for digit in range(10):
            for take in range(takes):
                t = np.arange(int((0.1 + 0.02 * take) * 8000)) / 8000
                tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * digit + 5 * s + take) * t)
                sf.write(rec / f"{digit}_{speaker}_{take}.wav", tone.astype(np.float32), 8000, subtype="PCM_16")
    return root


def synthetic(n: int = 40, seed: int = 0, frames: int = FEATURES.frames, coeffs: int = FEATURES.coeffs) -> KwsData:
    """Random standardised-looking features with labels 0-9 in every split (no audio involved)."""
    gen = torch.Generator().manual_seed(seed)

    def split(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(m, 1, frames, coeffs, generator=gen), torch.arange(m) % 10

    (tx, ty), (dx, dy), (sx, sy) = split(n), split(n // 4), split(n // 2)
    return KwsData(tx, ty, dx, dy, sx, sy, torch.zeros(coeffs), torch.ones(coeffs), torch.full((coeffs,), -3.0))


def real_fsdd() -> Path:
    """The shared data root if it holds FSDD's recordings, else a skip naming where it looked."""
    folder = shared_data_root() / "fsdd" / "recordings"
    if not folder.is_dir():
        pytest.skip(f"FSDD is absent: expected {folder} (set PRUNELIB_DATA_DIR to the folder holding fsdd/)")
    return shared_data_root()
