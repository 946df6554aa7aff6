"""Training and evaluation of a DS-CNN: Adam with a cosine learning rate, random time shifts; seeded.

Pruned weights stay zero: the optimizer updates ``weight_orig`` and ``torch.nn.utils.prune``'s
forward hook multiplies it by the mask on every call, so gradients never revive a pruned weight.
The batch order and the shifts are drawn from the seed (the caller's RNG state is restored),
so the same call gives the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from prunelib.progress import progress


@dataclass(frozen=True)
class Hparams:
    """Fixed training hyper-parameters; IMP retrains ``retrain_epochs`` with the same recipe after every prune.

    ``lr`` is Adam's peak step, decayed to 0 along a cosine over each training run; ``shift`` is
    the largest random time shift in frames (20 ms each), filled with the silence frame.

    Chosen on the dev split (takes held out of train), never on test: 1e-2 beat 3e-3 and 1e-3 and
    40 epochs beat 20 for narrow (12-16 channel) dense DS-CNNs, a proxy for sparse ones; label
    smoothing keeps the classifier's weights (the one layer without BatchNorm) from outgrowing the
    convs', so global magnitude pruning spends fewer of the surviving weights on it.
    """

    epochs: int = 40
    retrain_epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 0.0
    shift: int = 5
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.retrain_epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"invalid training hyper-parameters: {self}")
        if self.weight_decay < 0 or self.shift < 0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"invalid training hyper-parameters: {self}")


def time_shift(x: torch.Tensor, silence: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``x`` ``(batch, 1, frames, coeffs)`` with row ``i`` moved ``shifts[i]`` frames later (earlier if
    negative); the frames it opens hold ``silence`` ``(coeffs,)``."""
    batch, _, frames, coeffs = x.shape
    reach = int(shifts.abs().max()) if len(shifts) else 0
    if reach == 0:
        return x
    pad = silence.to(x.dtype).expand(batch, 1, reach, coeffs)
    padded = torch.cat([pad, x, pad], dim=2)
    rows = torch.arange(frames) + reach - shifts.view(-1, 1)  # (batch, frames): source frame of each output frame
    return padded.gather(2, rows.view(batch, 1, frames, 1).expand(batch, 1, frames, coeffs))


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    silence: torch.Tensor,
    hp: Hparams,
    epochs: int,
    seed: int,
    desc: str = "train",
) -> nn.Module:
    """Train ``model`` in place for ``epochs`` on ``(x, y)`` (cross-entropy); returns it in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        steps_per_epoch = -(-len(y) // hp.batch_size)
        total, step = max(1, epochs * steps_per_epoch), 0
        model.train()
        for _ in progress(range(epochs), desc=desc, total=epochs):
            order = torch.randperm(len(y), generator=gen)
            shifts = torch.randint(-hp.shift, hp.shift + 1, (len(y),), generator=gen)
            for start in range(0, len(order), hp.batch_size):
                idx = order[start : start + hp.batch_size]
                for group in opt.param_groups:
                    group["lr"] = hp.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
                opt.zero_grad(set_to_none=True)
                inputs = time_shift(x[idx], silence, shifts[start : start + hp.batch_size])
                loss = nn.functional.cross_entropy(model(inputs), y[idx], label_smoothing=hp.label_smoothing)
                loss.backward()
                opt.step()
                step += 1
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted class per example of ``x``, in eval mode."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (0..1)."""
    if len(y) == 0:
        raise ValueError("cannot evaluate on an empty split")
    return float((predict(model, x) == y).float().mean())
