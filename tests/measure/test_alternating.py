"""Cases timed in turn: rounds, order and drift, on a simulated clock (nothing is really timed)."""

from __future__ import annotations

import statistics

import pytest

from prunelib.measure.alternating import alternating_rounds, visit


class Machine:
    """A clock and calls whose cost is ``cost[name]`` times a slowdown that doubles after ``drift_at`` calls."""

    def __init__(self, cost: dict[str, float], drift_at: int | None = None) -> None:
        self.now, self.calls, self.cost, self.drift_at, self.log = 0.0, 0, cost, drift_at, []

    def clock(self) -> float:
        return self.now

    def call(self, name: str):
        def run() -> None:
            slow = 2.0 if self.drift_at is not None and self.calls >= self.drift_at else 1.0
            self.now += self.cost[name] * slow
            self.calls += 1
            self.log.append(name)

        return run


def test_a_visit_warms_once_then_keeps_the_median_of_the_block() -> None:
    m = Machine({"a": 1.0})
    assert visit(m.call("a"), 5, m.clock) == 1.0 and m.calls == 6


def test_every_case_gets_the_same_rounds_and_the_order_rotates() -> None:
    m = Machine({"a": 1.0, "b": 2.0, "c": 3.0})
    rounds = alternating_rounds({k: m.call(k) for k in "abc"}, budget_s=0, min_rounds=4, block=1, clock=m.clock)
    assert {k: len(v) for k, v in rounds.items()} == {"a": 4, "b": 4, "c": 4}
    assert rounds["b"] == (2.0,) * 4
    visits = m.log[::2][3:]  # each visit is a warm-up call then one timed call; after the pilot's three
    assert visits == list("abcbcacababc")


def test_the_budget_sets_the_rounds_within_bounds() -> None:
    m = Machine({"a": 1.0, "b": 1.0})  # a pilot round costs 2 x (1 + 5) = 12 s
    calls = {k: m.call(k) for k in "ab"}
    assert len(alternating_rounds(calls, budget_s=120, clock=m.clock, min_rounds=2)["a"]) == 10
    assert len(alternating_rounds(calls, budget_s=1e6, clock=m.clock, max_rounds=50)["a"]) == 50
    assert len(alternating_rounds(calls, budget_s=0, clock=m.clock, min_rounds=7)["a"]) == 7


def test_a_slowdown_midway_leaves_the_ratio_alone() -> None:
    """The machine halves its speed halfway: timed in turn, b stays twice as fast as a (blocked, it would not)."""
    m = Machine({"a": 2.0, "b": 1.0}, drift_at=200)
    rounds = alternating_rounds({k: m.call(k) for k in "ab"}, budget_s=0, min_rounds=30, block=3, clock=m.clock)
    ratios = [a / b for a, b in zip(rounds["a"], rounds["b"])]
    assert statistics.median(ratios) == pytest.approx(2.0)
    assert statistics.median(rounds["a"]) / statistics.median(rounds["b"]) == pytest.approx(2.0, rel=0.34)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"block": 0}, "block >= 1"), ({"min_rounds": 1}, "min_rounds"), ({"min_rounds": 9, "max_rounds": 8}, "min")],
)
def test_bad_arguments_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        alternating_rounds({"a": lambda: None}, 1.0, **kwargs)
    with pytest.raises(ValueError, match="at least one call"):
        alternating_rounds({}, 1.0)
