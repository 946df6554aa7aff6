"""Where data sets live: the ``--data-dir`` / ``--prune-data-dir`` option or ``$PRUNELIB_DATA_DIR``."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "PRUNELIB_DATA_DIR"


class DataError(ValueError):
    """A data set is missing or malformed; the message names the path and the expectation."""


def data_root(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The data root: ``data_dir``, else ``$PRUNELIB_DATA_DIR``, else ``None`` (embedded data only).

    Raises:
        DataError: a root is named (by the option or the variable) but is not a directory. This
            holds for embedded data sets too: a mistyped path never passes silently.
    """
    named = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    if named is None:
        return None
    root = Path(named).expanduser()
    if not root.is_dir():
        source = "the data dir" if data_dir not in (None, "") else f"${DATA_DIR_ENV}"
        raise DataError(f"{source} {root} does not exist or is not a directory")
    return root
