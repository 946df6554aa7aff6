"""Structured pruning of any traceable model, with Torch-Pruning's dependency graph as the engine.

Torch-Pruning (DepGraph, Fang et al., CVPR 2023) traces a model once and yields *groups*: the
output units of one layer (a Linear's neurons, a Conv's channels) together with everything
coupled to them (the BatchNorm after it, the next layer's input columns, depthwise convs and both
sides of a residual add). A group is removed as a whole or not at all.

How prunelib uses it, in one place:

* **Masks during the schedule, a shrink at deploy time.** :func:`prune_units` chooses units and
  records the choice as ``torch.nn.utils.prune`` masks on every parameter slice Torch-Pruning
  would cut for them (:func:`group_masks`), so IMP's rewind (copy the initial ``*_orig``, keep
  every ``*_mask``) resets the survivors to their initial values unchanged, and the sizes,
  sparsity and compact format see the zeros. :func:`shrink` later asks Torch-Pruning to cut the
  dead units physically; the outputs stay the same, because every weight of a dead unit (its
  row, its BatchNorm scale and shift, the next layer's column) is zero.
* **Which slices a group cuts** is read from Torch-Pruning itself, not from a table of layer
  types: on a private copy each parameter holds its own positions (0, 1, 2, ...), the group is
  pruned there, and the positions that disappeared are the mask's zeros.
* **Criteria** (:data:`UNIT_CRITERIA`): ``l2``, the L2 norm of all of a unit's coupled weights
  (Torch-Pruning's ``GroupMagnitudeImportance``); ``bn-scale``, the |γ| of the group's BatchNorm
  (network slimming, Liu et al. 2017), falling back to ``l2`` in a group without BatchNorm.
* **Scope** (:data:`UNIT_SCOPES`): ``layer`` removes ``round(amount × alive)`` units of each group,
  capped so each keeps one; ``global`` ranks the units of all groups together by their score
  divided by their group's mean (over alive units) and removes ``round(amount × all alive)``,
  never a group's last unit.
* **Rounding** (``round_to``): the units a group keeps after a step are rounded to the nearest
  multiple of ``round_to`` (half up; at least one multiple, never more than are alive), so a
  shrunk width suits the runtime's SIMD blocks. ONNX Runtime on x86 ran a DS-CNN of 30 or 86
  channels 3-5x slower than one of 32 or 88. A group with fewer alive units than ``round_to``
  is counted as without rounding; a step may leave a group whole when rounding returns it to
  its width.
* A unit is **alive** while any weight coupled to it (biases included) is nonzero. Ties go to
  the lower index: ranking is a stable sort by (score, index).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune

from prunelib.config import check_fraction
from prunelib.errors import Unsupported
from prunelib.pruning.criteria import remove_reparametrization

F = TypeVar("F", bound=Callable[..., Any])
UNIT_CRITERIA = ("l2", "bn-scale")
UNIT_SCOPES = ("layer", "global")


@dataclass(frozen=True)
class UnitRule:
    """How units are ranked (``criterion``), counted (``scope``) and rounded (``round_to``) in a structured step."""

    criterion: str = "l2"
    scope: str = "layer"
    round_to: int = 1

    def __post_init__(self) -> None:
        if self.criterion not in UNIT_CRITERIA:
            raise ValueError(f"unknown unit criterion {self.criterion!r}; choose one of {list(UNIT_CRITERIA)}")
        if self.scope not in UNIT_SCOPES:
            raise ValueError(f"unknown unit scope {self.scope!r}; choose one of {list(UNIT_SCOPES)}")
        if isinstance(self.round_to, bool) or not isinstance(self.round_to, int) or self.round_to < 1:
            raise ValueError(f"unit rounding must be an integer >= 1, got {self.round_to!r}")

    @property
    def default(self) -> bool:
        """Whether this is the default rule (L2, per layer, no rounding), which leaves labels as they were."""
        return self == DEFAULT_RULE


#: L2 per layer, unrounded: what a structured method does unless told otherwise.
DEFAULT_RULE = UnitRule()


@dataclass(frozen=True)
class Structure:
    """How the engine sees a model: what to trace it on, and which layers never lose output units.

    ``example``: one input the model's forward takes (a batch of one is enough).
    ``ignored``: modules of the model whose outputs stay whole, typically the classifier.
    """

    example: torch.Tensor
    ignored: tuple[nn.Module, ...] = ()


@dataclass(frozen=True)
class _Graph:
    """A dependency graph built on a plain copy of a model, with its groups' roots by name."""

    plain: nn.Module
    graph: Any  # tp.DependencyGraph
    roots: dict[str, tuple[nn.Module, Any]]  # root module name -> (module of ``plain``, pruning function)


def _autograd(fn: F) -> F:
    """Run ``fn`` with autograd on, even when called under ``torch.no_grad`` or ``torch.inference_mode``.

    Torch-Pruning traces a model through autograd; the copies it prunes must be normal tensors.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode(False), torch.enable_grad():
            return fn(*args, **kwargs)

    return cast(F, wrapper)


def _graph(model: nn.Module, structure: Structure) -> _Graph:
    """Trace a plain copy of ``model`` (pruning made permanent) and list its groups' roots."""
    plain = remove_reparametrization(model).eval()
    names = {id(m): n for n, m in model.named_modules()}
    by_name = dict(plain.named_modules())

    def mine(modules: Any) -> list[nn.Module]:
        try:
            return [by_name[names[id(m)]] for m in modules]
        except KeyError as missing:
            raise ValueError(f"Structure names a module that is not part of the model: {missing}") from None

    ignored = mine(structure.ignored)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        example = structure.example  # one made under torch.inference_mode cannot be traced: a normal copy
        example = example.clone() if example.is_inference() else example
        dtype = next((p.dtype for p in plain.parameters() if p.is_floating_point()), example.dtype)
        if example.is_floating_point():  # trace in the model's own precision
            example = example.to(dtype)
        graph = tp.DependencyGraph().build_dependency(plain, example, verbose=False)
        plain_names = {id(m): n for n, m in plain.named_modules()}
        roots: dict[str, tuple[nn.Module, Any]] = {}
        for group in graph.get_all_groups(ignored_layers=ignored):
            dep = group[0].dep
            roots[plain_names[id(dep.target.module)]] = (dep.target.module, dep.handler)
    order = {n: i for i, n in enumerate(by_name)}  # groups in the model's own layer order
    return _Graph(plain, graph, dict(sorted(roots.items(), key=lambda kv: order[kv[0]])))


def _full_group(g: _Graph, name: str) -> Any:
    module, handler = g.roots[name]
    return g.graph.get_pruning_group(module, handler, list(range(g.graph.get_out_channels(module))))


def _dim(module: nn.Module, handler: Any) -> int:
    """The weight dimension a pruning function cuts on ``module`` (bias and norm parameters: always 0)."""
    out = handler.__name__ == "prune_out_channels"
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.groups not in (1, module.in_channels):
            raise Unsupported(f"grouped convolution {module} (groups={module.groups}) cannot be scored")
        return (1 if out else 0) if module.transposed else (0 if out or module.groups > 1 else 1)
    if isinstance(module, nn.Linear):
        return 0 if out else 1
    if isinstance(module, nn.Embedding):
        return 1
    if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.PReLU)):
        return 0
    raise Unsupported(
        f"Torch-Pruning couples a {type(module).__name__} to these units; prunelib scores Linear, Conv, norm and embedding layers"
    )


def _scores(g: _Graph, name: str, criterion: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(score, alive) per unit of the group rooted at ``name``.

    ``l2``: the L2 norm over every weight slice coupled to the unit; ``bn-scale``: the mean |γ|
    of its BatchNorm layers (``l2`` when the group has none). Alive: any coupled value nonzero.
    """
    group = _full_group(g, name)
    width = g.graph.get_out_channels(g.roots[name][0])
    squares = torch.zeros(width, dtype=torch.float64)
    magnitude = torch.zeros(width, dtype=torch.float64)
    scales = 0
    for item in group:
        module = item.dep.target.module
        if not isinstance(module, nn.Module) or not any(True for _ in module.parameters(recurse=False)):
            continue  # an operation (add, reshape, ...) or a layer without weights
        dim, roots = _dim(module, item.dep.handler), torch.as_tensor(item.root_idxs, dtype=torch.long)
        idxs = torch.as_tensor(item.idxs, dtype=torch.long)
        for pname, p in module.named_parameters(recurse=False):
            if p.dim() == 0 or (isinstance(module, nn.PReLU) and p.numel() == 1):
                continue
            if pname != "weight" and dim != 0:
                continue  # a layer's inputs: its bias is not coupled to them
            d = dim if pname == "weight" else 0
            part = p.detach().double().index_select(d, idxs).movedim(d, 0).reshape(len(idxs), -1)
            squares.scatter_add_(0, roots, part.pow(2).sum(1))
            if criterion == "bn-scale" and pname == "weight" and isinstance(module, nn.modules.batchnorm._BatchNorm):
                magnitude.scatter_add_(0, roots, part.abs().sum(1))
                scales += 1
    alive = squares.ne(0)
    score = magnitude / scales if scales else squares.sqrt()
    return score.where(alive, torch.zeros((), dtype=torch.float64)), alive


def _lowest(score: torch.Tensor, candidates: torch.Tensor, n: int) -> list[int]:
    """The ``n`` candidate indices with the lowest score, ties to the lower index."""
    idx = candidates.nonzero().flatten()
    order = torch.sort(score[idx], stable=True).indices
    return sorted(idx[order[:n]].tolist())


def count_to_prune(amount: float, alive: int) -> int:
    """Units one step removes from a group of ``alive`` units: ``round(amount × alive)``, keeping one."""
    check_fraction("amount", amount)
    return max(0, min(round(float(amount) * alive), alive - 1))


@_autograd
def choose_units(
    model: nn.Module, structure: Structure, amount: float, rule: UnitRule = DEFAULT_RULE
) -> dict[str, list[int]]:
    """Which alive units of each group one step of ``amount`` removes, by root name (sorted indices)."""
    check_fraction("amount", amount)
    return _choose(_graph(model, structure), amount, rule)


def rounded_keep(keep: int, alive: int, round_to: int) -> int:
    """``keep`` of ``alive`` units rounded to the nearest multiple of ``round_to`` (half up), in [round_to, alive].

    Unchanged when ``round_to`` is 1 or fewer than ``round_to`` units are alive.
    """
    if round_to <= 1 or alive < round_to:
        return keep
    nearest = round_to * ((2 * keep + round_to) // (2 * round_to))
    return min(max(nearest, round_to), round_to * (alive // round_to))


@_autograd
def unit_scores(
    model: nn.Module, structure: Structure, criterion: str = "l2"
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``(score, alive)`` per unit of every group, by root name: what a step ranks (float64 and bool vectors).

    For a family whose own units are blocks of the engine's (attention heads: ``head_dim`` rows
    each), to score the blocks and pass them to :func:`choose_scored`.
    """
    if criterion not in UNIT_CRITERIA:
        raise ValueError(f"unknown unit criterion {criterion!r}; choose one of {list(UNIT_CRITERIA)}")
    g = _graph(model, structure)
    return {name: _scores(g, name, criterion) for name in g.roots}


def _choose(g: _Graph, amount: float, rule: UnitRule) -> dict[str, list[int]]:
    return choose_scored({name: _scores(g, name, rule.criterion) for name in g.roots}, amount, rule)


def choose_scored(
    scored: Mapping[str, tuple[torch.Tensor, torch.Tensor]], amount: float, rule: UnitRule = DEFAULT_RULE
) -> dict[str, list[int]]:
    """Which alive units of each group one step removes, given every group's ``(score, alive)``.

    The step's rule: ``rule.scope`` counts, ``rule.round_to`` rounds, the lowest scores go (ties to the
    lower index); ``rule.criterion`` is the caller's, who scored the units.
    """
    check_fraction("amount", amount)
    alive = {name: int(a.sum()) for name, (_, a) in scored.items()}
    if rule.scope == "layer":
        counts = {name: count_to_prune(amount, n) for name, n in alive.items()}
    else:
        counts = _global_counts(scored, amount)
    chosen = {}
    for name, (s, a) in scored.items():
        n = alive[name] - rounded_keep(alive[name] - counts[name], alive[name], rule.round_to)
        if n > 0:
            chosen[name] = _lowest(s, a, n)
    return chosen


def _global_counts(scored: Mapping[str, tuple[torch.Tensor, torch.Tensor]], amount: float) -> dict[str, int]:
    """Units each group gives up when all alive units are ranked together by score over their group's mean.

    A group's chosen units are always its lowest-scored ones, so a count says which they are.
    """
    pool: list[tuple[float, int, int]] = []
    names = list(scored)
    for g_idx, (s, a) in enumerate(scored.values()):
        mean = float(s[a].mean()) if a.any() else 0.0
        pool += [(float(s[i]) / mean if mean > 0 else 0.0, g_idx, i) for i in a.nonzero().flatten().tolist()]
    pool.sort()
    left = [int(a.sum()) for _, a in scored.values()]
    counts = [0] * len(names)
    budget = round(float(amount) * sum(left))
    for _, g_idx, _ in pool:
        if budget == 0:
            break
        if left[g_idx] > 1:
            counts[g_idx] += 1
            left[g_idx] -= 1
            budget -= 1
    return dict(zip(names, counts, strict=True))


@_autograd
def group_masks(model: nn.Module, structure: Structure, units: Mapping[str, list[int]]) -> dict[str, torch.Tensor]:
    """Masks (1 keep, 0 cut) by parameter name for every slice Torch-Pruning cuts to remove ``units``.

    Read from Torch-Pruning itself: on a private copy each parameter holds its positions, the
    groups are pruned there, and the positions that are gone are the zeros.
    """
    return _masks(_graph(model, structure), units)


def _masks(g: _Graph, units: Mapping[str, list[int]]) -> dict[str, torch.Tensor]:
    """:func:`group_masks` on a graph already built (its plain copy is pruned: use the graph once).

    Only the parameters of layers in the chosen groups are tagged: Torch-Pruning touches no other.
    """
    touched: set[int] = set()
    for name in units:
        if name not in g.roots:
            raise ValueError(f"no unit group rooted at {name!r}; groups: {sorted(g.roots)}")
        for item in _full_group(g, name):
            if isinstance(module := item.dep.target.module, nn.Module):
                touched |= {id(p) for p in module.parameters(recurse=False)}
    shapes = {}
    with torch.no_grad():
        for name, p in g.plain.named_parameters():
            if id(p) not in touched:
                continue
            if p.numel() >= 2**24:
                raise ValueError(f"parameter {name!r} has {p.numel()} elements, too many to tag exactly in float32")
            shapes[name] = (p.shape, p.dtype)
            p.data = torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, idx in units.items():
                module, handler = g.roots[name]
                g.graph.get_pruning_group(module, handler, list(idx)).prune()
    masks = {}
    for name, p in g.plain.named_parameters():
        if name not in shapes:
            continue
        shape, dtype = shapes[name]
        kept = torch.zeros(shape.numel(), dtype=dtype)
        kept[p.detach().reshape(-1).long()] = 1
        if not bool(kept.all()):
            masks[name] = kept.reshape(shape)
    return masks


@_autograd
def prune_units(model: nn.Module, structure: Structure, amount: float, rule: UnitRule = DEFAULT_RULE) -> None:
    """One structured step in place: mask ``amount`` of the alive units (per ``rule``) and all coupled slices."""
    check_fraction("amount", amount)
    g = _graph(model, structure)  # traced once: choosing reads it, masking then prunes its copy
    masks = _masks(g, _choose(g, amount, rule))
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        owner, _, param = name.rpartition(".")
        prune.custom_from_mask(modules[owner], param, mask)


@_autograd
def unit_counts(model: nn.Module, structure: Structure) -> dict[str, tuple[int, int]]:
    """``(alive, total)`` units per group, by root name."""
    g = _graph(model, structure)
    return {name: (int(a.sum()), len(a)) for name in g.roots for _, a in [_scores(g, name, "l2")]}


def remaining(counts: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """Alive units per group, from :func:`unit_counts`-shaped ``(alive, total)`` counts."""
    return {name: alive for name, (alive, _) in counts.items()}


def removed_fraction(counts: Mapping[str, tuple[int, int]]) -> float:
    """Fraction of all units (every group's, each counted once) that are dead; NaN when there are none."""
    total = sum(t for _, t in counts.values())
    return 1.0 - sum(a for a, _ in counts.values()) / total if total else math.nan


@_autograd
def shrink(model: nn.Module, structure: Structure) -> nn.Module:
    """A physically smaller copy of ``model`` without its dead units (pruning made permanent); same outputs.

    ``model`` is not changed. A group whose units are all dead keeps one (zero) unit, so shapes
    stay valid.
    """
    g = _graph(model, structure)
    dead = {}
    for name in g.roots:
        _, alive = _scores(g, name, "l2")
        idx = (~alive).nonzero().flatten().tolist()
        dead[name] = idx[1:] if len(idx) == len(alive) else idx
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, idx in dead.items():
            if idx:
                module, handler = g.roots[name]
                g.graph.get_pruning_group(module, handler, idx).prune()
    return g.plain.train(model.training)
