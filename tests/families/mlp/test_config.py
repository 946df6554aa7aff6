"""The MLP family's configuration: validated frozen dataclasses and per-data-set training defaults."""

from __future__ import annotations

import dataclasses

import pytest

from prunelib.families.mlp.config import DataConfig, TrainConfig, default_train_config


@pytest.mark.parametrize("kw", [{"epochs": -1}, {"batch_size": 0}, {"lr": 0.0}, {"lr": -1e-3}])
def test_train_config_rejects_invalid_values(kw: dict) -> None:
    with pytest.raises(ValueError, match="invalid training config"):
        TrainConfig(**kw)


@pytest.mark.parametrize("obj", [DataConfig(), TrainConfig()], ids=lambda o: type(o).__name__)
def test_configs_are_frozen(obj: object) -> None:
    name = dataclasses.fields(obj)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, name, getattr(obj, name))


def test_default_train_config_per_dataset() -> None:
    sst2 = default_train_config("sst2")  # 67k phrases: fewer epochs, bigger batches
    assert sst2.epochs < TrainConfig().epochs and sst2.batch_size > TrainConfig().batch_size
    for name in ("mnist5k", "mnist", "fashion-mnist"):
        assert default_train_config(name) == TrainConfig()
