"""Atomic writes: whole old or whole new content, no temporary left behind, permissions from the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from prunelib.fileio import (
    OutputPathError,
    check_output_dir,
    check_output_file,
    dir_mode,
    rescue_folder,
    write_atomic,
    write_bytes_atomic,
    write_text_atomic,
)


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


def test_the_umask_is_read_never_set(tmp_path: Path, umask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting the umask, even for a moment, races with every other thread creating files."""
    umask(0o027)

    def forbidden(mask: int) -> int:
        raise AssertionError(f"os.umask({mask:o}) called")

    monkeypatch.setattr(os, "umask", forbidden)
    assert mode(write_text_atomic(tmp_path / "r.md", "x")) == 0o640
    assert dir_mode() == 0o750


def test_an_output_folder_is_probed_and_nothing_is_left(tmp_path: Path) -> None:
    assert check_output_dir(tmp_path, "--out") == tmp_path
    missing = tmp_path / "not" / "yet"
    assert check_output_dir(missing, "--out") == missing
    assert not (tmp_path / "not").exists()  # checked, not created
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("below", [False, True], ids=["file-in-place", "path-below-a-file"])
def test_an_output_folder_blocked_by_a_file_names_option_and_path(tmp_path: Path, below: bool) -> None:
    (tmp_path / "reports").write_text("a file where the folder goes")
    path = tmp_path / "reports" / "run" if below else tmp_path / "reports"
    with pytest.raises(OutputPathError) as err:
        check_output_dir(path, "--prune-reports")
    assert str(err.value).startswith(f"--prune-reports: cannot write to {path}")
    assert "is not a folder" in str(err.value)
    assert (tmp_path / "reports").read_text() == "a file where the folder goes"


def test_an_unwritable_output_folder_fails_the_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission bits lie under root, so the check really creates a file; here that creation fails."""
    real_open = os.open

    def read_only(path, flags, *args):  # type: ignore[no-untyped-def]
        if ".prunelib-probe-" in str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(OutputPathError, match=r"^--out: cannot write to .*: Permission denied$"):
        check_output_dir(tmp_path, "--out")
    with pytest.raises(OutputPathError, match=r"^--benchmark-json: cannot write .*out.json: Permission denied$"):
        check_output_file(tmp_path / "out.json", "--benchmark-json")


def test_an_output_file_needs_an_existing_folder(tmp_path: Path) -> None:
    assert check_output_file(tmp_path / "out.json", "--benchmark-json") == tmp_path / "out.json"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(
        OutputPathError, match=r"^--benchmark-json: .*missing-dir/out.json: its folder .* does not exist$"
    ):
        check_output_file(tmp_path / "missing-dir" / "out.json", "--benchmark-json")
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputPathError, match="is not a folder"):
        check_output_file(tmp_path / "f" / "out.json", "--benchmark-json")
    with pytest.raises(OutputPathError, match="it is a folder"):
        check_output_file(tmp_path, "--benchmark-json")


def test_rescue_folders_are_new_each_time(tmp_path: Path) -> None:
    first, second = rescue_folder(tmp_path), rescue_folder(tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.startswith("prunelib-rescue-") and first.parent == tmp_path
