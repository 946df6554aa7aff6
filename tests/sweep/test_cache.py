"""The sweep cache: built once per configuration, keyed by everything that shapes it, never stale."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import prunelib.sweep.cache as cache
from prunelib.config import DataConfig, PruneConfig, TrainConfig
from prunelib.families.mlp.data import load_data
from prunelib.pruning.criteria import named_masks
from prunelib.sweep.cache import (
    SweepSpec,
    data_fingerprint,
    dense_key,
    load_model,
    masks_equal,
    prepare_sweep,
    replay_rewind_step,
    sweep_key,
)

SPEC = SweepSpec(
    DataConfig("mnist5k", train_subset=300),
    "lenet300",
    TrainConfig(epochs=1, batch_size=100),
    PruneConfig("imp-rewind", 0.5, 2),
)


@pytest.fixture(scope="module")
def splits():
    return load_data(SPEC.data)


@pytest.fixture()
def count_training(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = cache.train

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "train", counted)
    return calls


def test_second_prepare_only_reads(tmp_path: Path, splits, count_training: list[int], monkeypatch) -> None:
    first = prepare_sweep(SPEC, splits, tmp_path)
    assert len(count_training) == 1  # the dense model; IMP's retraining goes through schedules.train
    assert first.metrics["iteration"].tolist() == [0, 1, 2]
    assert all(first.checkpoint(k).is_file() for k in range(3)) and first.initial.is_file()
    monkeypatch.setattr(cache, "iterate_schedule", lambda *a, **k: pytest.fail("rebuilt a cached sweep"))
    second = prepare_sweep(SPEC, splits, tmp_path)
    assert second.folder == first.folder and second.metrics.equals(first.metrics)
    assert len(count_training) == 1


def test_methods_share_the_dense_model(tmp_path: Path, splits, count_training: list[int]) -> None:
    a = prepare_sweep(SPEC, splits, tmp_path)
    b = prepare_sweep(replace(SPEC, prune=PruneConfig("no-retrain", 0.5, 2)), splits, tmp_path)
    assert len(count_training) == 1 and a.folder != b.folder
    assert a.row(0)["accuracy"] == b.row(0)["accuracy"]


@pytest.mark.parametrize(
    "change",
    [
        lambda s: replace(s, train=replace(s.train, epochs=2)),
        lambda s: replace(s, train=replace(s.train, lr=1e-3)),
        lambda s: replace(s, seed=1),
        lambda s: replace(s, prune=replace(s.prune, amount=0.4)),
        lambda s: replace(s, prune=replace(s.prune, iterations=3)),
        lambda s: replace(s, model="mlp1m"),
    ],
)
def test_any_change_of_configuration_changes_the_key(change, splits) -> None:
    assert sweep_key(change(SPEC), splits) != sweep_key(SPEC, splits)


def test_the_key_follows_data_contents_not_its_location(splits) -> None:
    moved = replace(SPEC, data=replace(SPEC.data, data_dir="/elsewhere"))
    assert dense_key(moved, splits) == dense_key(SPEC, splits)
    other = load_data(replace(SPEC.data, train_subset=301))
    assert data_fingerprint(other) != data_fingerprint(splits)
    assert dense_key(SPEC, other) != dense_key(SPEC, splits)


def test_the_key_follows_library_versions_and_code(monkeypatch, splits) -> None:
    before = sweep_key(SPEC, splits)
    monkeypatch.setattr(cache, "package_versions", lambda names: {"torch": "0.0-other"})
    assert sweep_key(SPEC, splits) != before
    monkeypatch.undo()
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "edited")
    assert sweep_key(SPEC, splits) != before


def test_checkpoints_load_with_masks_and_match_metrics(tmp_path: Path, splits) -> None:
    from prunelib.families.mlp.train import evaluate

    sweep = prepare_sweep(SPEC, splits, tmp_path)
    m1, m2 = load_model(sweep, splits, 1), load_model(sweep, splits, 2)
    assert named_masks(m1) and all(torch.all(named_masks(m2)[k] <= v) for k, v in named_masks(m1).items())
    assert evaluate(m2, splits.test) == pytest.approx(sweep.row(2)["accuracy"])
    manifest = json.loads((sweep.folder / "manifest.json").read_text())
    assert manifest["kind"] == "sweep" and manifest["spec"]["prune"]["method"] == "imp-rewind"
    with pytest.raises(ValueError, match="iteration 3"):
        sweep.checkpoint(3)


def test_concurrent_builders_build_once(tmp_path: Path, splits, count_training: list[int]) -> None:
    results, errors = [], []

    def work() -> None:
        try:
            results.append(prepare_sweep(SPEC, splits, tmp_path).folder)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(set(results)) == 1 and len(count_training) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".building-")]


def test_a_broken_leftover_is_set_aside_not_deleted(tmp_path: Path, splits) -> None:
    folder = tmp_path / f"sweep-{sweep_key(SPEC, splits)}"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me")
    sweep = prepare_sweep(SPEC, splits, tmp_path)
    assert (sweep.folder / "manifest.json").is_file()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".stale-")]
    assert len(kept) == 1 and (kept[0] / "notes.txt").read_text() == "keep me"


def test_a_failed_build_leaves_no_entry(tmp_path: Path, splits) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        prepare_sweep(SPEC, splits, tmp_path, metrics=broken)
    assert not list(tmp_path.glob("sweep-*")) and not list(tmp_path.glob(".building-*"))


def test_replayed_rewind_matches_the_cached_masks(tmp_path: Path, splits) -> None:
    sweep = prepare_sweep(SPEC, splits, tmp_path)
    replayed, cached = replay_rewind_step(sweep, splits, 2)
    assert masks_equal(replayed, cached)
    structured = prepare_sweep(replace(SPEC, prune=PruneConfig("structured-imp-rewind", 0.5, 2)), splits, tmp_path)
    assert masks_equal(*replay_rewind_step(structured, splits, 1))
    with pytest.raises(ValueError, match="no rewind"):
        replay_rewind_step(
            prepare_sweep(replace(SPEC, prune=PruneConfig("no-retrain", 0.5, 2)), splits, tmp_path), splits, 1
        )
