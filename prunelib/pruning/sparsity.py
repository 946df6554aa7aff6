"""Sparsity accounting from the effective weights: identical before and after ``prune.remove``.

``sparsity`` is the fraction of zero weights over the prunable parameters (what the schedule
controls); ``sparsity_model`` is the fraction of zeros over every parameter, biases and
embeddings included. Neither is "compression".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prunelib.pruning.params import Params, effective_parameters, linear_and_conv_weights, param_names


@dataclass(frozen=True)
class SparsityReport:
    """Zeros per parameter and aggregated; counts are exact integers."""

    per_parameter: dict[str, float]  # every parameter, by plain name
    prunable_zeros: int
    prunable_total: int
    model_zeros: int
    model_total: int

    @property
    def sparsity(self) -> float:
        """Fraction of zeros over all prunable weights."""
        return self.prunable_zeros / self.prunable_total if self.prunable_total else 0.0

    @property
    def sparsity_model(self) -> float:
        """Fraction of zeros over every parameter of the model."""
        return self.model_zeros / self.model_total if self.model_total else 0.0


def prunable_names(model: nn.Module, params: Params | None = None) -> list[str]:
    """Plain names (``layers.0.weight``) of ``params`` (default: every Linear and Conv weight)."""
    return param_names(model, linear_and_conv_weights(model) if params is None else params)


def sparsity_report(model: nn.Module, params: Params | None = None) -> SparsityReport:
    """Count zeros of every effective parameter of ``model`` (the model is not changed).

    ``sparsity`` is over ``params``, the family's prunable tensors (default: every Linear and
    Conv weight); ``sparsity_model`` over every parameter.
    """
    prunable = set(prunable_names(model, params))
    per: dict[str, float] = {}
    pz = pt = mz = mt = 0
    for name, tensor in effective_parameters(model):
        zeros, total = int((tensor == 0).sum()), tensor.numel()
        per[name] = zeros / total if total else 0.0
        mz, mt = mz + zeros, mt + total
        if name in prunable:
            pz, pt = pz + zeros, pt + total
    return SparsityReport(per, pz, pt, mz, mt)


def expected_sparsity(amount: float, iterations: int) -> float:
    """Sparsity after ``iterations`` steps each pruning ``amount`` of the remaining: 1-(1-a)^k."""
    return 1.0 - (1.0 - amount) ** iterations


def count_nonzero(model: nn.Module) -> int:
    """Nonzero effective parameters of ``model``."""
    return sum(int(torch.count_nonzero(t)) for _, t in effective_parameters(model))
