"""Config: fraction checks, validated frozen dataclasses, per-data-set defaults, a stable cache key."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunelib.config import (
    DataConfig,
    MeasureConfig,
    PruneConfig,
    RunConfig,
    TrainConfig,
    check_fraction,
    config_key,
    default_train_config,
)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 1.0, exclude_min=True, exclude_max=True))
def test_fractions_strictly_inside_0_1_pass_as_float(value: float) -> None:
    assert check_fraction("amount", value) == value
    assert type(check_fraction("amount", value)) is float


@pytest.mark.parametrize("bad", [0, 0.0, 1, 1.0, -0.2, 1.5, math.nan, math.inf, -math.inf, "0.5", None])
def test_fractions_outside_0_1_raise_naming_the_option_and_value(bad: object) -> None:
    with pytest.raises(ValueError, match=r"amount.*strictly between 0 and 1") as info:
        check_fraction("amount", bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("amount", [0, 0.0, 1.0, -0.5, 2.0])
def test_prune_config_rejects_amount_outside_0_1(amount: float) -> None:
    with pytest.raises(ValueError, match="amount"):
        PruneConfig(amount=amount)


def test_prune_config_rejects_negative_iterations() -> None:
    with pytest.raises(ValueError, match="iterations"):
        PruneConfig(iterations=-1)
    assert PruneConfig(iterations=0).iterations == 0


@pytest.mark.parametrize("kw", [{"epochs": -1}, {"batch_size": 0}, {"lr": 0.0}, {"lr": -1e-3}])
def test_train_config_rejects_invalid_values(kw: dict) -> None:
    with pytest.raises(ValueError, match="invalid training config"):
        TrainConfig(**kw)


@pytest.mark.parametrize(
    "obj", [DataConfig(), TrainConfig(), PruneConfig(), MeasureConfig(), RunConfig()], ids=lambda o: type(o).__name__
)
def test_configs_are_frozen(obj: object) -> None:
    name = dataclasses.fields(obj)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, name, getattr(obj, name))


def test_default_train_config_per_dataset() -> None:
    sst2 = default_train_config("sst2")  # 67k phrases: fewer epochs, bigger batches
    assert sst2.epochs < TrainConfig().epochs and sst2.batch_size > TrainConfig().batch_size
    for name in ("mnist5k", "mnist", "fashion-mnist"):
        assert default_train_config(name) == TrainConfig()


def test_config_key_is_stable_and_short() -> None:
    key = config_key(RunConfig(), "lenet300", versions={"torch": "2.13.0"})
    assert key == config_key(RunConfig(), "lenet300", versions={"torch": "2.13.0"})
    assert len(key) == 16 and int(key, 16) >= 0


def test_config_key_changes_with_any_field_and_version() -> None:
    base = RunConfig()
    keys = {
        config_key(base),
        config_key(dataclasses.replace(base, seed=1)),
        config_key(dataclasses.replace(base, model="mlp1m")),
        config_key(dataclasses.replace(base, prune=PruneConfig(amount=0.2))),
        config_key(dataclasses.replace(base, train=TrainConfig(epochs=3))),
        config_key(dataclasses.replace(base, data=DataConfig(train_subset=100))),
        config_key(base, versions={"torch": "2.13.0"}),
        config_key(base, versions={"torch": "2.12.0"}),
    }
    assert len(keys) == 8


@settings(max_examples=30, deadline=None)
@given(st.floats(0.01, 0.99), st.floats(0.01, 0.99))
def test_config_key_separates_amounts(a: float, b: float) -> None:
    same = config_key(PruneConfig(amount=a)) == config_key(PruneConfig(amount=b))
    assert same == (a == b)


def test_measure_config_precision_and_runtime_are_validated() -> None:
    assert MeasureConfig().precision == "fp32" and MeasureConfig().runtime == "torch"
    for precision in ("fp32", "fp16", "int8"):
        assert MeasureConfig(precision=precision).precision == precision
    assert MeasureConfig(runtime="torch-sparse", precision="fp16").runtime == "torch-sparse"
    with pytest.raises(ValueError, match=r"precision must be one of .*'bf16'"):
        MeasureConfig(precision="bf16")
    with pytest.raises(ValueError, match=r"unknown runtime 'tflite'"):
        MeasureConfig(runtime="tflite")
    with pytest.raises(ValueError, match=r"'torch-sparse' cannot run precision 'int8'"):
        MeasureConfig(runtime="torch-sparse", precision="int8")


def test_config_key_changes_with_precision_and_runtime() -> None:
    keys = {
        config_key(RunConfig(measure=MeasureConfig(runtime=r, precision=p)))
        for r in ("torch", "onnxruntime")
        for p in ("fp32", "fp16", "int8")
    }
    assert len(keys) == 6
