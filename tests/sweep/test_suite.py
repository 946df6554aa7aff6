"""The bench suite's options → sweeps mapping and its accuracy floors."""

from __future__ import annotations

import pytest

from prunelib.sweep.suite import (
    LAB_METHODS,
    QUICK_AMOUNT,
    QUICK_ITERATIONS,
    OptionError,
    accuracy_floor,
    parse_options,
    parse_pairs,
    speech_specs,
    sweep_specs,
    train_config,
)


def test_defaults_are_the_lab_sweep() -> None:
    opts = parse_options({})
    assert opts.pairs == (("mnist5k", "lenet300"),) and opts.methods == LAB_METHODS
    assert (opts.iterations, opts.amount, opts.threads, opts.quick) == (10, 0.33, 1, False)
    specs = sweep_specs(opts)
    assert [s.label for s in specs] == [f"mnist5k-lenet300-{m}" for m in LAB_METHODS]
    assert all(s.prune.iterations == 10 and s.prune.amount == 0.33 for s in specs)


def test_quick_mode_uses_bigger_steps_and_shorter_training() -> None:
    opts = parse_options({"quick": True})
    assert (opts.iterations, opts.amount) == (QUICK_ITERATIONS, QUICK_AMOUNT)
    assert train_config("mnist5k", True).epochs < train_config("mnist5k", False).epochs
    assert parse_options({"quick": True, "iterations": "3"}).iterations == 3  # explicit values still win


def test_every_spec_of_one_pair_shares_data_model_and_training() -> None:
    specs = sweep_specs(
        parse_options({"datasets": "mnist5k:lenet300,sst2:sst2-mlp", "methods": "no-retrain,imp-rewind"})
    )
    assert len(specs) == 4
    assert specs[0].data == specs[1].data and specs[0].train == specs[1].train
    assert specs[2].data.name == "sst2" and specs[2].train != specs[0].train


def test_speech_pairs_parse_but_make_no_mlp_sweeps() -> None:
    assert parse_pairs("fsdd:sew-fsdd, librispeech:/models/sew") == (
        ("fsdd", "sew-fsdd"),
        ("librispeech", "/models/sew"),
    )
    assert sweep_specs(parse_options({"datasets": "fsdd:sew-fsdd"})) == []


def test_each_speech_pair_runs_the_magnitude_and_the_structured_sweep() -> None:
    specs = speech_specs(parse_options({"datasets": "mnist5k:lenet300,fsdd:sew-fsdd,librispeech:/m/sew", "seed": "3"}))
    assert [s.label for s in specs] == [
        "fsdd-sew-fsdd-no-retrain",
        "fsdd-sew-fsdd-structured-no-retrain",
        "librispeech-sew-no-retrain",
        "librispeech-sew-structured-no-retrain",
    ]
    assert all((s.amount, s.iterations, s.seed, s.eval_count) == (0.1, 10, 3, None) for s in specs)
    quick = speech_specs(parse_options({"datasets": "fsdd:sew-fsdd", "quick": True}))
    assert {(s.amount, s.iterations, s.eval_count) for s in quick} == {(0.3, 3, 40)}


@pytest.mark.parametrize(
    "raw,named",
    [
        ({"datasets": "mnist5k"}, "--prune-datasets"),
        ({"datasets": "imagenet:lenet300"}, "imagenet"),
        ({"datasets": "mnist5k:resnet"}, "resnet"),
        ({"methods": "no-retrain,prune-harder"}, "prune-harder"),
        ({"methods": " , "}, "--prune-methods"),
        ({"iterations": "0"}, "--prune-iterations"),
        ({"iterations": "ten"}, "ten"),
        ({"amount": "1.5"}, "--prune-amount"),
        ({"amount": "a third"}, "a third"),
        ({"runtimes": "tensorrt"}, "tensorrt"),
        ({"batches": "0"}, "--prune-batches"),
        ({"threads": "-1"}, "--prune-threads"),
        ({"precisions": "fp8"}, "fp8"),
    ],
)
def test_bad_options_name_the_option_and_value(raw: dict, named: str) -> None:
    with pytest.raises(OptionError, match=named):
        parse_options(raw)


def test_floors_depend_on_mode_and_pair() -> None:
    assert accuracy_floor("mnist5k", "lenet300", quick=False) == 0.94
    assert accuracy_floor("mnist5k", "lenet300", quick=True) < 0.94
    assert accuracy_floor("sst2", "sst2-mlp", quick=False) == 0.80
    assert accuracy_floor("mnist5k", "sst2-mlp", quick=False) is None
