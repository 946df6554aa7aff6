"""Where a command's files go: its ``--out``, or a printed rescue folder once writing there fails.

``--out`` is probed before any work (:func:`prunelib.fileio.check_output_dir`), so only a folder
removed mid-run or a full disk reaches this: the run's remaining files then go to
``$TMPDIR/prunelib-rescue-*`` and the command exits 3, never losing what it computed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prunelib.fileio import rescue_folder

#: Exit status of a command whose files had to be rescued (the bench's status for the same case).
RESCUED = 3


@dataclass
class Outputs:
    """A command's output folder; after the first failed write, the rescue folder that replaced it."""

    out: Path
    rescue: Path | None = None
    written: list[Path] = field(default_factory=list)

    def save(self, relative: str | Path, save: Callable[[Path], object]) -> Path:
        """``save(path)`` at ``out/relative``; on ``OSError`` at the same place under a rescue folder.

        ``save`` writes atomically (``write_text_atomic``, ``save_png``), so a failed write leaves
        nothing half-written at ``out``. Once a write has failed, every later file goes to the
        rescue folder too, so the rescued files are whole and together.
        """
        if self.rescue is None:
            target = self.out / relative
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                save(target)
            except OSError as exc:
                self.rescue = rescue_folder()
                print(
                    f"prunelib: error: could not write {target}: {exc.strerror or exc}; "
                    f"saving the rest of this run in {self.rescue}",
                    file=sys.stderr,
                )
            else:
                self.written.append(target)
                return target
        target = self.rescue / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        save(target)
        self.written.append(target)
        return target

    def status(self) -> int:
        """0, or :data:`RESCUED` after printing where the rescued files are."""
        if self.rescue is None:
            return 0
        print(
            f"prunelib: error: --out {self.out} could not be written; this run's files are in {self.rescue} "
            f"(copy them where you wanted them)",
            file=sys.stderr,
        )
        return RESCUED


__all__ = ["RESCUED", "Outputs"]
