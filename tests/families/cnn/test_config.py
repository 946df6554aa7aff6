"""The CNN family's hyper-parameters: frozen, validated, one pair (full, quick) per data set."""

from __future__ import annotations

import dataclasses

import pytest

from prunelib.families.cnn.config import HPARAMS, Hparams, hparams_for
from prunelib.families.cnn.data import DATASETS


@pytest.mark.parametrize("dataset", DATASETS)
def test_quick_trains_shorter_in_smaller_batches_with_the_same_step(dataset: str) -> None:
    full, quick = hparams_for(dataset, False), hparams_for(dataset, True)
    assert 1 <= quick.epochs < full.epochs and quick.batch_size < full.batch_size
    assert (quick.lr, quick.weight_decay) == (full.lr, full.weight_decay)


def test_every_data_set_has_hyper_parameters_and_nothing_else() -> None:
    assert set(HPARAMS) == set(DATASETS)
    with pytest.raises(ValueError, match="no hyper-parameters for dataset 'cifar10'"):
        hparams_for("cifar10", False)


def test_frozen_and_validated() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Hparams().epochs = 3  # type: ignore[misc]
    for bad in ({"epochs": -1}, {"batch_size": 0}, {"lr": 0.0}, {"weight_decay": -1e-4}):
        with pytest.raises(ValueError, match="invalid CNN training hyper-parameters"):
            Hparams(**bad)  # type: ignore[arg-type]
