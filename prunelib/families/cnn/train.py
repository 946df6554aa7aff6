"""Training of the CNN family's models: Adam with a cosine step size, deterministic given a seed.

Evaluation is the MLP family's (:func:`~prunelib.families.mlp.train.evaluate`: accuracy over
batches in eval mode, BatchNorm on its running statistics).
"""

from __future__ import annotations

import torch
from torch import nn

from prunelib.families.cnn.config import Hparams
from prunelib.families.mlp.data import Split
from prunelib.families.mlp.train import evaluate
from prunelib.progress import progress

__all__ = ["evaluate", "train"]


def train(model: nn.Module, data: Split, hp: Hparams, seed: int, desc: str = "train") -> nn.Module:
    """Train ``model`` in place on ``data``; returns it, in eval mode.

    Optimises ``model.parameters()``: on a pruned layer that is ``weight_orig``, which reaches the
    loss only through ``weight_orig * weight_mask``, so pruned weights (and pruned BatchNorm
    scales and shifts of structured pruning) stay zero. The batch order comes from ``seed``; the
    caller's global RNG state is restored afterwards. BatchNorm's running statistics are updated
    in train mode, as usual.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _train(model, data, hp, seed, desc)


def _train(model: nn.Module, data: Split, hp: Hparams, seed: int, desc: str) -> nn.Module:
    if hp.epochs == 0 or len(data) == 0:
        return model.eval()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    steps = hp.epochs * -(-len(data) // hp.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in progress(range(hp.epochs), desc=desc, total=hp.epochs):
        order = torch.randperm(len(data), generator=gen)
        for start in range(0, len(order), hp.batch_size):
            idx = order[start : start + hp.batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(data.x[idx]), data.y[idx]).backward()
            opt.step()
            schedule.step()
    return model.eval()
