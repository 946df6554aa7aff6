"""Pruning criteria on top of ``torch.nn.utils.prune``: which weights go, never when.

Counting rule (torch's, in one place): a step removes ``round(amount * remaining)`` weights —
``amount`` is the fraction of the weights still *remaining* (Python's round, half to even) —
counted over all given parameters for the global criteria and per parameter for ``layerwise``.
Ties are broken by ``torch.topk`` over the flattened scores, which is deterministic on CPU.
A pruned weight is never revived: torch's ``PruningContainer`` only scores unpruned entries.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from prunelib.config import check_fraction
from prunelib.pruning.params import effective_parameters

Params = list[tuple[nn.Module, str]]


def magnitude_prune(params: Params, amount: float, seed: int = 0) -> None:
    """Global L1 unstructured pruning (the lab's method): the smallest |w| over all ``params`` go."""
    check_fraction("amount", amount)
    for module, _ in params:  # torch scores the cached ``weight``, stale after an optimizer step
        refresh_masked(module)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)


def layerwise_prune(params: Params, amount: float, seed: int = 0) -> None:
    """L1 unstructured pruning of ``amount`` of each parameter's remaining weights separately."""
    check_fraction("amount", amount)
    for module, name in params:
        refresh_masked(module)  # as in magnitude_prune: score the current weights
        prune.l1_unstructured(module, name, amount=amount)


def random_prune(params: Params, amount: float, seed: int = 0) -> None:
    """Global random unstructured pruning, the baseline: uniform scores drawn from ``seed``.

    Uses L1 selection over random importance scores so the count and the no-revival rule are
    exactly those of :func:`magnitude_prune`, and the global RNG is not touched.
    """
    check_fraction("amount", amount)
    gen = torch.Generator().manual_seed(seed)
    scores = {(m, n): torch.rand(getattr(m, n).shape, generator=gen) for m, n in params}
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount, importance_scores=scores)


CRITERIA: dict[str, Callable[[Params, float, int], None]] = {
    "magnitude": magnitude_prune,
    "layerwise": layerwise_prune,
    "random": random_prune,
}


def get_criterion(name: str) -> Callable[[Params, float, int], None]:
    """The pruning criterion called ``name`` (``magnitude``, ``layerwise`` or ``random``)."""
    if name not in CRITERIA:
        raise ValueError(f"unknown pruning criterion {name!r}; choose one of {sorted(CRITERIA)}")
    return CRITERIA[name]


def named_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every pruning mask of ``model`` by plain parameter name (``layers.0.weight``)."""
    return {
        name[: -len("_mask")]: buf.detach().clone() for name, buf in model.named_buffers() if name.endswith("_mask")
    }


def _pruning_hooks(model: nn.Module) -> list[tuple[nn.Module, prune.BasePruningMethod]]:
    return [
        (module, hook)
        for module in model.modules()
        for hook in list(module._forward_pre_hooks.values())
        if isinstance(hook, prune.BasePruningMethod)
    ]


def refresh_masked(model: nn.Module) -> None:
    """Recompute every pruned ``weight = weight_orig * weight_mask`` attribute, detached.

    After an optimizer step the cached attribute is stale and carries autograd history
    (which also makes ``copy.deepcopy`` fail); the forward pre-hook would redo this anyway.
    """
    with torch.no_grad():
        for module, hook in _pruning_hooks(model):
            setattr(module, hook._tensor_name, hook.apply_mask(module))


def remove_reparametrization(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every pruning made permanent (plain parameters, zeros where pruned).

    The original keeps its masks; use the copy for timing, export and size on disk.
    """
    refresh_masked(model)
    dense = copy.deepcopy(model)
    for module, hook in _pruning_hooks(dense):
        name = hook._tensor_name
        prune.remove(module, name)
        # prune.remove appends the parameter last; put it first again (Linear/Conv order: weight, bias)
        # so the saved state_dict, and its size on disk, do not depend on whether a step pruned.
        params = module._parameters
        module._parameters = {name: params[name], **{k: v for k, v in params.items() if k != name}}
    return dense


def initial_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s parameters by plain name: what IMP rewinds to."""
    return {name: t.clone() for name, t in effective_parameters(model)}


def rewind(model: nn.Module, initial: Mapping[str, torch.Tensor]) -> None:
    """Reset every parameter of ``model`` to ``initial`` in place, keeping the pruning masks.

    Surviving weights get exactly their initial values; pruned ones stay zero (mask).

    Raises:
        ValueError: ``initial`` comes from another model (names or shapes differ).
    """
    targets: dict[str, torch.Tensor] = {}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for p_name, param in module.named_parameters(recurse=False):
            targets[prefix + p_name.removesuffix("_orig")] = param
    missing = sorted(set(targets) - set(initial))
    extra = sorted(set(initial) - set(targets))
    if missing or extra:
        raise ValueError(f"initial weights do not match this model: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, param in targets.items():
        if tuple(initial[name].shape) != tuple(param.shape):
            raise ValueError(
                f"initial weight {name!r} has shape {tuple(initial[name].shape)}, the model has {tuple(param.shape)}"
            )
    with torch.no_grad():
        for name, param in targets.items():
            param.copy_(initial[name])
    refresh_masked(model)
