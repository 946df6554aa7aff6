"""``python -m prunelib families``: every registered family, where it came from, and what it supports."""

from __future__ import annotations

import argparse

from prunelib.families.registry import get_family, origin, registered


def add_families_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "families",
        help="list the model families: built-in, installed plugins, and --family MODULE:CALLABLE",
        description="Lists every family prunelib can run: the built-ins, families installed by packages under the "
        "'prunelib.families' entry point group, and any --family MODULE:CALLABLE given here; with where each came "
        "from and which data sets, models, methods, runtimes and precisions it supports.",
    )
    p.add_argument("--family", action="append", default=[], help="also load and describe this MODULE:CALLABLE")
    p.set_defaults(handler=run_families_command)


def describe(name: str) -> str:
    """A block of text describing family ``name``; a family that fails to load says why."""
    try:
        family = get_family(name)
    except Exception as exc:  # a broken plugin must not hide the others
        return f"{name}\n  error: {exc}\n"
    lines = [f"{name}", f"  from: {origin(name)}"]
    lines += [f"  {key}: {value}" for key, value in family.describe().items()]
    return "\n".join(lines) + "\n"


def run_families_command(args: argparse.Namespace) -> int:
    names = [*registered(), *args.family]
    print("\n".join(describe(n) for n in names), end="")
    return 0
