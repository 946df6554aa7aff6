"""A sweep's in-memory inputs: the family, its data and hyper-parameters, loaded once."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from prunelib.families.contract import Family
from prunelib.families.datadir import DataError, data_root
from prunelib.pruning.criteria import initial_state
from prunelib.storage.checkpoint import load_checkpoint
from prunelib.sweep.spec import SweepSpec


@dataclass
class Loaded:
    """What every stage of one (family, data set, model, seed) needs in memory.

    Treat as read-only: derive another with :func:`dataclasses.replace` (the data's fingerprint is
    computed once per instance).
    """

    family: Family
    data: Any
    hparams: Any
    _skeletons: dict[tuple[str, int], nn.Module] = field(default_factory=dict)

    @cached_property
    def data_fingerprint(self) -> str:
        """``family.data_fingerprint(data)``, hashed once (the cache keys and manifests all use it)."""
        return self.family.data_fingerprint(self.data)

    def fresh(self, spec: SweepSpec) -> nn.Module:
        """``spec.model`` as the family builds it from ``spec.seed``, prepared for pruning (a new copy)."""
        key = (spec.model, spec.seed)
        if key not in self._skeletons:
            self._skeletons[key] = self.family.prepare(self.family.build(spec.model, self.data, spec.seed))
        return copy.deepcopy(self._skeletons[key])

    def rewind_point(self, spec: SweepSpec, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """The weights after ``spec.rewind_epoch`` epochs of dense training (late rewinding's target).

        Trains a copy of ``model`` (default: the seeded build) with :meth:`Family.train_epochs`.
        Raises ``Unsupported`` (from the family) when it cannot stop at an epoch, ``ValueError`` when
        the epoch lies past the dense run's ``epochs``.
        """
        epochs = getattr(self.hparams, "epochs", None)
        if isinstance(epochs, int) and spec.rewind_epoch > epochs:
            raise ValueError(f"rewind epoch {spec.rewind_epoch} is past the dense training's {epochs} epochs")
        copy_ = self.fresh(spec) if model is None else copy.deepcopy(model)
        self.family.train_epochs(copy_, self.data, self.hparams, spec.seed, spec.rewind_epoch)
        return initial_state(copy_)

    def checkpoint(self, spec: SweepSpec, path: Any) -> nn.Module:
        """The checkpoint at ``path`` (masks re-applied) loaded into a fresh model, in eval mode."""
        return load_checkpoint(self.fresh(spec), path).eval()


def load(spec: SweepSpec) -> Loaded:
    """Resolve ``spec``'s family, check its data set and model, and load the data.

    Raises:
        ValueError: unknown family, data set or model (named), or ``max_tokens`` on data that has no tokens.
        DataError: the data dir or a data file is missing or malformed (named). A family's reader
            may raise ``OSError`` or ``ValueError`` for that; both become a :class:`DataError`
            (message kept), so a caller can tell "this data cannot be read" from other errors.
    """
    family = spec.resolve()
    family.check_dataset(spec.dataset)
    family.check_model(spec.model)
    reason = family.supports(method=spec.method, dataset=spec.dataset)
    if reason:
        raise ValueError(reason)
    root = data_root(spec.data_dir)
    options: dict[str, int] = {}
    if spec.max_tokens is not None:
        if spec.dataset not in family.token_datasets:
            raise ValueError(
                f"max_tokens (--max-tokens) caps token data sets ({', '.join(family.token_datasets) or 'none'} in family "
                f"{family.name}); {spec.dataset!r} is not one"
            )
        options["max_tokens"] = spec.max_tokens
    try:
        data = family.load_data(spec.dataset, spec.model, root, spec.seed, spec.quick, **options)
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(str(exc)) from exc
    return Loaded(family, data, family.hparams(spec.dataset, spec.quick))
