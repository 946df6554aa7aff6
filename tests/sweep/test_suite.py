"""The bench suite's options → sweeps mapping, for any family, and its metric floors."""

from __future__ import annotations

import re

import pytest

from prunelib.families.registry import get_family
from prunelib.pruning.schedules import LAB_METHODS
from prunelib.sweep.suite import (
    OptionError,
    SuiteOptions,
    Triple,
    methods_for,
    metric_floor,
    parse_options,
    parse_triples,
    split_list,
    sweep_specs,
)

MLP = get_family("mlp")


def test_defaults_are_the_lab_sweep() -> None:
    opts = parse_options({})
    assert opts.triples == (Triple("mlp", "mnist5k", "lenet300"),)
    assert (opts.methods, opts.iterations, opts.amount) == (None, None, None)  # each family's defaults
    assert (opts.threads, opts.quick, opts.seed, opts.embeddings) == (1, False, 0, False)
    assert (opts.runtimes, opts.batches, opts.precisions) == (("torch", "onnxruntime"), (1, 256), ("fp16", "int8"))
    assert opts.default_methods == LAB_METHODS
    specs = sweep_specs(opts)
    assert [s.label for s in specs] == [f"mnist5k-lenet300-{m}" for m in LAB_METHODS]
    assert all((s.family, s.iterations, s.amount) == ("mlp", 10, 0.33) for s in specs)
    assert (MLP.iterations, MLP.amount) == (10, 0.33)


def test_quick_mode_uses_bigger_steps_and_shorter_training() -> None:
    opts = parse_options({"quick": True})
    specs = sweep_specs(opts)
    assert {(s.amount, s.iterations, s.quick) for s in specs} == {(MLP.quick_amount, MLP.quick_iterations, True)}
    assert (MLP.quick_amount, MLP.quick_iterations) == (0.5, 5)
    assert MLP.hparams("mnist5k", True).epochs < MLP.hparams("mnist5k", False).epochs
    explicit = sweep_specs(parse_options({"quick": True, "iterations": "3", "amount": "0.2"}))
    assert {(s.amount, s.iterations) for s in explicit} == {(0.2, 3)}  # explicit values still win


def test_every_spec_of_one_triple_shares_family_data_and_model() -> None:
    specs = sweep_specs(
        parse_options({"datasets": "mnist5k:lenet300,sst2:sst2-mlp", "methods": "no-retrain,imp-rewind", "seed": "4"})
    )
    assert [(s.dataset, s.model, s.method) for s in specs] == [
        ("mnist5k", "lenet300", "no-retrain"),
        ("mnist5k", "lenet300", "imp-rewind"),
        ("sst2", "sst2-mlp", "no-retrain"),
        ("sst2", "sst2-mlp", "imp-rewind"),
    ]
    assert {s.family for s in specs} == {"mlp"} and {s.seed for s in specs} == {4}
    assert MLP.hparams("sst2", False) != MLP.hparams("mnist5k", False)


def test_max_tokens_reaches_token_data_sets_only() -> None:
    raw = {"datasets": "mnist5k:lenet300,sst2:sst2-mlp", "methods": "no-retrain"}
    assert {s.max_tokens for s in sweep_specs(parse_options(raw))} == {None}  # the family's own cap
    specs = sweep_specs(parse_options({**raw, "max_tokens": "16"}))
    assert [(s.dataset, s.max_tokens) for s in specs] == [("mnist5k", None), ("sst2", 16)]
    for bad in ("0", "many"):
        with pytest.raises(OptionError, match="--prune-max-tokens must be"):
            parse_options({"max_tokens": bad})


def test_the_unit_rule_reaches_structured_methods_only() -> None:
    raw = {"methods": "imp-rewind,structured-imp-rewind", "unit_criterion": "bn-scale", "unit_scope": "global"}
    specs = sweep_specs(parse_options({**raw, "unit_round": "8"}))
    assert [(s.method, s.unit_criterion, s.unit_scope, s.unit_round) for s in specs] == [
        ("imp-rewind", "l2", "layer", 1),
        ("structured-imp-rewind", "bn-scale", "global", 8),
    ]
    for bad in ("0", "eight"):
        with pytest.raises(OptionError, match="--prune-unit-round must be"):
            parse_options({"unit_round": bad})
    with pytest.raises(OptionError, match="--prune-unit-criterion: unknown unit criterion 'taylor'"):
        parse_options({"unit_criterion": "taylor"})
    with pytest.raises(OptionError, match="--prune-unit-scope: unknown unit scope 'net'"):
        parse_options({"unit_scope": "net"})


def test_options_flow_into_every_spec() -> None:
    specs = sweep_specs(parse_options({"embeddings": True, "data_dir": "/data", "methods": "random"}))
    assert [(s.embeddings, s.data_dir, s.method) for s in specs] == [(True, "/data", "random")]


def test_speech_pairs_go_to_the_sew_family_with_its_own_methods_and_schedule() -> None:
    opts = parse_options({"datasets": "mnist5k:lenet300,fsdd:sew-fsdd,librispeech:org/sew", "seed": "3"})
    assert opts.triples == (
        Triple("mlp", "mnist5k", "lenet300"),
        Triple("sew", "fsdd", "sew-fsdd"),
        Triple("sew", "librispeech", "org/sew"),
    )
    speech = [s for s in sweep_specs(opts) if s.family == "sew"]
    assert [s.label for s in speech] == [
        "fsdd-sew-fsdd-no-retrain",
        "fsdd-sew-fsdd-structured-no-retrain",
        "librispeech-sew-no-retrain",
        "librispeech-sew-structured-no-retrain",
    ]
    assert all((s.amount, s.iterations, s.seed) == (0.1, 10, 3) for s in speech)
    quick = sweep_specs(parse_options({"datasets": "fsdd:sew-fsdd", "quick": True}))
    assert {(s.amount, s.iterations) for s in quick} == {(0.3, 3)}
    assert parse_triples("fsdd:sew-fsdd, mnist5k:mlp1m", ()) == (
        Triple("sew", "fsdd", "sew-fsdd"),
        Triple("mlp", "mnist5k", "mlp1m"),
    )
    assert Triple("sew", "librispeech", "/models/sew").id == "librispeech-sew"


def test_family_option_runs_each_familys_default_pair() -> None:
    opts = parse_options({"family": "mlp, sew"})
    assert opts.triples == (Triple("mlp", "mnist5k", "lenet300"), Triple("sew", "fsdd", "sew-fsdd"))
    both = parse_options({"family": "sew", "datasets": "mnist5k:lenet300"})  # datasets win over defaults
    assert both.triples == (Triple("mlp", "mnist5k", "lenet300"),)


def test_methods_come_from_the_command_line_then_the_family_then_the_ini() -> None:
    mlp, sew = Triple("mlp", "mnist5k", "lenet300"), Triple("sew", "fsdd", "sew-fsdd")
    ini = parse_options({"ini_methods": "random,layerwise"})
    assert methods_for(ini, mlp) == ("random", "layerwise")
    assert methods_for(ini, sew) == ("no-retrain", "structured-no-retrain")
    cli = parse_options({"ini_methods": "random", "methods": "imp-rewind"})
    assert methods_for(cli, mlp) == methods_for(cli, sew) == ("imp-rewind",)
    assert methods_for(SuiteOptions(), mlp) == LAB_METHODS


def test_ini_datasets_are_the_fallback() -> None:
    assert parse_options({"ini_datasets": "sst2:sst2-mlp"}).triples == (Triple("mlp", "sst2", "sst2-mlp"),)
    assert parse_options({"ini_datasets": "sst2:sst2-mlp", "datasets": "mnist5k:mlp1m"}).triples == (
        Triple("mlp", "mnist5k", "mlp1m"),
    )


def test_lists_are_split_deduplicated_and_validated() -> None:
    assert split_list("--x", " a, b ,,c ") == ("a", "b", "c")
    assert parse_options({"batches": "1,8,1"}).batches == (1, 8)
    assert parse_options({"threads": "2", "runtimes": "torch-sparse"}).threads == 2


@pytest.mark.parametrize(
    "raw,named",
    [
        ({"datasets": "mnist5k"}, "--prune-datasets"),
        ({"datasets": "imagenet:lenet300"}, "imagenet"),
        ({"datasets": "mnist5k:resnet"}, "resnet"),
        ({"family": "nosuch"}, r"--prune-family: unknown family 'nosuch'"),
        ({"family": "no_module_here:Fam"}, "no_module_here"),
        ({"methods": "no-retrain,prune-harder"}, "prune-harder"),
        ({"methods": " , "}, "--prune-methods"),
        ({"ini_methods": "obd"}, r"prune_methods \(ini\).*obd"),
        ({"iterations": "0"}, "--prune-iterations"),
        ({"iterations": "ten"}, "ten"),
        ({"amount": "1.5"}, "--prune-amount"),
        ({"amount": "a third"}, "a third"),
        ({"runtimes": "tensorrt"}, "tensorrt"),
        ({"batches": "0"}, "--prune-batches"),
        ({"threads": "-1"}, "--prune-threads"),
        ({"seed": "-2"}, "--prune-seed"),
        ({"precisions": "fp8"}, "fp8"),
    ],
)
def test_bad_options_name_the_option_and_value(raw: dict, named: str) -> None:
    with pytest.raises(OptionError, match=named):
        parse_options(raw)
    assert issubclass(OptionError, ValueError)


def test_floors_depend_on_family_mode_and_pair() -> None:
    assert metric_floor("mlp", "mnist5k", "lenet300", quick=False) == 0.94
    assert metric_floor("mlp", "mnist5k", "lenet300", quick=True) == 0.92
    assert metric_floor("mlp", "sst2", "sst2-mlp", quick=False) == 0.80
    assert metric_floor("mlp", "mnist5k", "sst2-mlp", quick=False) is None
    assert metric_floor("sew", "fsdd", "sew-fsdd", quick=True) == 0.10
    with pytest.raises(ValueError, match="nosuch"):
        metric_floor("nosuch", "mnist5k", "lenet300", quick=False)


def test_every_method_the_readme_documents_is_accepted() -> None:
    """The README's --prune-methods row (layerwise included) and the schedules agree, both ways."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `--prune-methods`"))
    documented = set(re.findall(r"`([a-z-]+)`", row)) - {"--prune-methods"}
    assert "layerwise" in documented
    assert parse_options({"methods": ",".join(sorted(documented))}).methods == tuple(sorted(documented))
    from prunelib.pruning.schedules import SCHEDULES

    assert documented | set(LAB_METHODS) == set(SCHEDULES)  # the lab's four are "the lab's four" in that row


def test_seeds_run_every_sweep_once_per_seed() -> None:
    from prunelib.sweep.suite import sweep_specs

    opts = parse_options({"seeds": "0, 2,1,2", "methods": "no-retrain,imp-late-rewind", "rewind_epoch": "3"})
    assert opts.seeds == (0, 2, 1) and opts.seed == 0
    specs = sweep_specs(opts)
    assert [(s.method, s.seed) for s in specs] == [
        ("no-retrain", 0), ("no-retrain", 2), ("no-retrain", 1),
        ("imp-late-rewind", 0), ("imp-late-rewind", 2), ("imp-late-rewind", 1),
    ]  # fmt: skip
    assert [s.rewind_epoch for s in specs] == [1, 1, 1, 3, 3, 3]  # only late rewinding takes the epoch
    assert parse_options({"seed": "4"}).seeds == (4,) and parse_options({}).seeds == (0,)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"seed": "1", "seeds": "0,1"}, "--prune-seed 1 and --prune-seeds 0,1: give one"),
        ({"seeds": "0,x"}, "--prune-seeds must be an integer, got 'x'"),
        ({"seeds": "0,-1"}, "--prune-seeds must be >= 0, got -1"),
        ({"rewind_epoch": "-1"}, "--prune-rewind-epoch must be >= 0, got -1"),
        ({"scheduler": "local:0"}, "--prune-scheduler local:N must be >= 1, got 0"),
        ({"scheduler": "cluster"}, "--prune-scheduler: 'cluster' is neither local:N"),
    ],
)
def test_bad_seeds_scheduler_and_rewind_epoch_name_the_option(raw, message) -> None:
    with pytest.raises(OptionError, match=re.escape(message)):
        parse_options(raw)


def test_a_scheduler_is_kept_as_given() -> None:
    assert parse_options({"scheduler": "local:2"}).scheduler == "local:2"
    assert parse_options({"scheduler": "tcp://10.0.0.5:8786"}).scheduler == "tcp://10.0.0.5:8786"
    assert parse_options({}).scheduler is None
