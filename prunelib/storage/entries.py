"""Cache entries that verify themselves: hashed manifests, corrupt entries set aside, resumable staging.

An entry is a flat folder whose ``manifest.json`` lists the sha256 of every other file in it.
An entry is valid only if its manifest parses, lists every file its reader needs, and every
listed file is present with that hash; anything else (a truncated or altered file, a missing
file, an unreadable or malformed manifest) makes it *corrupt*. A corrupt entry is renamed to a
``.corrupt-*`` folder beside it with a :class:`CacheWarning` naming both, never deleted.

A build runs in a staging folder ``.building-<key>`` that records each finished file as it is
written (``<name>.done.json``: its sha256 and what was measured on it) and who builds it
(``owner.json``: pid, host, start time). A staging folder whose builder died is *orphaned*: the
next build of the same key resumes it; ``python -m prunelib cache clean`` removes the others.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from prunelib.fileio import write_text_atomic
from prunelib.fingerprint import file_sha256

MANIFEST = "manifest.json"
OWNER = "owner.json"
DONE = ".done.json"
STAGING = ".building-"
CORRUPT = ".corrupt-"
#: A staging folder whose owner cannot be asked (another host) counts as orphaned after this long.
ORPHAN_AGE_S = 24 * 3600.0


class CacheWarning(UserWarning):
    """A cache entry was found corrupt and set aside (the warning names both folders)."""


def listed_files(folder: Path) -> dict[str, str]:
    """``{name: sha256}`` of every regular file in ``folder`` except the manifest, records and hidden temporaries."""
    return {
        p.name: file_sha256(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name not in (MANIFEST, OWNER) and not p.name.endswith(DONE) and not p.name.startswith(".")
    }


def manifest_text(body: dict[str, Any], folder: Path) -> str:
    """``body`` plus ``files`` (the sha256 of every file now in ``folder``), as the manifest's JSON text."""
    return json.dumps({**body, "files": listed_files(folder)}, indent=1, sort_keys=True, default=str) + "\n"


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder`` as a dict with a ``files`` table.

    Raises:
        ValueError: the manifest is missing, unreadable, not JSON, or has no ``{name: sha256}`` table.
    """
    path = folder / MANIFEST
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path} is unreadable: {type(exc).__name__}") from None
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, dict) or not all(isinstance(h, str) for h in files.values()):
        raise ValueError(f"{path} is malformed: no table of file hashes")
    unsafe = [n for n in files if Path(n).name != n or n in ("", ".", "..", MANIFEST)]
    if unsafe:
        raise ValueError(f"{path} is malformed: it lists {unsafe[0]!r}, not a file of the entry")
    return body


def problem(folder: Path, required: Iterable[str] = ()) -> str | None:
    """Why ``folder`` is not a valid entry (one line naming the file), or None if every hash matches."""
    try:
        files = read_manifest(folder)["files"]
    except ValueError as exc:
        return str(exc)
    for name in required:
        if name not in files:
            return f"{folder / MANIFEST} does not list {name}"
    for name, want in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if file_sha256(path) != want:
            return f"{path} does not match its sha256 in the manifest (truncated or altered)"
    return None


def move_aside(folder: Path, reason: str) -> Path:
    """Rename ``folder`` to ``.corrupt-<name>-<utc time>-<pid>`` beside it and warn; nothing is deleted."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = folder.parent / f"{CORRUPT}{folder.name}-{stamp}-{os.getpid()}"
    folder.rename(target)
    warnings.warn(f"corrupt cache entry {folder}: {reason}; moved aside to {target}, rebuilding", CacheWarning, 3)
    return target


def valid_or_aside(folder: Path, required: Iterable[str] = ()) -> bool:
    """True if ``folder`` is a valid entry; a corrupt one is moved aside (False); an absent one is False."""
    if not folder.exists():
        return False
    reason = problem(folder, required)
    if reason is None:
        return True
    move_aside(folder, reason)
    return False


# ---------------------------------------------------------------- staging
def record_done(staging: Path, name: str, extra: dict[str, Any] | None = None) -> None:
    """Record ``staging/name`` as complete: its sha256 and ``extra`` (e.g. its metrics), written atomically."""
    body = {"sha256": file_sha256(staging / name), **(extra or {})}
    write_text_atomic(staging / f"{name}{DONE}", json.dumps(body) + "\n")  # key order kept: the CSV columns


def done_record(staging: Path, name: str) -> dict[str, Any] | None:
    """The record of ``staging/name`` if it exists, parses, and the file still has the recorded sha256."""
    try:
        body = json.loads((staging / f"{name}{DONE}").read_text(encoding="utf-8"))
        if isinstance(body, dict) and body.get("sha256") == file_sha256(staging / name):
            return body
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    return None


def write_owner(staging: Path) -> None:
    """Record who builds in ``staging``: pid, host and start time."""
    body = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    write_text_atomic(staging / OWNER, json.dumps(body) + "\n")


def finish(staging: Path, body: dict[str, Any]) -> None:
    """Drop the staging records and write the manifest (with every file's sha256) last."""
    for path in staging.iterdir():
        if path.name == OWNER or path.name.endswith(DONE):
            path.unlink()
    write_text_atomic(staging / MANIFEST, manifest_text(body, staging))


def staging_key(folder: Path) -> str:
    """The cache key of a staging folder: ``.building-<key>`` or an older ``.building-<key>-<random>``."""
    return folder.name[len(STAGING) :].split("-")[0]


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_gone(staging: Path, max_age: float) -> bool:
    try:
        owner = json.loads((staging / OWNER).read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return True
    if host == socket.gethostname():
        return not pid_alive(pid) or pid == os.getpid()
    return time.time() - staging.stat().st_mtime > max_age


def orphaned(staging: Path, max_age: float = ORPHAN_AGE_S, remove: bool = False) -> bool:
    """Whether no live builder owns ``staging``; with ``remove``, also delete it if so.

    Its key's lock must be free (a builder holds it for the whole build), and then its owner is
    a dead process on this host, unknown (no ``owner.json``), or the folder is older than
    ``max_age`` seconds (an owner on another host, which this host cannot ask). The lock is held
    while deciding and removing, so a build cannot start on the folder in between.
    """
    lock = FileLock(str(staging.parent / f".{staging_key(staging)}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return False
    try:
        gone = _owner_gone(staging, max_age)
        if gone and remove:
            shutil.rmtree(staging)
        return gone
    finally:
        lock.release()
