"""One sweep, described as data: which family, data set, model, method and schedule, and its seed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prunelib.config import check_fraction
from prunelib.families.contract import Family
from prunelib.families.registry import get_family
from prunelib.pruning.schedules import Schedule, get_schedule
from prunelib.pruning.structured import UnitRule


@dataclass(frozen=True)
class SweepSpec:
    """A pruning sweep: ``family`` builds ``model`` for ``dataset`` and ``method`` prunes it ``iterations`` times.

    ``family`` is a registered name or ``module:callable``. ``amount`` is the fraction of the
    *remaining* weights (or of each group's remaining units, structured) removed per step.
    ``precision`` is what the cached metrics are measured at. ``embeddings`` lets unstructured
    pruning touch embedding tables too. ``unit_criterion``, ``unit_scope`` and ``unit_round`` rank,
    count and round the units of a structured method (:class:`~prunelib.pruning.structured.UnitRule`). ``data_dir`` says where the data lives and is not part
    of any cache key (the data's content is). ``max_tokens`` caps the sequence length of a token
    data set (``None``: the family's default); like ``data_dir`` it reaches keys through the data.
    """

    family: str
    dataset: str
    model: str
    method: str
    amount: float
    iterations: int
    seed: int = 0
    quick: bool = False
    embeddings: bool = False
    precision: str = "fp32"
    data_dir: str | None = None
    unit_criterion: str = "l2"
    unit_scope: str = "layer"
    unit_round: int = 1
    max_tokens: int | None = None
    #: Late rewinding (``imp-late-rewind``) rewinds survivors to the weights after this many epochs of dense training.
    rewind_epoch: int = 1

    def __post_init__(self) -> None:
        check_fraction("amount", self.amount)
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        schedule = get_schedule(self.method)  # an unknown method is an error here
        if self.rewind_epoch < 0:
            raise ValueError(f"rewind_epoch must be >= 0, got {self.rewind_epoch}")
        if self.rewind_epoch != 1 and not schedule.late:
            raise ValueError(f"a rewind epoch applies to late rewinding (imp-late-rewind), not {self.method!r}")
        if not self.unit_rule.default and not schedule.structured:
            raise ValueError(f"unit criterion, scope and rounding apply to structured methods, not {self.method!r}")

    @property
    def unit_rule(self) -> UnitRule:
        """How a structured method ranks, counts and rounds units."""
        return UnitRule(self.unit_criterion, self.unit_scope, self.unit_round)

    @property
    def label(self) -> str:
        """``dataset-model-method`` (the model's last path part), then the unit rule where not the default.

        ``-CRITERION-SCOPE`` when either differs from L2 per layer, ``-roundN`` when rounding, ``-eK`` when
        late rewinding goes to another epoch than the first.
        """
        label = f"{self.dataset}-{Path(self.model).name}-{self.method}"
        if (self.unit_criterion, self.unit_scope) != ("l2", "layer"):
            label += f"-{self.unit_criterion}-{self.unit_scope}"
        label += f"-round{self.unit_round}" if self.unit_round != 1 else ""
        return label + (f"-e{self.rewind_epoch}" if self.rewind_epoch != 1 else "")

    @property
    def schedule(self) -> Schedule:
        return get_schedule(self.method)

    def resolve(self) -> Family:
        """The family object (loaded once per process)."""
        return get_family(self.family)
