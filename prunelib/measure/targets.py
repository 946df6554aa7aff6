"""Speed-up targets judged on one run's timings: measured ratio against a fixed or a FLOP-relative target.

Pure, so the bench suite's MLP and speech speed-up tests share one judgement and it is tested
without timing anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Timing:
    """One timed case: fastest and median round (s) and multiply-adds of one call."""

    fastest_s: float
    median_s: float
    flops: int


@dataclass(frozen=True)
class Target:
    """``runtime``/``variant`` must beat ``baseline`` ``variant="dense"`` on ``baseline`` runtime.

    ``kind``: ``"speedup"`` (ratio >= ``value``), ``"flop-fraction"`` (ratio >= ``value`` x the
    ideal ratio of FLOPs, dense over pruned), or ``"report"`` (shown beside the others, never failed).
    """

    runtime: str
    variant: str
    baseline: str
    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in ("speedup", "flop-fraction", "report") or not self.value > 0:
            raise ValueError(f"invalid speed-up target {self}")


def judge(
    model: str, timings: Mapping[tuple[str, str], Timing], targets: Sequence[Target]
) -> tuple[pd.DataFrame, list[str]]:
    """One row per target whose cases were timed, and a message per target missed.

    Judged on the ratio of medians; the ratio of fastest rounds (noise from other processes only
    ever adds time) is reported beside it. Targets whose timings are missing are left out.
    """
    rows, failures = [], []
    for t in targets:
        case, base = timings.get((t.runtime, t.variant)), timings.get((t.baseline, "dense"))
        if case is None or base is None:
            continue
        speedup, ideal = base.median_s / case.median_s, base.flops / case.flops
        need = {"flop-fraction": t.value * ideal, "speedup": t.value}.get(t.kind, float("nan"))
        rows.append(
            {
                "model": model,
                "variant": t.variant,
                "runtime": t.runtime,
                "baseline": f"dense/{t.baseline}",
                "median_s": case.median_s,
                "baseline_median_s": base.median_s,
                "speedup": round(speedup, 2),
                "speedup_of_minima": round(base.fastest_s / case.fastest_s, 2),
                "ideal_flop_ratio": round(ideal, 2),
                "required": round(need, 2),
                "met": speedup >= need if t.kind != "report" else None,
            }
        )
        if t.kind != "report" and speedup < need:
            failures.append(f"{model} {t.variant}/{t.runtime}: {speedup:.2f}x < required {need:.2f}x")
    return pd.DataFrame(rows), failures


@dataclass(frozen=True)
class Hold:
    """A claim on the metric: ``method`` stays within ``within`` of dense up to ``up_to`` pruned.

    ``up_to`` is a fraction of the weights (unstructured methods) or of the units (structured);
    the bench gate checks every iteration up to the first that reaches it.
    """

    method: str
    up_to: float
    within: float

    def __post_init__(self) -> None:
        if not (0 < self.up_to < 1 and self.within >= 0):
            raise ValueError(f"invalid hold {self}")
