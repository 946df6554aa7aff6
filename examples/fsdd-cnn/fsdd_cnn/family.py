"""A prunelib family: a small CNN classifying spoken digits (FSDD) from log-mel spectrograms.

Copy this file to bring your own model. A family answers five questions for prunelib: which
hyper-parameters (:meth:`hparams`), which data (:meth:`load_data`), which model (:meth:`build`),
how to train it (:meth:`train`) and how good it is (:meth:`evaluate`). Everything else
(pruning, rewinding, checkpoints, ONNX export, timing, reports) prunelib does through it.

Data: the Free Spoken Digit Dataset (CC BY-SA 4.0, Jackson et al.) under
``<data_dir>/fsdd/recordings/{digit}_{speaker}_{index}.wav`` (8 kHz mono). Official split:
takes 0-4 are the test set, 5-49 train; a seeded 10 % of train is held out as a dev set
(for tuning; never used for the reported metric).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from prunelib.families.contract import Family, Metric
from prunelib.families.datadir import DataError

SAMPLE_RATE, CLIP = 8000, 8000  # every recording is cut or zero-padded to 1 s
N_FFT, HOP, N_MELS = 256, 128, 32  # 32 mel bands x 63 frames per clip
NAME = re.compile(r"(\d)_([A-Za-z]+)_(\d+)\.wav")
MEL = mel_filter_bank(
    num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=N_MELS, min_frequency=20.0, max_frequency=SAMPLE_RATE / 2,
    sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney",
)  # fmt: skip
WINDOW = window_function(N_FFT, "hann")


@dataclass(frozen=True)
class Hparams:
    """Adam on cross-entropy; IMP retrains ``retrain_epochs`` after every pruning step."""

    epochs: int = 12
    retrain_epochs: int = 3
    batch_size: int = 64
    lr: float = 3e-3


@dataclass(frozen=True)
class FsddData:
    """Log-mel features ``(n, 1, N_MELS, frames)``, standardised by the train statistics, and labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    dev_x: torch.Tensor
    dev_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def log_mel(path: Path) -> np.ndarray:
    """The log10-mel power spectrogram of the first second of one recording."""
    try:
        audio, rate = sf.read(path, dtype="float32")
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot read audio ({exc})") from None
    if rate != SAMPLE_RATE or audio.ndim != 1:
        raise DataError(f"{path}: expected {SAMPLE_RATE} Hz mono, got {rate} Hz with shape {audio.shape}")
    clip = np.zeros(CLIP, np.float32)
    clip[: min(CLIP, len(audio))] = audio[:CLIP]
    return spectrogram(clip, WINDOW, N_FFT, HOP, power=2.0, mel_filters=MEL, log_mel="log10")


class FsddCnnFamily(Family):
    """A 14.9k-parameter CNN on FSDD log-mel spectrograms, scored by test accuracy."""

    name = "fsdd-cnn"
    metric = Metric("accuracy", higher_is_better=True)  # fraction correct on the test takes, in [0, 1]
    datasets = ("fsdd",)
    models = ("tiny-cnn",)
    precisions = ("fp32", "fp16")  # prunelib's int8 quantizes Linear layers only: most of a CNN would stay fp32
    quick_amount, quick_iterations = 0.5, 3  # --prune-quick: 3 steps of half the remaining weights
    floors = {("fsdd", "tiny-cnn"): (0.90, 0.60)}  # dense accuracy a run must reach (full, quick)

    def hparams(self, dataset: str, quick: bool) -> Hparams:
        return Hparams(epochs=4, retrain_epochs=1) if quick else Hparams()

    def load_data(self, dataset: str, model: str, data_dir: Path | None, seed: int, quick: bool) -> FsddData:
        if data_dir is None:
            raise DataError("dataset 'fsdd' needs a data root: pass --data-dir DIR or set PRUNELIB_DATA_DIR")
        folder = data_dir / "fsdd" / "recordings"
        if not folder.is_dir():
            raise DataError(f"FSDD folder {folder} does not exist (expected {{digit}}_{{speaker}}_{{index}}.wav files)")
        files = sorted(folder.glob("*.wav"))
        if not files:
            raise DataError(f"FSDD folder {folder} holds no .wav files")
        feats, labels, test = [], [], []
        for path in files:
            match = NAME.fullmatch(path.name)
            if match is None:
                raise DataError(f"{path}: name is not {{digit}}_{{speaker}}_{{index}}.wav")
            feats.append(log_mel(path))
            labels.append(int(match[1]))
            test.append(int(match[3]) < 5)  # the official split: takes 0-4 are the test set
        x, y, is_test = torch.from_numpy(np.stack(feats))[:, None], torch.tensor(labels), torch.tensor(test)
        train = torch.nonzero(~is_test).flatten()
        train = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))]  # seeded dev cut
        dev, train = train[: len(train) // 10], train[len(train) // 10 :]
        if len(train) == 0 or not is_test.any():
            raise DataError(f"FSDD folder {folder} lacks train (index >= 5) or test (index 0-4) recordings")
        mean, std = x[train].mean(), x[train].std()
        x = (x - mean) / std
        return FsddData(x[train], y[train], x[dev], y[dev], x[is_test], y[is_test])

    def build(self, model: str, data: FsddData, seed: int) -> nn.Module:
        self.check_model(model)
        with torch.random.fork_rng():  # weights from `seed`, the caller's RNG untouched
            torch.manual_seed(seed)
            frames = data.test_x.shape[-1]
            net = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 63 -> 16 x 31
                nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # -> 8 x 15
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # -> 4 x 7
                nn.Flatten(), nn.Linear(32 * (N_MELS // 8) * (frames // 8), 10),
            )  # fmt: skip
        return net.eval()

    def train(self, model: nn.Module, data: FsddData, hparams: Hparams, seed: int, phase: str) -> None:
        # Optimising model.parameters() trains `weight_orig` of pruned layers; torch's pruning
        # hook multiplies it by the mask on every forward, so pruned weights stay zero.
        epochs = hparams.epochs if phase == "dense" else hparams.retrain_epochs
        gen = torch.Generator().manual_seed(seed)  # batch order from `seed`: deterministic
        opt = torch.optim.Adam(model.parameters(), lr=hparams.lr)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(data.train_y), generator=gen)
            for start in range(0, len(order), hparams.batch_size):
                idx = order[start : start + hparams.batch_size]
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(data.train_x[idx]), data.train_y[idx]).backward()
                opt.step()
        model.eval()

    def evaluate(self, model: nn.Module, data: FsddData) -> dict[str, float]:
        with torch.inference_mode():
            predicted = model(data.test_x).argmax(1)
        return {"accuracy": float((predicted == data.test_y).float().mean())}

    def example_inputs(self, data: FsddData, batch: int) -> torch.Tensor:
        reps = -(-batch // len(data.test_x))  # the test clips, cycled to `batch` rows
        return data.test_x.repeat(reps, 1, 1, 1)[:batch].contiguous()
