"""Layer sensitivity: prune one group of weights at a time, everything else dense, and measure.

The generic core, :func:`sensitivity`, takes named groups of ``(module, name)`` pairs, a list of
sparsity levels and an ``evaluate(model) -> float`` callable; for every (group, level) it
prunes a deep copy of the model so that ``level`` of that group's weights are zero (by the
given criterion, global over the group: magnitude by default), evaluates it, and returns one
row per (group, level). The model passed in is never changed.

Group builders: :func:`mlp_groups` (each Linear of :class:`prunelib.families.mlp.models.MLP` by name) and
:func:`sew_groups` (a SEW/wav2vec2-style CTC model: feature-encoder convolutions, attention
projections, feed-forward layers, and each transformer layer by index). Groups may overlap
(``attention`` is part of every ``layer.i``): each is pruned on its own.
Plot the result with :func:`prunelib.report.plots.sensitivity_figure` (columns ``group``,
``sparsity`` and the metric).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from prunelib.progress import progress
from prunelib.pruning.criteria import get_criterion

Params = list[tuple[nn.Module, str]]
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
    return levels


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
        levels: sparsity of the pruned group, each in [0, 1); 0 is the dense model (evaluated once).
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


# --------------------------------------------------------------------------- group builders


def mlp_groups(model: nn.Module) -> dict[str, Params]:
    """Each ``nn.Linear`` of a :class:`prunelib.families.mlp.models.MLP` by its name (``layers.0``, ``layers.2``, ``out``).

    Raises:
        ValueError: the model has no Linear layer.
    """
    groups = {name: [(m, "weight")] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    if not groups:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to group")
    return groups


def sew_groups(model: nn.Module, others: bool = False) -> dict[str, Params]:
    """Component groups of a SEW (or wav2vec2-style) CTC model.

    ``feature_extractor`` (every conv of the feature encoder), ``attention`` (q, k, v and out
    projections of every layer), ``feed_forward`` (both dense layers of every layer), then
    ``layer.0``, ``layer.1``, ... (every Linear of that transformer layer). With ``others``
    also ``pos_conv_embed``, ``upsample`` (SEW's upsampling projection, if any) and ``lm_head``.
    The positional conv must have its weight norm folded first
    (:func:`prunelib.families.sew.sweep.fold_weight_norm`) for ``others``.

    Raises:
        ValueError: ``model`` does not have the SEW/wav2vec2 layout.
    """
    base = getattr(model, "base_model", model)
    try:
        convs = [layer.conv for layer in base.feature_extractor.conv_layers]
        layers = list(base.encoder.layers)
    except AttributeError as err:
        raise ValueError(f"{type(model).__name__} does not look like a SEW/wav2vec2 CTC model: {err}") from None
    groups: dict[str, Params] = {"feature_extractor": [(c, "weight") for c in convs]}
    groups["attention"] = [
        (getattr(layer.attention, p), "weight") for layer in layers for p in ("q_proj", "k_proj", "v_proj", "out_proj")
    ]
    groups["feed_forward"] = [
        (getattr(layer.feed_forward, p), "weight") for layer in layers for p in ("intermediate_dense", "output_dense")
    ]
    for i, layer in enumerate(layers):
        groups[f"layer.{i}"] = [(m, "weight") for m in layer.modules() if isinstance(m, nn.Linear)]
    if others:
        pos = base.encoder.pos_conv_embed.conv
        if torch.nn.utils.parametrize.is_parametrized(pos):
            raise ValueError("pos_conv_embed weight is parametrized: call fold_weight_norm(model) first")
        groups["pos_conv_embed"] = [(pos, "weight")]
        upsample = getattr(base.encoder, "upsample", None)
        if upsample is not None:
            groups["upsample"] = [(upsample.projection, "weight")]
        head = getattr(model, "lm_head", None)
        if head is not None:
            groups["lm_head"] = [(head, "weight")]
    return groups
