"""Progress bars for long loops, quiet when stderr is not a terminal (CI logs, pipes)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None, leave: bool = False) -> Iterable[T]:
    """Wrap ``items`` in a tqdm bar on an interactive stderr; a plain iterator otherwise."""
    return tqdm(items, desc=desc, total=total, leave=leave, disable=not sys.stderr.isatty())
