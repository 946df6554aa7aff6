"""Progress bars: every item passes through, in order; a bar only on an interactive stderr."""

from __future__ import annotations

import io
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunelib.progress import progress


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal and keeps what was written to it."""

    def isatty(self) -> bool:
        return True


class FakePipe(io.StringIO):
    def isatty(self) -> bool:
        return False


@settings(max_examples=50, deadline=None)
@given(items=st.lists(st.integers() | st.text(max_size=3) | st.none(), max_size=30), leave=st.booleans())
def test_yields_every_item_in_order_off_a_terminal(items: list, leave: bool) -> None:
    assert list(progress(items, desc="x", leave=leave)) == items


@settings(max_examples=25, deadline=None)
@given(items=st.lists(st.integers(), max_size=30))
def test_yields_every_item_in_order_on_a_terminal(items: list) -> None:
    saved = sys.stderr
    sys.stderr = FakeTerminal()
    try:
        assert list(progress(items, desc="x")) == items
    finally:
        sys.stderr = saved


def test_consumes_a_generator_once_and_lazily() -> None:
    pulled: list[int] = []

    def gen():
        for i in range(5):
            pulled.append(i)
            yield i

    it = iter(progress(gen(), desc="lazy"))
    assert next(it) == 0
    assert pulled == [0]  # one item pulled, not the whole generator
    assert list(it) == [1, 2, 3, 4]
    assert pulled == [0, 1, 2, 3, 4]


def test_total_does_not_truncate_or_pad() -> None:
    assert list(progress(range(7), desc="t", total=3)) == list(range(7))
    assert list(progress(range(2), desc="t", total=10)) == [0, 1]


def test_silent_off_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pipe = FakePipe()
    monkeypatch.setattr(sys, "stderr", pipe)
    assert list(progress(range(50), desc="quiet-loop", total=50, leave=True)) == list(range(50))
    monkeypatch.undo()
    assert pipe.getvalue() == ""
    out, err = capsys.readouterr()
    assert "quiet-loop" not in out + err


def test_draws_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert list(progress(range(4), desc="loud-loop", total=4, leave=True)) == [0, 1, 2, 3]
    monkeypatch.undo()
    text = term.getvalue()
    assert "loud-loop" in text
    assert "4/4" in text  # the bar counted every item against the total


def test_leave_false_clears_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    list(progress(range(3), desc="gone", total=3, leave=False))
    monkeypatch.undo()
    text = term.getvalue()
    assert "gone" in text
    assert not text.endswith("\n")
    assert text.split("\r")[-2].strip() == ""  # the last write blanks the line
