"""Config: fraction checks and a stable cache key over frozen dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunelib.config import check_fraction, check_level, config_key, level, non_negative
from prunelib.sweep.spec import SweepSpec


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


BASE = SweepSpec("mlp", "mnist5k", "lenet300", "no-retrain", 0.33, 10)


def test_config_key_is_stable_and_short() -> None:
    key = config_key(BASE, "lenet300", versions={"torch": "2.13.0"})
    assert key == config_key(BASE, "lenet300", versions={"torch": "2.13.0"})
    assert len(key) == 16 and int(key, 16) >= 0


def test_config_key_changes_with_any_field_and_version() -> None:
    keys = {
        config_key(BASE),
        config_key(dataclasses.replace(BASE, seed=1)),
        config_key(dataclasses.replace(BASE, model="mlp1m")),
        config_key(dataclasses.replace(BASE, amount=0.2)),
        config_key(dataclasses.replace(BASE, method="imp-rewind")),
        config_key(dataclasses.replace(BASE, precision="fp16")),
        config_key(BASE, versions={"torch": "2.13.0"}),
        config_key(BASE, versions={"torch": "2.12.0"}),
    }
    assert len(keys) == 8


@settings(max_examples=30, deadline=None)
@given(st.floats(0.01, 0.99), st.floats(0.01, 0.99))
def test_config_key_separates_amounts(a: float, b: float) -> None:
    same = config_key(dataclasses.replace(BASE, amount=a)) == config_key(dataclasses.replace(BASE, amount=b))
    assert same == (a == b)


def test_levels_and_thresholds_shared_by_compare_and_history() -> None:
    assert check_level("alpha", 0.05) == 0.05 and level("0.01") == 0.01 and non_negative("0") == 0.0
    for bad in (0, 1, 1.5, -0.1, True, "0.05", math.nan):
        with pytest.raises(ValueError, match="alpha must be a significance level in \\(0, 1\\)"):
            check_level("alpha", bad)  # type: ignore[arg-type]
    for text, message in (("x", "not a number"), ("-1", "finite number >= 0"), ("inf", "finite number >= 0")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            non_negative(text)
    with pytest.raises(argparse.ArgumentTypeError, match="significance level"):
        level("1")
