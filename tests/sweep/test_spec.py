"""A sweep described as data: validation names the bad value; the label; the schedule and family it resolves to."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from prunelib.families.mlp.family import MlpFamily
from prunelib.pruning.schedules import SCHEDULES
from prunelib.pruning.structured import UnitRule
from prunelib.sweep.spec import SweepSpec


def spec(**changes) -> SweepSpec:
    fields = {"family": "mlp", "dataset": "mnist5k", "model": "lenet300", "method": "imp-rewind"}
    fields.update(amount=0.5, iterations=2)
    fields.update(changes)
    return SweepSpec(**fields)


def test_defaults_and_frozen() -> None:
    s = spec()
    assert (s.seed, s.quick, s.embeddings, s.precision, s.data_dir) == (0, False, False, "fp32", None)
    with pytest.raises(FrozenInstanceError):
        s.amount = 0.3  # type: ignore[misc]


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"amount": 0.0}, r"amount.*0\.0"),
        ({"amount": 1.0}, r"amount.*1\.0"),
        ({"amount": 1.5}, r"amount.*1\.5"),
        ({"amount": "0.5"}, r"amount.*'0\.5'"),
        ({"iterations": -1}, r"iterations must be >= 0, got -1"),
        ({"seed": -3}, r"seed must be >= 0, got -3"),
        ({"method": "obd"}, r"unknown method 'obd'"),
        ({"method": "obd", "unit_criterion": "bn-scale"}, r"unknown method 'obd'"),
        ({"unit_criterion": "bn-scale"}, r"apply to structured methods, not 'imp-rewind'"),
        ({"method": "structured-imp-rewind", "unit_scope": "model"}, r"unknown unit scope 'model'"),
    ],
)
def test_validation_names_the_bad_value(changes: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        spec(**changes)


def test_zero_iterations_is_a_dense_only_sweep() -> None:
    assert spec(iterations=0).iterations == 0


def test_label_is_dataset_model_method_with_the_models_last_path_part() -> None:
    assert spec().label == "mnist5k-lenet300-imp-rewind"
    assert spec(family="sew", dataset="librispeech", model="/models/sew-tiny", method="no-retrain").label == (
        "librispeech-sew-tiny-no-retrain"
    )
    assert spec(model="org/sew").label == "mnist5k-sew-imp-rewind"
    structured = spec(method="structured-imp-rewind", unit_criterion="bn-scale", unit_scope="global")
    assert structured.label == "mnist5k-lenet300-structured-imp-rewind-bn-scale-global"  # only a non-default rule
    assert spec(method="structured-imp-rewind").label == "mnist5k-lenet300-structured-imp-rewind"
    assert structured.unit_rule == UnitRule("bn-scale", "global")
    rounded = spec(method="structured-imp-rewind", unit_round=8)
    assert rounded.label == "mnist5k-lenet300-structured-imp-rewind-round8" and rounded.unit_rule == UnitRule(
        round_to=8
    )
    both = spec(method="structured-no-retrain", unit_scope="global", unit_round=4)
    assert both.label == "mnist5k-lenet300-structured-no-retrain-l2-global-round4"
    with pytest.raises(ValueError, match="structured methods, not 'imp-rewind'"):
        spec(method="imp-rewind", unit_round=8)


def test_schedule_and_family() -> None:
    assert spec(method="structured-no-retrain").schedule is SCHEDULES["structured-no-retrain"]
    assert isinstance(spec().resolve(), MlpFamily)
    assert spec().resolve() is spec(method="random").resolve()  # loaded once per process
    with pytest.raises(ValueError, match="unknown family 'nosuch'"):
        spec(family="nosuch").resolve()
