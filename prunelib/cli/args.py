"""Arguments every ``python -m prunelib`` command shares, and their checks: the family, data set, model, seed."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from prunelib.config import check_fraction
from prunelib.families.contract import Family
from prunelib.families.registry import family_for, get_family


class CliError(ValueError):
    """A user error the CLI reports in one line."""


class Parser(argparse.ArgumentParser):
    """argparse that raises :class:`CliError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(message)


def fraction(text: str) -> float:
    try:
        return check_fraction("--amount", float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if "fraction" in str(exc) else f"not a number: {text!r}") from None


def count(text: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive(text: str) -> int:
    return count(text, 1)


def at_least_two(text: str) -> int:
    """A count of at least 2 (a latency figure needs two timed calls for its spread)."""
    return count(text, 2)


def add_family_args(p: argparse.ArgumentParser) -> None:
    """``--family``, ``--dataset``, ``--model``, ``--data-dir``, ``--seed``, subsets and hyper-parameters."""
    p.add_argument(
        "--family",
        default=None,
        help="model family: a registered name (see `python -m prunelib families`) or MODULE:CALLABLE from your "
        "repository (default: the family that reads --dataset, else mlp)",
    )
    p.add_argument("--dataset", default=None, help="data set of the family (default: the family's first)")
    p.add_argument(
        "--model", default=None, help="model of the family: a preset, or what the family accepts (default: its first)"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="data root holding one folder per data set, e.g. ../shared/data (default: $PRUNELIB_DATA_DIR); "
        "a named folder that does not exist is an error",
    )
    p.add_argument(
        "--seed",
        type=count,
        default=0,
        help="fixes the data split, initial weights, batch order and random masks (default: 0)",
    )
    p.add_argument(
        "--max-tokens",
        type=positive,
        default=None,
        metavar="N",
        help="token data sets (sst2) cut every sentence to at most N tokens, so one long row cannot set the "
        "padded width and memory of all (default: the family's, 64 for sst2; its longest row has 52)",
    )
    p.add_argument("--train-subset", type=positive, default=None, help="train on at most this many examples (seeded)")
    p.add_argument(
        "--eval-count", type=positive, default=None, help="evaluate on at most this many examples (speech: utterances)"
    )
    p.add_argument(
        "--hparam",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the family's training hyper-parameters, e.g. --hparam lr=1e-3 (repeatable)",
    )
    p.add_argument(
        "--epochs",
        type=positive,
        default=None,
        help="training epochs, also per IMP retraining (same as --hparam epochs=N)",
    )


def resolve_family(args: argparse.Namespace) -> Family:
    """Fill ``args.family``/``dataset``/``model`` defaults and reject unknown names before any work starts.

    Without ``--family`` the family is the one that reads ``--dataset`` (and builds ``--model``),
    or ``mlp`` when no data set is named.
    """
    if args.family is None:
        args.family = family_for(args.dataset, args.model) if args.dataset else "mlp"
    family = get_family(args.family)
    args.dataset = args.dataset or family.datasets[0]
    family.check_dataset(args.dataset)
    args.model = args.model or family.default_model(args.dataset)
    family.check_model(args.model)
    return family


def hparams_of(family: Family, args: argparse.Namespace, quick: bool = False) -> Any:
    """The family's hyper-parameters for ``args.dataset`` with ``--epochs`` and ``--hparam`` applied."""
    hp = family.hparams(args.dataset, quick)
    items = [f"epochs={args.epochs}"] if args.epochs is not None else []
    if not items and not args.hparam:
        return hp
    if not dataclasses.is_dataclass(hp) or isinstance(hp, type):
        raise CliError(f"family {family.name!r} has no dataclass of hyper-parameters to override")
    changes: dict[str, Any] = {}
    for item in [*items, *args.hparam]:
        key, sep, text = item.partition("=")
        if not sep:
            raise CliError(f"--hparam needs KEY=VALUE, got {item!r}")
        fields = {f.name: f for f in dataclasses.fields(hp)}
        if key not in fields:
            raise CliError(f"family {family.name!r} has no hyper-parameter {key!r}; it has {sorted(fields)}")
        current = getattr(hp, key)
        try:
            changes[key] = type(current)(text) if current is not None and not isinstance(current, bool) else text
        except ValueError:
            raise CliError(f"--hparam {key}: {text!r} is not a {type(current).__name__}") from None
        if key == "epochs" and isinstance(changes[key], int) and changes[key] < 1:
            flag = "--epochs" if item in items else "--hparam epochs"
            raise CliError(f"{flag} must be >= 1, got {changes[key]} (no training gives meaningless rows)")
    try:
        return dataclasses.replace(hp, **changes)
    except (TypeError, ValueError) as exc:
        raise CliError(f"--hparam: {exc}") from None
