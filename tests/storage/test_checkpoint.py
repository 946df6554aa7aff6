"""Checkpoints: a pruned model round-trips through safetensors (masks, outputs), never through pickle."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from prunelib.families.mlp.data import Splits
from prunelib.families.mlp.models import ModelSpec, build_model
from prunelib.families.mlp.train import init_model
from prunelib.pruning.criteria import magnitude_prune, named_masks, random_prune
from prunelib.pruning.params import linear_and_conv_weights
from prunelib.storage.checkpoint import load_checkpoint, read_tensors, save_checkpoint

SPEC = ModelSpec("lenet300", 784, 10)


def pruned_lenet(model: nn.Module) -> nn.Module:
    magnitude_prune(linear_and_conv_weights(model), 0.5)
    magnitude_prune(linear_and_conv_weights(model), 0.3)
    return model.eval()


def assert_same_masks(a: nn.Module, b: nn.Module) -> None:
    ma, mb = named_masks(a), named_masks(b)
    assert sorted(ma) == sorted(mb) and ma
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def forbid_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a checkpoint was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_pruned_model_round_trips_masks_and_outputs(
    trained_lenet, mnist5k: Splits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = pruned_lenet(trained_lenet[0])
    path = save_checkpoint(model, tmp_path / "ckpt" / "model.safetensors", metadata={"iteration": "2"})
    assert path == tmp_path / "ckpt" / "model.safetensors" and path.is_file()
    forbid_pickle(monkeypatch)
    fresh = init_model(SPEC, seed=123)
    loaded = load_checkpoint(fresh, path)
    assert loaded is fresh and not loaded.training
    assert_same_masks(loaded, model)
    for a, b in zip(linear_and_conv_weights(loaded), linear_and_conv_weights(model)):
        assert torch.equal(a[0].weight, b[0].weight)  # the cached masked weight too, not the fresh model's
    x = mnist5k.test.x[:64]
    assert torch.equal(loaded(x), model(x))
    with safe_open(str(path), "pt") as fh:
        assert fh.metadata() == {"iteration": "2"}


def test_the_file_is_plain_safetensors(make_mlp, tmp_path: Path) -> None:
    model = make_mlp((4, 3))
    random_prune(linear_and_conv_weights(model), 0.5, seed=0)
    raw = save_checkpoint(model, tmp_path / "m.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    assert sorted(k for k in header if k != "__metadata__") == ["0.bias", "0.weight_mask", "0.weight_orig"]
    assert read_tensors(tmp_path / "m.safetensors").keys() == header.keys() - {"__metadata__"}


def test_unpruned_model_round_trips(make_mlp, tmp_path: Path) -> None:
    model = make_mlp((5, 4, 3), seed=1)
    loaded = load_checkpoint(make_mlp((5, 4, 3), seed=2), save_checkpoint(model, tmp_path / "d.safetensors"))
    assert named_masks(loaded) == {}
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_loading_into_a_pruned_model_takes_the_files_masks(make_mlp, tmp_path: Path) -> None:
    source, target = make_mlp((6, 5), seed=1), make_mlp((6, 5), seed=2)
    magnitude_prune(linear_and_conv_weights(source), 0.5)
    random_prune(linear_and_conv_weights(target), 0.2, seed=3)
    load_checkpoint(target, save_checkpoint(source, tmp_path / "p.safetensors"))
    assert_same_masks(target, source)
    x = torch.randn(3, 6)
    assert torch.equal(target(x), source(x))


@pytest.mark.parametrize(
    "other",
    [ModelSpec("mlp1m", 784, 10), ModelSpec("lenet300", 784, 10, vocab_size=30), ModelSpec("lenet300", 100, 10)],
    ids=["wider", "token-input", "other-input"],
)
@pytest.mark.parametrize("prune_source", [True, False], ids=["pruned", "dense"])
def test_checkpoint_from_another_model_is_rejected(tmp_path: Path, other: ModelSpec, prune_source: bool) -> None:
    source = build_model(other)
    if prune_source:
        magnitude_prune(linear_and_conv_weights(source), 0.5)
    path = save_checkpoint(source, tmp_path / "other.safetensors")
    with pytest.raises(ValueError) as info:
        load_checkpoint(build_model(SPEC), path)
    assert str(path) in str(info.value)


def test_mask_for_a_parameter_the_model_lacks_is_named(make_mlp, tmp_path: Path) -> None:
    source = make_mlp((4, 3, 2))
    magnitude_prune(linear_and_conv_weights(source), 0.5)
    with pytest.raises(ValueError, match=r"mask '2\.weight_mask' names no parameter"):
        load_checkpoint(make_mlp((4, 3)), save_checkpoint(source, tmp_path / "deep.safetensors"))


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage, not a checkpoint", struct.pack("<Q", 10**6) + b"{}", struct.pack("<Q", 2) + b"{]"],
    ids=["empty", "text", "huge-header", "bad-json"],
)
def test_corrupt_file_is_a_value_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable safetensors checkpoint") as info:
        load_checkpoint(build_model(SPEC), path)
    assert str(path) in str(info.value)


def test_truncated_checkpoint_is_rejected(make_mlp, tmp_path: Path) -> None:
    path = save_checkpoint(make_mlp((8, 8)), tmp_path / "t.safetensors")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="not a readable safetensors checkpoint"):
        read_tensors(path)


def test_missing_checkpoint_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(build_model(SPEC), tmp_path / "nope.safetensors")


def test_save_replaces_atomically(make_mlp, tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(make_mlp((3, 2), seed=1), path)
    second = make_mlp((3, 2), seed=2)
    save_checkpoint(second, path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    assert torch.equal(read_tensors(path)["0.weight"], second[0].weight.detach())
