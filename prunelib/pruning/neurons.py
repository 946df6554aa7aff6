"""Structured pruning of whole units (L2 criterion) and the layer surgery that physically removes them.

Two separate steps, as in the house style: :func:`structured_prune_step` *chooses* neurons and
records the choice as ``torch.nn.utils.prune`` masks (``weight_mask`` rows and ``bias_mask``
entries), so IMP's rewind (copy initial ``*_orig``, keep ``*_mask``) works unchanged;
:func:`shrink` later *rebuilds* a smaller :class:`~prunelib.families.mlp.models.MLP` without the dead
neurons, with the same outputs.

The rule, in one place:

* Only hidden Linear layers (``model.layers``) lose neurons; the output layer ``model.out``
  never does. Each hidden layer is pruned separately (per-layer, not global: row norms of
  layers with different fan-in are not comparable).
* A neuron's score is the L2 norm of its effective weight row (``weight_orig * weight_mask``);
  its bias does not enter the score but is masked together with the row, so the neuron is dead
  (``relu(0 @ x + 0) = 0``).
* ``amount`` is the fraction of the layer's *remaining* neurons removed this step (remaining =
  rows whose weight mask is not all zero, torch's structured convention). The number removed
  is ``round(amount * remaining)`` (Python's round, half to even, as in
  :mod:`prunelib.pruning.criteria` and torch), capped at ``remaining - 1`` so every layer keeps at
  least one neuron.
* Ties: neurons are ranked by (norm, index) ascending, so among equal norms the lower index
  is removed first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn
from torch.nn.utils import prune

from prunelib.config import check_fraction
from prunelib.pruning.params import Params


def count_to_prune(amount: float, remaining: int) -> int:
    """How many of ``remaining`` neurons one step of ``amount`` removes (module docstring rule).

    Raises:
        ValueError: ``amount`` not strictly between 0 and 1, or ``remaining`` < 1.
    """
    check_fraction("amount", amount)
    if not isinstance(remaining, int) or remaining < 1:
        raise ValueError(f"remaining must be an int >= 1, got {remaining!r}")
    return min(round(float(amount) * remaining), remaining - 1)


class L2NeuronStructured(prune.BasePruningMethod):
    """Criterion: remove the output units (rows, ``dim=0``) with the smallest L2 norm.

    A torch pruning method, so repeated steps compose through torch's ``PruningContainer``,
    which hands :meth:`compute_mask` only the rows still alive.
    """

    PRUNING_TYPE = "structured"
    dim = 0

    def __init__(self, amount: float) -> None:
        self.amount = check_fraction("amount", amount)

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        """Mask zeroing the ``count_to_prune(amount, rows)`` lowest-norm rows of ``t``."""
        rows = t.shape[0]
        mask = default_mask.clone(memory_format=torch.contiguous_format)
        n = count_to_prune(self.amount, rows) if rows > 0 else 0
        if n == 0:
            return mask
        norms = torch.linalg.vector_norm(t.detach().reshape(rows, -1).double(), dim=1)
        order = torch.sort(norms, stable=True).indices  # ascending norm, then ascending index
        mask[order[:n]] = 0
        return mask


def effective_tensor(module: nn.Module, name: str) -> torch.Tensor | None:
    """``name`` of ``module`` as the forward pass uses it, recomputed from ``*_orig * *_mask``.

    Recomputed rather than read from ``module.<name>``, which torch refreshes only on forward
    and so is stale right after a rewind.
    """
    orig = getattr(module, name + "_orig", None)
    if orig is not None:
        return (orig * getattr(module, name + "_mask").to(orig.dtype)).detach()
    value = getattr(module, name, None)
    return None if value is None else value.detach()


def neuron_prune(
    params: Params,
    amount: float,
    seed: int = 0,
    method: type[prune.BasePruningMethod] = L2NeuronStructured,
) -> None:
    """Prune ``amount`` of the remaining output units of each of ``params``, in place.

    Same signature as the criteria of :mod:`prunelib.pruning.criteria` (``seed`` is unused: L2 is
    deterministic). Mutates each module: adds or tightens ``weight_mask`` (whole rows) and
    ``bias_mask`` through ``torch.nn.utils.prune``; weights themselves are untouched.

    Args:
        params: ``(module, "weight")`` pairs; pass :func:`hidden_parameters` so the output
            layer is spared.
        amount: fraction strictly between 0 and 1 of each layer's remaining units to remove.
        method: the criterion, a structured torch pruning method taking ``amount``.

    Raises:
        ValueError: ``amount`` not strictly between 0 and 1, or a name other than "weight".
    """
    check_fraction("amount", amount)
    for module, name in params:
        if name != "weight":
            raise ValueError(f"neuron pruning acts on 'weight', got {name!r}")
        scores = effective_tensor(module, "weight")
        method.apply(module, "weight", amount, importance_scores=scores)
        if getattr(module, "bias", None) is not None:
            mask = cast(torch.Tensor, module.weight_mask)
            row_alive = mask.reshape(mask.shape[0], -1).any(dim=1).to(mask.dtype)
            prune.custom_from_mask(module, "bias", row_alive)


def alive_neurons(module: nn.Module) -> torch.Tensor:
    """Boolean vector over output units of ``module``: False where the unit is dead.

    Dead means its effective weight row and bias are all zero, so after a ReLU it outputs 0
    for every input. Judged on values, so it works on masked and on ``prune.remove``-d models.
    """
    weight = effective_tensor(module, "weight")
    if weight is None:
        raise ValueError(f"module {module!r} has no weight")
    alive = weight.reshape(weight.shape[0], -1).ne(0).any(dim=1)
    bias = effective_tensor(module, "bias")
    if bias is not None:
        alive |= bias.ne(0)
    return alive


def rebuild_layer(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A fresh Linear/Conv1d like ``module`` holding ``weight`` and ``bias`` (no pruning hooks)."""
    if isinstance(module, nn.Linear):
        new: nn.Linear | nn.Conv1d = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    elif isinstance(module, nn.Conv1d):
        if module.groups != 1:
            raise ValueError(f"only groups=1 Conv1d can be shrunk, got groups={module.groups}")
        new = nn.Conv1d(
            weight.shape[1],
            weight.shape[0],
            cast("tuple[int]", module.kernel_size),  # a Conv1d's are 1-tuples; the stubs say tuple[int, ...]
            cast("tuple[int]", module.stride),
            cast("str | tuple[int]", module.padding),
            cast("tuple[int]", module.dilation),
            1,
            bias is not None,
            module.padding_mode,
        )
    else:
        raise TypeError(f"can shrink Linear or Conv1d, got {type(module).__name__}")
    new = new.to(dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            cast(torch.Tensor, new.bias).copy_(bias)  # built with bias=True just above
    return new


def shrink_pair(
    producer: nn.Module, consumer: nn.Module, keep: torch.Tensor | Sequence[int]
) -> tuple[nn.Module, nn.Module]:
    """New ``(producer, consumer)`` keeping only units ``keep`` between them.

    ``producer`` loses output units (weight dim 0, bias), ``consumer`` the matching inputs
    (weight dim 1). Works for Linear and groups=1 Conv1d (channels), reparametrized or not;
    the inputs are not mutated. Exact when the dropped units output 0 after the activation in
    between (dead units under ReLU/GELU/tanh, not sigmoid).

    Args:
        keep: boolean mask over the producer's outputs, or sorted indices to keep.

    Raises:
        ValueError: ``keep`` does not fit the layers' shapes or keeps nothing.
    """
    w1, b1 = effective_tensor(producer, "weight"), effective_tensor(producer, "bias")
    w2, b2 = effective_tensor(consumer, "weight"), effective_tensor(consumer, "bias")
    if w1 is None or w2 is None:
        raise ValueError("producer and consumer need weights")
    if w1.shape[0] != w2.shape[1]:
        raise ValueError(f"producer has {w1.shape[0]} outputs but consumer {w2.shape[1]} inputs")
    keep = torch.as_tensor(keep)
    if keep.dtype == torch.bool:
        if keep.shape != (w1.shape[0],):
            raise ValueError(f"boolean keep must have shape ({w1.shape[0]},), got {tuple(keep.shape)}")
        keep = keep.nonzero().flatten()
    keep = keep.to(torch.long)
    if keep.numel() == 0 or keep.min() < 0 or keep.max() >= w1.shape[0]:
        raise ValueError(f"keep must select 1..{w1.shape[0]} valid units, got {keep.tolist()}")
    new_producer = rebuild_layer(producer, w1[keep], None if b1 is None else b1[keep])
    new_consumer = rebuild_layer(consumer, w2[:, keep], b2)
    return new_producer, new_consumer
