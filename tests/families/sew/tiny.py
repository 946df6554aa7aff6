"""What the speech tests share: a few-thousand-parameter SEW with SEW-tiny's 320-sample frame stride,
its data config, tone clips and a fake FSDD folder."""

from pathlib import Path

import numpy as np
import soundfile as sf

from prunelib.families.sew.data import FsddConfig
from prunelib.families.sew.models import SEW_MINI

TINY = SEW_MINI  # the `sew-mini` preset

#: Short utterances with hardly any silence: tiny models train on them in a few steps.
TINY_DATA = FsddConfig(min_digits=1, max_digits=2, gap_max_s=0.05, edge_max_s=0.05, dev_takes=1)


def tone_clips(seconds: float = 0.2) -> list[tuple[int, np.ndarray]]:
    """One distinct tone per digit: enough signal for CTC loss to fall within a few steps."""
    t = np.arange(int(seconds * 16000)) / 16000
    return [(d, np.sin(2 * np.pi * (300 + 150 * d) * t).astype(np.float32)) for d in range(10)]


def write_fake_fsdd(root: Path, speakers: tuple[str, ...] = ("alice", "bob"), takes: int = 8, rate: int = 8000) -> Path:
    """A tiny FSDD layout under ``root/fsdd/recordings``: one 0.1 s tone per digit, speaker and take."""
    rec = root / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    t = np.arange(int(0.1 * rate)) / rate
    for s, speaker in enumerate(speakers):
        for d in range(10):
            for take in range(takes):
                tone = 0.3 * np.sin(2 * np.pi * (200 + 50 * d + 5 * s + take) * t)
                sf.write(rec / f"{d}_{speaker}_{take}.wav", tone.astype(np.float32), rate, subtype="PCM_16")
    return root
