"""What every stage's configuration shares: checked fractions and a stable hash of frozen dataclasses (the cache key).

Each stage's own configuration is a frozen dataclass beside it (:class:`~prunelib.sweep.spec.SweepSpec`,
:class:`~prunelib.sweep.runner.Timing`, a family's hyper-parameters).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def check_fraction(name: str, value: float) -> float:
    """Return ``value`` if it lies strictly between 0 and 1, else raise ``ValueError`` naming ``name``."""
    if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {value!r}")
    return float(value)


def config_key(*parts: object, versions: dict[str, str] | None = None) -> str:
    """A short stable hash of dataclasses/values (and library versions): the on-disk cache key."""
    payload = [asdict(cast("DataclassInstance", p)) if hasattr(p, "__dataclass_fields__") else p for p in parts]
    blob = json.dumps({"parts": payload, "versions": versions or {}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
