"""A sweep's in-memory inputs: load() checks the spec against its family; fresh() and checkpoint() give new models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prunelib.families.contract import Family
from prunelib.families.datadir import DATA_DIR_ENV, DataError
from prunelib.families.mlp.data import Splits
from prunelib.families.mlp.family import MlpFamily
from prunelib.pruning.criteria import magnitude_prune, named_masks
from prunelib.pruning.params import effective_parameters
from prunelib.storage.checkpoint import save_checkpoint
from prunelib.sweep.loaded import Loaded, load
from prunelib.sweep.spec import SweepSpec


class NoUnits(MlpFamily):
    """The MLP family without structured pruning; loaded by ``module:callable`` below."""

    name = "no-units"
    structure = Family.structure
    structured_step = Family.structured_step
    shrink = Family.shrink


def spec(**changes) -> SweepSpec:
    fields = {"family": "mlp", "dataset": "mnist5k", "model": "lenet300", "method": "no-retrain"}
    fields.update(amount=0.5, iterations=1)
    fields.update(changes)
    return SweepSpec(**fields)


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"dataset": "imagenet"}, r"family 'mlp' has no dataset 'imagenet'.*mnist5k"),
        ({"model": "resnet50"}, r"family 'mlp' has no model 'resnet50'.*lenet300"),
        ({"family": "nosuch"}, r"unknown family 'nosuch'"),
        (
            {"family": f"{__name__}:NoUnits", "method": "structured-imp-rewind"},
            r"'no-units' does not support structured pruning \(structured-imp-rewind\)",
        ),
    ],
)
def test_load_rejects_what_the_family_cannot_do_before_reading_data(
    monkeypatch: pytest.MonkeyPatch, changes: dict, named: str
) -> None:
    monkeypatch.setattr(MlpFamily, "load_data", lambda *a, **k: pytest.fail("read data for a bad spec"))
    with pytest.raises(ValueError, match=named):
        load(spec(**changes))


def test_a_missing_data_dir_is_an_error_even_for_embedded_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"data dir {missing}"):
        load(spec(data_dir=str(missing)))
    monkeypatch.setenv(DATA_DIR_ENV, str(missing))
    with pytest.raises(DataError, match=rf"\${DATA_DIR_ENV} {missing}"):
        load(spec())


def test_load_reads_the_data_and_the_hyper_parameters(tmp_path: Path) -> None:
    quick = load(spec(quick=True, data_dir=str(tmp_path)))  # an existing (empty) root is fine for mnist5k
    assert isinstance(quick.family, MlpFamily) and isinstance(quick.data, Splits)
    assert quick.data.name == "mnist5k" and (len(quick.data.train), len(quick.data.test)) == (3500, 1000)
    assert quick.hparams == MlpFamily().hparams("mnist5k", True)
    assert quick.hparams.epochs < MlpFamily().hparams("mnist5k", False).epochs


def test_fresh_returns_independent_copies_of_the_seeded_build(make_splits) -> None:
    loaded = Loaded(MlpFamily(), make_splits(features=6), None)
    a, b = loaded.fresh(spec()), loaded.fresh(spec())
    assert a is not b and not a.training
    pa, pb = dict(effective_parameters(a)), dict(effective_parameters(b))
    assert all(torch.equal(pa[n], pb[n]) for n in pa)
    with torch.no_grad():
        a.layers[0].weight.zero_()
    magnitude_prune([(a.out, "weight")], 0.5)
    c = loaded.fresh(spec())
    assert torch.equal(dict(effective_parameters(c))["layers.0.weight"], pb["layers.0.weight"])
    assert named_masks(b) == {} and named_masks(c) == {}
    other = dict(effective_parameters(loaded.fresh(spec(seed=1))))
    assert not torch.equal(other["layers.0.weight"], pb["layers.0.weight"])
    built = dict(effective_parameters(MlpFamily().build("lenet300", loaded.data, 0)))
    assert all(torch.equal(built[n], pb[n]) for n in built)  # the family's own seeded build


def test_checkpoint_loads_masks_into_a_fresh_model(make_splits, tmp_path: Path) -> None:
    loaded = Loaded(MlpFamily(), make_splits(features=6), None)
    model = loaded.fresh(spec())
    magnitude_prune(MlpFamily().prunable(model), 0.5)
    path = save_checkpoint(model, tmp_path / "it01.safetensors")
    back = loaded.checkpoint(spec(), path)
    assert back is not model and not back.training
    masks, saved = named_masks(back), named_masks(model)
    assert sorted(masks) == sorted(saved) and all(torch.equal(masks[n], saved[n]) for n in saved)
    x = loaded.data.test.x
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
    assert named_masks(loaded.fresh(spec())) == {}  # the skeleton was not touched


@pytest.mark.parametrize("error", [FileNotFoundError("/data/fsdd/x.wav is missing"), ValueError("/data/x.wav: bad")])
def test_a_readers_own_error_becomes_a_data_error_keeping_its_message(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """The bench fails "data set cannot be read" on DataError alone: a reader's OSError/ValueError must become one."""

    def broken(*_args: object, **_kwargs: object) -> None:
        raise error

    monkeypatch.setattr(MlpFamily, "load_data", broken)
    with pytest.raises(DataError) as info:
        load(spec())
    assert str(info.value) == str(error) and info.value.__cause__ is error


def test_max_tokens_reaches_a_token_data_set_and_is_refused_elsewhere(
    tmp_path: Path, write_sst2, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--max-tokens`` caps SST-2's padded width; on data without tokens it is an error, not ignored."""
    rows = [f"{w} film {w}\t{i % 2}" for i, w in enumerate(["good", "bad", "fine", "dull"] * 5)]
    root = write_sst2(tmp_path, rows, rows[:4])
    common = {"dataset": "sst2", "model": "sst2-mlp", "data_dir": str(root)}
    assert load(spec(**common)).data.in_features == 3  # the longest row, under the default cap
    assert load(spec(**common, max_tokens=2)).data.in_features == 2
    monkeypatch.setattr(MlpFamily, "load_data", lambda *a, **k: pytest.fail("read data for a bad spec"))
    with pytest.raises(
        ValueError, match=r"max_tokens \(--max-tokens\) caps token data sets \(sst2 in family mlp\); 'mnist5k'"
    ):
        load(spec(max_tokens=8))
    with pytest.raises(ValueError, match="max_tokens must be >= 1, got 0"):
        spec(**common, max_tokens=0)
