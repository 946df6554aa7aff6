"""What every stage's configuration shares: checked values (fractions, significance levels, and the
command-line types that parse them) and a stable hash of frozen dataclasses (the cache key).

Each stage's own configuration is a frozen dataclass beside it (:class:`~prunelib.sweep.spec.SweepSpec`,
:class:`~prunelib.sweep.runner.Timing`, a family's hyper-parameters).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from dataclasses import asdict
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def check_fraction(name: str, value: float) -> float:
    """Return ``value`` if it lies strictly between 0 and 1, else raise ``ValueError`` naming ``name``."""
    if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {value!r}")
    return float(value)


def check_level(name: str, value: float) -> float:
    """``value`` when it is a significance level in (0, 1), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a significance level in (0, 1), got {value!r}")
    return float(value)


def non_negative(text: str) -> float:
    """argparse type: a finite number >= 0 (a threshold in percent or points)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def level(text: str) -> float:
    """argparse type: a significance level in (0, 1)."""
    try:
        return check_level("alpha", float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a significance level in (0, 1), got {text!r}") from None


def config_key(*parts: object, versions: dict[str, str] | None = None) -> str:
    """A short stable hash of dataclasses/values (and library versions): the on-disk cache key."""
    payload = [asdict(cast("DataclassInstance", p)) if hasattr(p, "__dataclass_fields__") else p for p in parts]
    blob = json.dumps({"parts": payload, "versions": versions or {}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
