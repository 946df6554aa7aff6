"""Training and evaluation with fixed hyperparameters; deterministic given a seed."""

from __future__ import annotations

import torch
from torch import nn

from prunelib.families.mlp.config import TrainConfig
from prunelib.families.mlp.data import Split
from prunelib.families.mlp.models import MLP, ModelSpec, build_model
from prunelib.progress import progress


def init_model(spec: ModelSpec, seed: int) -> MLP:
    """Build ``spec`` with weights drawn from ``seed`` (global RNG state is left untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_model(spec)


def train(model: nn.Module, data: Split, cfg: TrainConfig, seed: int, desc: str = "train") -> nn.Module:
    """Train ``model`` in place with Adam and cross-entropy; returns it for chaining.

    Pruned weights stay zero: gradients reach ``weight_orig`` only through the mask.
    The batch order and any dropout are drawn from ``seed``, so the same call gives the same
    weights; the caller's global RNG state is restored afterwards.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _train(model, data, cfg, seed, desc)


def _train(model: nn.Module, data: Split, cfg: TrainConfig, seed: int, desc: str) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in progress(range(cfg.epochs), desc=desc, total=cfg.epochs):
        order = torch.randperm(len(data), generator=gen)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(data.x[idx]), data.y[idx]).backward()
            opt.step()
    model.eval()
    return model


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predicted class per row of ``x``."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def evaluate(model: nn.Module, data: Split) -> float:
    """Accuracy (fraction correct, 0..1) of ``model`` on ``data``."""
    if len(data) == 0:
        raise ValueError("cannot evaluate on an empty split")
    return float((predict(model, data.x) == data.y).float().mean())
