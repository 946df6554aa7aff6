"""Atomic file writes: a reader never sees a half-written report, and nothing is overwritten by accident.

Also the checks that run before any work: :func:`check_output_dir` and :func:`check_output_file`
really create and remove a probe file (permission bits lie under root), and
:func:`rescue_folder` names where results go when their own folder fails at the end.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path


def write_atomic(path: Path | str, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX, so ``path`` holds either the old or the whole new content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would set it process-wide for a moment)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def dir_mode() -> int:
    """``0o777`` less the umask: the mode ``mkdir`` would give a folder."""
    return 0o777 & ~_umask()


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return write_atomic(path, lambda p: p.write_bytes(data))


class OutputPathError(OSError):
    """An output path that cannot be written; the message names the option and the path."""


def _probe(folder: Path) -> None:
    """Create and remove a probe file in the existing folder ``folder``; raises OSError when that fails."""
    probe = folder / f".prunelib-probe-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"probe")
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_output_dir(path: Path | str, option: str) -> Path:
    """Fail now, not after the run, when ``path`` (a folder that may not exist yet) cannot receive files.

    An existing folder gets a probe file; a missing one is not created (nothing appears unasked):
    its nearest existing ancestor must be a folder that takes a probe file. Returns ``path``.

    Raises:
        OutputPathError: ``option: cannot write to PATH: reason``.
    """
    path = Path(path).expanduser()
    target = path
    while not os.path.lexists(target) and target.parent != target:
        target = target.parent
    try:
        if not target.is_dir():
            what = "is not a folder" if target == path else f"cannot be created: {target} is not a folder"
            raise OutputPathError(f"{option}: cannot write to {path}: it {what}")
        _probe(target)
    except OutputPathError:
        raise
    except OSError as exc:
        where = "" if target == path else f" (its nearest existing folder {target})"
        raise OutputPathError(f"{option}: cannot write to {path}{where}: {_reason(exc)}") from None
    return path


def check_output_file(path: Path | str, option: str) -> Path:
    """Fail now when the file ``path`` cannot be written later: its folder must exist and take a probe file.

    Raises:
        OutputPathError: ``option: cannot write PATH: reason``.
    """
    path = Path(path).expanduser()
    folder = path.parent
    if path.is_dir():
        raise OutputPathError(f"{option}: cannot write {path}: it is a folder")
    if not folder.is_dir():
        what = "is not a folder" if os.path.lexists(folder) else "does not exist"
        raise OutputPathError(f"{option}: cannot write {path}: its folder {folder} {what}")
    try:
        _probe(folder)
    except OSError as exc:
        raise OutputPathError(f"{option}: cannot write {path}: {_reason(exc)}") from None
    return path


def rescue_folder(base: Path | str | None = None) -> Path:
    """A new folder ``<base or $TMPDIR>/prunelib-rescue-<UTC time>-<random>`` for results whose own path failed."""
    root = Path(base) if base is not None else Path(tempfile.gettempdir())
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = root / f"prunelib-rescue-{stamp}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True, mode=0o777)
    return folder
