"""The MLP's structured units: hidden neurons chosen by L2 (:mod:`prunelib.pruning.structured`) and shrunk away.

Only hidden Linear layers (``model.layers``) lose neurons; the output layer never does. Each
hidden layer is pruned separately; :func:`shrink` rebuilds a smaller :class:`MLP` with the
same outputs.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn

from prunelib.families.mlp.models import MLP
from prunelib.pruning.params import Params
from prunelib.pruning.structured import alive_neurons, effective_tensor, neuron_prune, rebuild_layer, shrink_pair


def hidden_linears(model: MLP) -> list[tuple[str, nn.Linear]]:
    """The hidden Linear layers of ``model`` (the ones whose neurons may be pruned), in order."""
    if not isinstance(model, MLP):
        raise TypeError(f"expected a prunelib MLP, got {type(model).__name__}")
    return [(f"layers.{i}", m) for i, m in enumerate(model.layers) if isinstance(m, nn.Linear)]


def hidden_parameters(model: MLP) -> Params:
    """The ``(module, "weight")`` pairs whose rows (neurons) structured pruning may remove."""
    return [(m, "weight") for _, m in hidden_linears(model)]


def structured_prune_step(model: MLP, amount: float) -> None:
    """One L2 structured step on ``model``: :func:`neuron_prune` of its hidden layers, in place."""
    neuron_prune(hidden_parameters(model), amount)


def neurons_remaining(model: MLP) -> dict[str, int]:
    """Number of alive neurons per hidden layer, e.g. ``{"layers.0": 512, "layers.2": 300}``."""
    return {name: int(alive_neurons(m).sum()) for name, m in hidden_linears(model)}


def shrink(model: MLP) -> MLP:
    """A new, smaller MLP with every dead hidden neuron physically removed; same outputs.

    ``model`` is not mutated; it may be reparametrized (masks) or have had ``prune.remove``.
    The result has no pruning hooks; remaining unstructured zeros stay as zeros.
    """
    linears = [m for _, m in hidden_linears(model)] + [model.out]
    new_linears: list[nn.Module] = [linears[0]]
    for i in range(len(linears) - 1):
        keep = alive_neurons(linears[i])
        if not keep.any():  # a fully dead layer: keep one (zero) unit so shapes stay valid
            keep[0] = True
        new_linears[i], new_next = shrink_pair(new_linears[i], linears[i + 1], keep)
        new_linears.append(new_next)
    if len(linears) == 1:  # no hidden layer: just copy the output layer
        new_linears[0] = rebuild_layer(
            linears[0], cast(torch.Tensor, effective_tensor(linears[0], "weight")), effective_tensor(linears[0], "bias")
        )
    hidden = tuple(cast(int, m.out_features) for m in new_linears[:-1])  # rebuilt Linears
    small = MLP(linears[0].in_features, hidden, model.out.out_features)
    small = small.to(dtype=cast(torch.Tensor, new_linears[-1].weight).dtype)
    if model.embedding is not None:  # input side is untouched: copy it whole
        small.embedding = copy.deepcopy(model.embedding)
    with torch.no_grad():
        for i, m in enumerate(new_linears[:-1]):
            small.layers[2 * i].load_state_dict(m.state_dict())
        small.out.load_state_dict(new_linears[-1].state_dict())
    return small.train(model.training)
