"""Speed-up targets judged on one run's timings: measured ratio against a fixed or a FLOP-relative target.

A target is met only when the lower bound of the speed-up's 95 % bootstrap interval
(:func:`prunelib.measure.stats.speedup_interval`, ratio of medians, both sets of rounds
resampled, fixed seed) reaches it: noise can fail a target, never pass one. Pure, so the bench
suite's MLP and speech speed-up tests share one judgement and it is tested without timing anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from prunelib.measure.stats import speedup_cell, speedup_interval

#: Where a target holds: everywhere, or where the dense weights stream from DRAM (:class:`Target`).
REGIMES = ("any", "memory-bound")


@dataclass(frozen=True)
class Timing:
    """One timed case: fastest and median round (s), multiply-adds of one call, every round (s), weight bytes."""

    fastest_s: float
    median_s: float
    flops: int
    rounds: tuple[float, ...] = ()
    weight_bytes: int | None = None  # the model's weights stored dense (``disk_dense_bytes``; None: not known)

    @classmethod
    def of(cls, rounds: Sequence[float], flops: int, weight_bytes: int | None = None) -> Timing:
        """The timing of ``rounds`` (seconds each): fastest and median from them."""
        x = tuple(float(r) for r in rounds)
        if not x:
            raise ValueError("a timing needs at least one round")
        return cls(min(x), float(np.median(x)), int(flops), x, weight_bytes)


@dataclass(frozen=True)
class Target:
    """``runtime``/``variant`` must beat ``baseline`` ``variant="dense"`` on ``baseline`` runtime.

    ``kind``: ``"speedup"`` (ratio >= ``value``), ``"flop-fraction"`` (ratio >= ``value`` x the
    ideal ratio of FLOPs, dense over pruned), or ``"report"`` (shown beside the others, never failed).

    ``regime``: ``"any"`` (gated on every machine) or ``"memory-bound"``: a promise about a device
    where the dense model's weights do not fit in the CPU's last-level cache, so every call streams
    them from DRAM and a pruned model gains by reading fewer bytes (dense ``mlp1m``'s 5.7 MB on
    the Pi 4's 1 MiB L2). On a host whose last-level cache holds them (a 32 MiB L3) dense runs at
    cache bandwidth and call overhead bounds the ratio instead, so such a target is judged and
    shown there but not gated. It is gated when either size is unknown.
    """

    runtime: str
    variant: str
    baseline: str
    kind: str
    value: float
    regime: str = "any"

    def __post_init__(self) -> None:
        if self.kind not in ("speedup", "flop-fraction", "report") or not self.value > 0:
            raise ValueError(f"invalid speed-up target {self}")
        if self.regime not in REGIMES:
            raise ValueError(f"invalid speed-up target {self}: regime must be one of {', '.join(REGIMES)}")


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


def not_gated_because(target: Target, dense: Timing, cache_bytes: int | None) -> str:
    """Why ``target`` is not gated on this machine, or ``""`` when it is."""
    if target.kind == "report":
        return "reported only"
    if target.regime == "memory-bound" and dense.weight_bytes and cache_bytes and dense.weight_bytes <= cache_bytes:
        return (
            f"memory-bound target; dense weights ({_mib(dense.weight_bytes)}) fit in this CPU's "
            f"last-level cache ({_mib(cache_bytes)})"
        )
    return ""


def judge(
    model: str,
    timings: Mapping[tuple[str, str], Timing],
    targets: Sequence[Target],
    cache_bytes: int | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """One row per target whose cases were timed, and a message per gated target missed.

    The speed-up is the ratio of medians (baseline over case); ``speedup_low``/``speedup_high``
    are its 95 % bootstrap interval over both cases' rounds, and ``speedup_shown`` the table cell
    (:func:`prunelib.measure.stats.speedup_cell`: "no measurable change" when the interval holds
    1.0). A target is ``met`` only when ``speedup_low`` reaches ``required``: a case without
    rounds (at least two on each side) has no interval and misses its target. The ratio of
    fastest rounds (noise from other processes only ever adds time) is reported beside it.
    Targets whose timings are missing are left out. ``gated`` says whether a miss fails the run:
    not for ``"report"`` targets, nor for ``"memory-bound"`` ones when the baseline's
    ``weight_bytes`` fit in ``cache_bytes`` (the last-level cache,
    :func:`prunelib.measure.machine.last_level_cache_bytes`); ``not_gated_because`` says why.
    """
    rows, failures = [], []
    for t in targets:
        case, base = timings.get((t.runtime, t.variant)), timings.get((t.baseline, "dense"))
        if case is None or base is None:
            continue
        speedup, ideal = base.median_s / case.median_s, base.flops / case.flops
        interval = speedup_interval(base.rounds, case.rounds)
        need = {"flop-fraction": t.value * ideal, "speedup": t.value}.get(t.kind, float("nan"))
        met = bool(interval.low >= need) if interval.known else False
        rows.append(
            {
                "model": model,
                "variant": t.variant,
                "runtime": t.runtime,
                "baseline": f"dense/{t.baseline}",
                "median_s": case.median_s,
                "baseline_median_s": base.median_s,
                "speedup": round(speedup, 2),
                "speedup_low": round(interval.low, 2),
                "speedup_high": round(interval.high, 2),
                "speedup_shown": speedup_cell(interval),
                "speedup_of_minima": round(base.fastest_s / case.fastest_s, 2),
                "ideal_flop_ratio": round(ideal, 2),
                "required": round(need, 2),
                "met": met if t.kind != "report" else None,
                "gated": not (why_not := not_gated_because(t, base, cache_bytes)),
                "not_gated_because": why_not,
            }
        )
        if not why_not and not met:
            why = (
                f"95 % CI {interval.low:.2f}-{interval.high:.2f}x (median ratio {speedup:.2f}x), "
                f"lower bound < required {need:.2f}x"
                if interval.known
                else f"{speedup:.2f}x with no interval (fewer than 2 rounds on a side), required {need:.2f}x"
            )
            failures.append(f"{model} {t.variant}/{t.runtime}: {why}")
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
