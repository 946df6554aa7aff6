"""Content fingerprints: of prunelib's own source code (a cache key part), of single files, and of data.

Shared by every cache (the sweep cache and a family's own model cache), so it sits below the
stages and imports none of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: Bytes read at a time when hashing a file.
CHUNK = 1 << 20


def file_sha256(path: Path | str) -> str:
    """The sha256 (hex) of the bytes of ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def source_files(root: Path) -> list[Path]:
    """Every ``.py`` file under ``root`` (a package folder), or ``[root]`` for a single module, sorted."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"cannot fingerprint {root}: no such file or folder")
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def code_fingerprint(*extra: Path) -> str:
    """A hash of the *content* of every source file of prunelib plus ``extra`` files or packages.

    Every ``.py`` under the installed ``prunelib/`` counts, by its path relative to the package
    and its bytes, so an edited, added, moved or renamed module changes the key; ``extra`` names
    a family's own modules (:func:`prunelib.families.registry.family_sources`). A missing path is
    an error, never a silent constant.
    """
    digest = hashlib.sha256()
    roots = [Path(__file__).resolve().parent, *(Path(e).resolve() for e in extra)]
    for root in roots:
        for path in source_files(root):
            rel = path.relative_to(root.parent if root.is_dir() else path.parent)
            digest.update(rel.as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def fingerprint(obj: Any) -> str:
    """A content hash of data: tensors, arrays, strings, numbers, and dataclasses/lists/dicts of them.

    The default :meth:`Family.data_fingerprint`: the same bytes give the same key, wherever they
    were read from. Raises ``TypeError`` naming a value it cannot hash.
    """
    digest = hashlib.sha256()

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().contiguous().cpu()
            digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too
        elif isinstance(value, np.ndarray):
            a = np.ascontiguousarray(value)
            digest.update(f"A{a.dtype}{a.shape}".encode())
            digest.update(a.tobytes())
        elif isinstance(value, (str, int, float, bool, type(None))):
            digest.update(f"{type(value).__name__}:{value!r};".encode())
        elif is_dataclass(value) and not isinstance(value, type):
            digest.update(type(value).__name__.encode())
            for f in fields(value):
                digest.update(f.name.encode())
                walk(getattr(value, f.name))
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                digest.update(str(k).encode())
                walk(value[k])
        elif isinstance(value, (list, tuple)):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                walk(item)
        else:
            raise TypeError(f"cannot fingerprint a {type(value).__name__}; override Family.data_fingerprint")

    walk(obj)
    return digest.hexdigest()[:16]
