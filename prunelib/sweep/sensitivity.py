"""Layer sensitivity: prune one group of weights at a time, everything else dense, and measure.

The generic core, :func:`sensitivity`, takes named groups of ``(module, name)`` pairs, a list of
sparsity levels and an ``evaluate(model) -> float`` callable; for every (group, level) it
prunes a deep copy of the model so that ``level`` of that group's weights are zero (by the
given criterion, global over the group: magnitude by default), evaluates it, and returns one
row per (group, level). The model passed in is never changed.

The groups come from the family (:meth:`Family.sensitivity_groups`: each Linear of an MLP; a
SEW model's feature encoder, attention, feed-forward, and each transformer layer). Groups may
overlap (``attention`` is part of every ``layer.i``): each is pruned on its own.
:func:`family_sensitivity` runs it for a family's model on its data.
Plot the result with :func:`prunelib.report.plots.sensitivity_figure` (columns ``group``,
``sparsity`` and the metric).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn

from prunelib.progress import progress
from prunelib.pruning.criteria import get_criterion, refresh_masked
from prunelib.pruning.params import Params

if TYPE_CHECKING:
    from prunelib.families.contract import Family

Groups = Mapping[str, Params]

#: Default sparsity levels: 0 (the dense reference) then 10 % .. 90 %.
DEFAULT_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _effective(module: nn.Module, name: str) -> torch.Tensor:
    """The weight the forward pass uses (``orig * mask`` where pruned)."""
    mask = getattr(module, f"{name}_mask", None)
    orig = getattr(module, f"{name}_orig", None)
    return (orig * mask).detach() if mask is not None and orig is not None else getattr(module, name).detach()


def group_sparsity(params: Params) -> float:
    """Fraction of zeros over the effective weights of ``params``."""
    total = sum(_effective(m, n).numel() for m, n in params)
    zeros = sum(int((_effective(m, n) == 0).sum()) for m, n in params)
    return zeros / total if total else 0.0


def _check(groups: Groups, levels: Sequence[float]) -> list[float]:
    if not groups:
        raise ValueError("sensitivity needs at least one group")
    for name, params in groups.items():
        if not params:
            raise ValueError(f"group {name!r} has no parameters")
    levels = [float(x) for x in levels]
    if not levels:
        raise ValueError("sensitivity needs at least one sparsity level")
    bad = [x for x in levels if not 0.0 <= x < 1.0]
    if bad:
        raise ValueError(f"sparsity levels must lie in [0, 1), got {bad}")
    return levels if 0.0 in levels else [0.0, *levels]  # every loss is measured from the dense model


def _locate(model: nn.Module, groups: Groups) -> dict[str, list[tuple[str, str]]]:
    """Each group's pairs as (module path, parameter name) in ``model``, to find them in a copy."""
    paths = {id(m): p for p, m in model.named_modules()}
    out: dict[str, list[tuple[str, str]]] = {}
    for group, params in groups.items():
        for module, name in params:
            if id(module) not in paths:
                raise ValueError(f"group {group!r}: a {type(module).__name__} that is not part of the model")
            if not hasattr(module, name):
                raise ValueError(f"group {group!r}: {paths[id(module)] or 'model'} has no parameter {name!r}")
        out[group] = [(paths[id(m)], n) for m, n in params]
    return out


def prune_group_to(params: Params, level: float, criterion: str = "magnitude", seed: int = 0) -> None:
    """Prune ``params`` (in place) until ``level`` of their weights are zero, by ``criterion`` over the group.

    Weights already zero count towards the level; the criterion removes the rest of the
    count from the remaining ones (``round(level * total)`` zeros in all, up to rounding of
    the fraction torch applies).
    """
    if level <= 0.0:
        return
    total = sum(_effective(m, n).numel() for m, n in params)
    zeros = sum(int((_effective(m, n) == 0).sum()) for m, n in params)
    want = round(level * total)
    if want <= zeros:
        return
    amount = (want - zeros) / (total - zeros)
    get_criterion(criterion)(params, min(amount, 1.0 - 1e-12), seed)


def sensitivity(
    model: nn.Module,
    groups: Groups,
    evaluate: Callable[[nn.Module], float],
    levels: Iterable[float] = DEFAULT_LEVELS,
    metric: str = "accuracy",
    criterion: str = "magnitude",
    seed: int = 0,
) -> pd.DataFrame:
    """Metric of ``model`` with one group pruned at a time, for every (group, level).

    Args:
        groups: name -> ``(module, parameter name)`` pairs of ``model`` (see the builders).
        evaluate: ``evaluate(model) -> float``, e.g. accuracy or WER on a fixed data set.
        levels: sparsity of the pruned group, each in [0, 1); 0 is the dense model (evaluated once, and
            added when missing: the summary measures every loss from it).
        metric: name of the metric column (``accuracy``, ``wer``, ...).
        criterion: a :data:`prunelib.pruning.criteria.CRITERIA` name; ``magnitude`` is global over the group.

    Returns:
        Columns ``group``, ``sparsity`` (the level), ``group_sparsity`` (measured zeros of the
        group), ``model_sparsity`` (zeros over all grouped weights of the model), ``metric``.
        Rows in the order of ``groups`` then ``levels``.

    Raises:
        ValueError: no groups, an empty group, a pair not in ``model``, a level outside [0, 1).
    """
    get_criterion(criterion)
    levels = _check(groups, list(levels))
    located = _locate(model, groups)
    everything = {(p, n) for pairs in located.values() for p, n in pairs}
    dense_metric: float | None = None
    rows = []
    jobs = [(g, lv) for g in located for lv in levels]
    refresh_masked(model)  # a freshly pruned model caches non-leaf weights, which deepcopy refuses
    for group, level in progress(jobs, desc="sensitivity", total=len(jobs)):
        work = copy.deepcopy(model)
        modules = dict(work.named_modules())
        params = [(modules[p], n) for p, n in located[group]]
        prune_group_to(params, level, criterion, seed)
        if level == 0.0 and dense_metric is not None:
            value = dense_metric
        else:
            value = float(evaluate(work))
            if level == 0.0:
                dense_metric = value
        rows.append(
            {
                "group": group,
                "sparsity": level,
                "group_sparsity": group_sparsity(params),
                "model_sparsity": group_sparsity([(modules[p], n) for p, n in sorted(everything)]),
                metric: value,
            }
        )
        del work
    return pd.DataFrame(rows, columns=["group", "sparsity", "group_sparsity", "model_sparsity", metric])


def family_sensitivity(
    family: Family, model: nn.Module, data: Any, levels: Iterable[float] = DEFAULT_LEVELS, seed: int = 0
) -> pd.DataFrame:
    """:func:`sensitivity` of ``model`` over ``family.sensitivity_groups``, scored by the family's metric.

    Works on a prepared copy; ``model`` is not changed. The metric column is named by
    ``family.metric.name``.
    """
    refresh_masked(model)  # a freshly pruned model caches non-leaf weights, which deepcopy refuses
    work = family.prepare(copy.deepcopy(model))
    name = family.metric.name
    frame = sensitivity(
        work, family.sensitivity_groups(work), lambda m: family.evaluate(m, data)[name], levels, metric=name, seed=seed
    )
    frame.attrs["metric"] = family.metric
    return frame
