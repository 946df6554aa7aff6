"""Atomic writes: whole old or whole new content, no temporary left behind, permissions from the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from prunelib.fileio import write_atomic, write_bytes_atomic, write_text_atomic


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for one test; the previous one is restored after it."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_text_and_bytes_creating_parent_folders(tmp_path: Path) -> None:
    text = write_text_atomic(tmp_path / "a" / "b" / "r.md", "ünïcode ✓\n")
    assert text == tmp_path / "a" / "b" / "r.md" and text.read_text(encoding="utf-8") == "ünïcode ✓\n"
    data = write_bytes_atomic(str(tmp_path / "x.bin"), b"\x00\xff")
    assert data.read_bytes() == b"\x00\xff"


def test_replaces_existing_content_whole(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "r.csv", "old\n")
    write_text_atomic(path, "new\n" * 1000)
    assert path.read_text() == "new\n" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_a_failing_writer_leaves_no_partial_file(tmp_path: Path, error: BaseException) -> None:
    def half_then_fail(p: Path) -> None:
        p.write_text("half a repo")
        raise error

    with pytest.raises(type(error)):
        write_atomic(tmp_path / "new.csv", half_then_fail)
    assert list(tmp_path.iterdir()) == []

    old = write_text_atomic(tmp_path / "old.csv", "complete\n")
    with pytest.raises(type(error)):
        write_atomic(old, half_then_fail)
    assert old.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["old.csv"]


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o000, 0o666)])
def test_permissions_follow_the_umask(tmp_path: Path, umask, mask: int, expected: int) -> None:
    umask(mask)
    assert mode(write_text_atomic(tmp_path / "r.md", "x")) == expected
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what an ordinary open() would give
    assert mode(plain) == expected
