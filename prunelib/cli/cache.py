"""``python -m prunelib cache list|verify|clean``: what the checkpoint cache holds, whether it is intact, tidying it.

The cache base is ``--cache-dir``, else ``$PRUNELIB_CACHE_DIR``, else ``~/.cache/prunelib``; its
``bench/`` (sweeps and dense models) and ``speech/`` (the trained speech model) folders are read,
and the base itself (so ``--cache-dir`` may also name a bench suite's ``--prune-cache-dir``).
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from prunelib.cli.args import CliError, Parser
from prunelib.pruning.schedules import SCHEDULES
from prunelib.storage import entries
from prunelib.sweep.cache import DENSE_FILES, sweep_files

#: Folder names of cache entries, by kind.
ENTRY_KINDS = {"dense-": "dense", "sweep-": "sweep", "sew-fsdd-": "speech"}
#: Folders a build set aside: corrupt entries, and leftovers found where an entry belonged.
SET_ASIDE = (entries.CORRUPT, ".stale-")
#: What a speech entry must hold (``prunelib.families.sew.train.SPEECH_FILES``, kept light to import).
SPEECH_FILES = ("config.json", "model.safetensors")


@dataclass(frozen=True)
class Item:
    """One folder of the cache and what state it is in: ok, corrupt, building, orphaned or set aside."""

    path: Path
    kind: str
    label: str
    size: int
    state: str
    reason: str = ""


def add_cache_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="list, verify or clean the checkpoint cache (see 'cache --help')",
        description="The checkpoint cache: every entry's manifest holds the sha256 of each of its files. "
        "'list' shows entries with kind, label, size and state; 'verify' checks every hash and exits 1 if an "
        "entry is corrupt (naming it, leaving it in place); 'clean' removes corrupt entries, folders set aside "
        "as corrupt, and staging folders of builds that died (with --all, every entry).",
    )
    actions = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    for name, text in (
        ("list", "show every entry: kind, label, size, state"),
        ("verify", "check every entry's hashes; exit 1 if any is corrupt"),
        ("clean", "remove corrupt entries, set-aside folders and orphaned staging folders"),
    ):
        q = actions.add_parser(name, help=text, description=text)
        q.add_argument("--cache-dir", type=Path, default=None, help="cache base (default $PRUNELIB_CACHE_DIR)")
        q.add_argument(
            "--orphan-hours",
            type=float,
            default=entries.ORPHAN_AGE_S / 3600,
            help="a staging folder of another host counts as orphaned after this many hours (default 24)",
        )
        if name == "clean":
            q.add_argument("--all", action="store_true", help="also remove every valid entry")
    p.set_defaults(handler=run_cache_command)


def cache_base(given: Path | None) -> Path:
    """``given``, else ``$PRUNELIB_CACHE_DIR``, else ``~/.cache/prunelib``; it must be a folder if given."""
    if given is not None:
        if not given.is_dir():
            raise CliError(f"--cache-dir {given}: no such folder")
        return given
    env = os.environ.get("PRUNELIB_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prunelib"


def cache_folders(base: Path) -> list[Path]:
    """Every entry, staging and set-aside folder in ``base``, ``base/bench`` and ``base/speech``."""
    prefixes = (*ENTRY_KINDS, entries.STAGING, *SET_ASIDE)
    found = []
    for parent in (base, base / "bench", base / "speech"):
        if parent.is_dir():
            found += sorted(p for p in parent.iterdir() if p.is_dir() and p.name.startswith(prefixes))
    return found


def kind_of(name: str) -> str:
    for prefix, kind in ENTRY_KINDS.items():
        if name.startswith(prefix):
            return kind
    return "?"


def required_files(kind: str, folder: Path) -> tuple[str, ...]:
    """The files an entry of ``kind`` must list; a sweep's follow its manifest's iteration count."""
    if kind == "dense":
        return DENSE_FILES
    if kind == "speech":
        return SPEECH_FILES
    try:
        spec = entries.read_manifest(folder)["spec"]
        iterations, method = spec["iterations"], spec.get("method")
    except (ValueError, KeyError, TypeError, AttributeError):
        return ()  # problem() names what is wrong with the manifest
    late = method in SCHEDULES and SCHEDULES[method].late
    return sweep_files(iterations, late) if isinstance(iterations, int) else ("iterations?",)


def inspect(folder: Path, orphan_age_s: float) -> Item:
    """The state of one cache folder (hashing every file of an entry)."""
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    name = folder.name
    if name.startswith(entries.STAGING):
        state = "orphaned" if entries.orphaned(folder, orphan_age_s) else "building"
        return Item(folder, "staging", "-", size, state)
    if name.startswith(SET_ASIDE):
        return Item(folder, kind_of(name.split("-", 1)[1] if "-" in name else name), "-", size, "set aside")
    kind = kind_of(name)
    reason = entries.problem(folder, required_files(kind, folder))
    try:
        manifest = entries.read_manifest(folder)
    except ValueError:
        manifest = {}
    return Item(folder, kind, _label(manifest), size, "corrupt" if reason else "ok", reason or "")


def _label(manifest: dict) -> str:
    """The entry's label, with a sweep's schedule and seed (two sweeps may share a label at other amounts)."""
    label = str(manifest.get("label", "-"))
    spec = manifest.get("spec")
    if manifest.get("kind") == "sweep" and isinstance(spec, dict):
        label += f" ({spec.get('iterations')} x {spec.get('amount')}, seed {spec.get('seed')})"
    return label


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def run_cache_command(args: argparse.Namespace) -> int:
    base = cache_base(args.cache_dir)
    items = [inspect(f, args.orphan_hours * 3600) for f in cache_folders(base)]
    if args.action == "list":
        if not items:
            print(f"no cache entries under {base}")
        for it in items:
            print(f"{it.state:<9}  {it.kind:<7}  {megabytes(it.size):>10}  {it.label}  {it.path}")
        return 0
    if args.action == "verify":
        corrupt = [it for it in items if it.state == "corrupt"]
        checked = [it for it in items if it.state in ("ok", "corrupt")]
        for it in corrupt:
            print(f"corrupt: {it.path}: {it.reason}")
        print(f"{len(checked)} entries checked under {base}: {len(corrupt)} corrupt (left in place)")
        return 1 if corrupt else 0
    removable = {"corrupt", "set aside", "orphaned"} | ({"ok"} if args.all else set())
    removed = []
    for it in (it for it in items if it.state in removable):
        if it.state == "orphaned":
            if not entries.orphaned(it.path, args.orphan_hours * 3600, remove=True):
                continue  # a build took it over since it was listed
        else:
            shutil.rmtree(it.path)
        removed.append(it)
        print(f"removed {it.state} {it.kind} {it.path} ({megabytes(it.size)})")
    total = sum(it.size for it in removed)
    print(f"removed {len(removed)} folders ({megabytes(total)}) under {base}" if removed else "nothing to remove")
    return 0
