"""Pruning schedules: when to prune, rewind and retrain. Reads like the algorithm, for any family.

Train dense; then N times prune → (rewind) → (retrain). Unstructured schedules prune single
weights of the family's prunable tensors by a criterion (:mod:`prunelib.pruning.criteria`);
structured ones ask the family to mask whole units (:meth:`Family.structured_step`), which are
physically removed at deploy time (:meth:`Family.shrink`).

Rewinding a structured-pruned model resets the surviving units to their initial values: masks
stay on during the schedule (``weight_orig`` × ``weight_mask``), so rewinding copies the initial
``*_orig`` and keeps every mask; the shrink happens only at deploy time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from prunelib.pruning.criteria import get_criterion, refresh_masked, rewind
from prunelib.pruning.structured import DEFAULT_RULE, UnitRule

if TYPE_CHECKING:
    from prunelib.families.contract import Family


@dataclass(frozen=True)
class Schedule:
    """Which criterion prunes, and whether survivors are rewound to init and retrained after each step.

    ``structured``: the family removes whole units (:meth:`Family.structured_step`) and
    deployment shrinks the model physically.
    """

    name: str
    criterion: str
    rewind: bool
    retrain: bool
    structured: bool = False
    #: ``"init"``: rewinding goes to the weights as built; ``"epoch"``: to the weights after the first
    #: ``rewind_epoch`` epochs of dense training (late rewinding, Frankle et al. 2020), which the family
    #: gives through :meth:`Family.train_epochs`.
    rewind_to: str = "init"
    #: The :data:`Phase` each retraining runs: ``"retrain"`` (the family's retraining recipe) or ``"dense"``
    #: (learning-rate rewinding, Renda et al. 2020: the trained weights are kept and the dense run's whole
    #: recipe, its epochs and learning-rate schedule from the start, is replayed).
    retrain_phase: Literal["dense", "retrain"] = "retrain"

    @property
    def late(self) -> bool:
        """Whether survivors rewind to a snapshot of dense training (not to the initial weights)."""
        return self.rewind and self.rewind_to == "epoch"


SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in (
        Schedule("no-retrain", "magnitude", rewind=False, retrain=False),
        Schedule("imp-rewind", "magnitude", rewind=True, retrain=True),
        Schedule("imp-finetune", "magnitude", rewind=False, retrain=True),
        Schedule("imp-late-rewind", "magnitude", rewind=True, retrain=True, rewind_to="epoch"),
        Schedule("imp-lr-rewind", "magnitude", rewind=False, retrain=True, retrain_phase="dense"),
        Schedule("random", "random", rewind=False, retrain=False),
        Schedule("layerwise", "layerwise", rewind=False, retrain=False),
        Schedule("structured-no-retrain", "l2-units", rewind=False, retrain=False, structured=True),
        Schedule("structured-imp-rewind", "l2-units", rewind=True, retrain=True, structured=True),
        Schedule("structured-imp-finetune", "l2-units", rewind=False, retrain=True, structured=True),
    )
}
#: The lab's four methods, the default of the bench suite.
LAB_METHODS = ("no-retrain", "imp-rewind", "imp-finetune", "random")


def get_schedule(name: str) -> Schedule:
    """The schedule called ``name``; ``ValueError`` lists the known ones."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown method {name!r}; choose one of {list(SCHEDULES)}")
    return SCHEDULES[name]


def prune_step(
    family: Family,
    model: nn.Module,
    schedule: Schedule,
    amount: float,
    seed: int,
    embeddings: bool = False,
    rule: UnitRule = DEFAULT_RULE,
) -> None:
    """One pruning step of ``schedule``: ``amount`` of what remains, in place.

    Unstructured: ``schedule.criterion`` over ``family.prunable(model, embeddings)``;
    structured: ``family.structured_step`` (the remaining units, ranked and counted by ``rule``).
    """
    if schedule.structured:
        family.structured_step(model, amount, seed, rule)
    else:
        get_criterion(schedule.criterion)(family.prunable(model, embeddings), amount, seed)


def iterate_schedule(
    family: Family,
    model: nn.Module,
    initial: Mapping[str, torch.Tensor],
    data: Any,
    hparams: Any,
    schedule: Schedule,
    amount: float,
    iterations: int,
    seed: int,
    embeddings: bool = False,
    rule: UnitRule = DEFAULT_RULE,
    start: int = 0,
) -> Iterator[tuple[int, nn.Module]]:
    """Yield ``(0, model)`` then, after each of ``iterations`` steps, ``(k, model)``.

    Each step is prune → (rewind to ``initial``: the weights as built, or for late rewinding the
    dense run's epoch-k snapshot) → (retrain with ``family.train``, seeded ``seed + k``, in the
    schedule's ``retrain_phase``). Mutates ``model`` in place (one model walks the whole schedule); copy what
    you keep. Masks only ever lose entries. ``start > 0`` resumes a walk: ``model`` is then
    iteration ``start - 1`` and the first step yielded is ``start`` (each step depends only on
    the model before it and ``seed + k``, so the rest equals an uninterrupted walk).
    """
    if not 0 <= start <= iterations + 1:
        raise ValueError(f"start {start} outside 0..{iterations + 1}")
    if start == 0:
        yield 0, model
    for k in range(max(start, 1), iterations + 1):
        prune_step(family, model, schedule, amount, seed + k, embeddings, rule)
        if schedule.rewind:
            rewind(model, initial)
        if schedule.retrain:
            family.train(model, data, hparams, seed + k, schedule.retrain_phase)
            refresh_masked(model)  # drop autograd history of the cached masked weights (deepcopy-safe)
        model.eval()
        yield k, model
