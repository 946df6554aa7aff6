"""Cases timed in turn, so that whatever the machine does meanwhile hits every case alike.

A speed-up compares two cases. Timed one after the other (pytest-benchmark's order), a shared VM
that slows down between them moves the ratio: Whisper's ``ffn-30`` read 1.15x dense timed in
blocks and 1.08x timed alternating, and the MLP's dense median moved from 154 to 273 us between
runs. Here each round visits every case once, in an order that rotates, and a visit is a short
block of calls: the first warms the caches and is not kept, the median of the rest is the round.
The rounds are then independent samples of each case under the same conditions, which is what the
bootstrap interval of :func:`prunelib.measure.stats.speedup_interval` assumes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def visit(call: Callable[[], object], block: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """One untimed call, then the median of ``block`` timed calls (seconds)."""
    call()
    times = []
    for _ in range(block):
        start = clock()
        call()
        times.append(clock() - start)
    return statistics.median(times)


def alternating_rounds(
    calls: Mapping[K, Callable[[], object]],
    budget_s: float,
    *,
    min_rounds: int = 20,
    max_rounds: int = 1000,
    block: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[K, tuple[float, ...]]:
    """Per case, one round (seconds) per visit: every case visited once a round, the order rotating.

    The number of rounds fills ``budget_s`` after a pilot round, within ``[min_rounds, max_rounds]``.

    Raises:
        ValueError: no calls, a block under 1, or min_rounds < 2 or above max_rounds.
    """
    if not calls:
        raise ValueError("alternating_rounds needs at least one call")
    if block < 1 or not 2 <= min_rounds <= max_rounds:
        raise ValueError(f"need block >= 1 and 2 <= min_rounds <= max_rounds, got {block}, {min_rounds}, {max_rounds}")
    keys = list(calls)
    start = clock()
    for key in keys:  # pilot: warm every case and size the run
        visit(calls[key], block, clock)
    per_round = max(clock() - start, 1e-9)
    rounds = int(min(max(budget_s / per_round, min_rounds), max_rounds))
    out: dict[K, list[float]] = {key: [] for key in keys}
    for r in range(rounds):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            out[key].append(visit(calls[key], block, clock))
    return {key: tuple(v) for key, v in out.items()}
