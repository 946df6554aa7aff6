"""The arguments every command shares: numbers, the family and its data set and model, hyper-parameters."""

from __future__ import annotations

import argparse

import pytest

from prunelib.cli.args import CliError, Parser, count, fraction, hparams_of, positive, resolve_family
from prunelib.families.mlp.family import MlpFamily
from prunelib.families.sew.family import SewFamily, SewHparams


def ns(**kwargs) -> argparse.Namespace:
    base = {"family": None, "dataset": None, "model": None, "epochs": None, "hparam": []}
    return argparse.Namespace(**{**base, **kwargs})


@pytest.mark.parametrize("text, value", [("0.5", 0.5), ("0.001", 0.001), ("0.999", 0.999)])
def test_fraction_accepts_0_to_1_exclusive(text: str, value: float) -> None:
    assert fraction(text) == value


@pytest.mark.parametrize("text, message", [("0", "amount"), ("1", "amount"), ("-0.5", "amount"), ("abc", "'abc'")])
def test_fraction_rejects_the_rest(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        fraction(text)


def test_counts() -> None:
    assert count("0") == 0 and count("7") == 7 and positive("1") == 1
    with pytest.raises(argparse.ArgumentTypeError, match=">= 0, got -1"):
        count("-1")
    with pytest.raises(argparse.ArgumentTypeError, match=">= 1, got 0"):
        positive("0")
    with pytest.raises(argparse.ArgumentTypeError, match="not an integer: '1.5'"):
        count("1.5")


def test_parser_errors_raise_instead_of_exiting() -> None:
    parser = Parser(prog="x")
    parser.add_argument("--n", type=count)
    with pytest.raises(CliError, match="--n"):
        parser.parse_args(["--n", "x"])


@pytest.mark.parametrize(
    "given, family, dataset, model",
    [
        ({}, "mlp", "mnist5k", "lenet300"),
        ({"dataset": "sst2"}, "mlp", "sst2", "sst2-bow"),
        ({"dataset": "fsdd"}, "sew", "fsdd", "sew-fsdd"),
        ({"dataset": "fsdd", "model": "sew-mini"}, "sew", "fsdd", "sew-mini"),
        ({"family": "sew"}, "sew", "fsdd", "sew-fsdd"),
        ({"family": "mlp", "dataset": "mnist", "model": "mlp1m"}, "mlp", "mnist", "mlp1m"),
    ],
)
def test_resolve_family_fills_defaults_from_what_is_named(given: dict, family: str, dataset: str, model: str) -> None:
    args = ns(**given)
    resolved = resolve_family(args)
    assert (args.family, args.dataset, args.model) == (family, dataset, model)
    assert isinstance(resolved, SewFamily if family == "sew" else MlpFamily)


@pytest.mark.parametrize(
    "given, fragments",
    [
        ({"family": "vision"}, ["'vision'", "mlp", "sew"]),
        ({"family": "no_such_module:Family"}, ["no_such_module"]),
        ({"dataset": "cifar10"}, ["'cifar10'", "mnist5k", "fsdd"]),
        ({"family": "sew", "dataset": "mnist5k"}, ["'mnist5k'", "fsdd", "librispeech"]),
        ({"model": "resnet18"}, ["'resnet18'", "lenet300"]),
        ({"dataset": "fsdd", "model": "lenet300"}, ["'fsdd'", "'lenet300'"]),
    ],
)
def test_unknown_names_are_rejected_naming_the_choices(given: dict, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        resolve_family(ns(**given))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_hparams_take_epochs_and_key_value_overrides() -> None:
    family = MlpFamily()
    base = family.hparams("mnist5k", False)
    assert hparams_of(family, ns(dataset="mnist5k")) == base
    changed = hparams_of(family, ns(dataset="mnist5k", epochs=3, hparam=["lr=0.01", "batch_size=32"]))
    assert (changed.epochs, changed.lr, changed.batch_size) == (3, 0.01, 32)
    assert hparams_of(family, ns(dataset="mnist5k", epochs=3, hparam=["epochs=5"])).epochs == 5  # --hparam last
    sew = hparams_of(SewFamily(), ns(dataset="fsdd", hparam=["retrain_steps=7", "retrain_lr=1e-4"]))
    assert sew == SewHparams(retrain_steps=7, retrain_lr=1e-4)


@pytest.mark.parametrize(
    "item, fragments",
    [
        ("lr", ["KEY=VALUE", "'lr'"]),
        ("momentum=0.9", ["no hyper-parameter 'momentum'", "lr"]),
        ("epochs=two", ["--hparam epochs", "'two'", "int"]),
    ],
)
def test_bad_hparams_name_the_problem(item: str, fragments: list[str]) -> None:
    with pytest.raises(CliError) as info:
        hparams_of(MlpFamily(), ns(dataset="mnist5k", hparam=[item]))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_epochs_on_a_family_without_epochs_is_named() -> None:
    with pytest.raises(CliError, match="no hyper-parameter 'epochs'"):
        hparams_of(SewFamily(), ns(dataset="fsdd", epochs=2))
