"""The sweep cache: built once per configuration, keyed by everything that shapes it, never stale."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import prunelib
import prunelib.sweep.cache as cache
from prunelib.families.mlp.config import TrainConfig
from prunelib.families.mlp.data import subset
from prunelib.families.mlp.family import MlpFamily
from prunelib.families.mlp.train import evaluate
from prunelib.pruning.criteria import named_masks
from prunelib.storage import entries
from prunelib.storage.checkpoint import read_tensors
from prunelib.storage.entries import CacheWarning
from prunelib.sweep.cache import (
    dense_key,
    load_model,
    masks_equal,
    prepare_sweep,
    replay_rewind_step,
    sweep_key,
)
from prunelib.sweep.loaded import Loaded, load
from prunelib.sweep.spec import SweepSpec

SPEC = SweepSpec("mlp", "mnist5k", "lenet300", "imp-rewind", 0.5, 2)
HPARAMS = TrainConfig(epochs=1, batch_size=100)
PRUNELIB = Path(prunelib.__file__).resolve().parent


@pytest.fixture(scope="module")
def data():
    """MNIST-5k with 300 training examples (the family's own loader and subset)."""
    return subset(load(SPEC).data, 300, None, 0)


@pytest.fixture()
def loaded(data) -> Loaded:
    """A fresh family instance per test, so counting its training cannot leak into other tests."""
    return Loaded(MlpFamily(), data, HPARAMS)


@pytest.fixture()
def count_training(loaded: Loaded, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    phases: list[str] = []
    real = loaded.family.train

    def counted(model, data, hparams, seed, phase):
        phases.append(phase)
        return real(model, data, hparams, seed, phase)

    monkeypatch.setattr(loaded.family, "train", counted)
    return phases


def test_second_prepare_only_reads(tmp_path: Path, loaded: Loaded, count_training: list[str], monkeypatch) -> None:
    first = prepare_sweep(SPEC, loaded, tmp_path)
    assert count_training == ["dense", "retrain", "retrain"]
    assert first.metrics["iteration"].tolist() == [0, 1, 2]
    assert all(first.checkpoint(k).is_file() for k in range(3)) and first.initial.is_file()
    monkeypatch.setattr(cache, "iterate_schedule", lambda *a, **k: pytest.fail("rebuilt a cached sweep"))
    second = prepare_sweep(SPEC, loaded, tmp_path)
    assert second.folder == first.folder and second.metrics.equals(first.metrics)
    assert count_training == ["dense", "retrain", "retrain"]


def test_methods_share_the_dense_model(tmp_path: Path, loaded: Loaded, count_training: list[str]) -> None:
    a = prepare_sweep(SPEC, loaded, tmp_path)
    b = prepare_sweep(replace(SPEC, method="no-retrain"), loaded, tmp_path)
    assert count_training.count("dense") == 1 and a.folder != b.folder
    assert a.row(0)["accuracy"] == b.row(0)["accuracy"]
    assert len(list(tmp_path.glob("dense-*"))) == 1 and len(list(tmp_path.glob("sweep-*"))) == 2
    assert torch.equal(read_tensors(a.initial)["layers.0.weight"], read_tensors(b.initial)["layers.0.weight"])


@pytest.mark.parametrize(
    "change",
    [
        lambda s, h: (s, replace(h, epochs=2)),
        lambda s, h: (s, replace(h, lr=1e-3)),
        lambda s, h: (replace(s, seed=1), h),
        lambda s, h: (replace(s, amount=0.4), h),
        lambda s, h: (replace(s, iterations=3), h),
        lambda s, h: (replace(s, model="mlp1m"), h),
        lambda s, h: (replace(s, method="imp-finetune"), h),
        lambda s, h: (replace(s, embeddings=True), h),
        lambda s, h: (replace(s, precision="int8"), h),
        lambda s, h: (replace(s, quick=True), h),
        lambda s, h: (replace(s, dataset="mnist"), h),
        lambda s, h: (replace(s, family="tests.sweep.test_cache:MlpFamily"), h),
    ],
)
def test_any_change_of_configuration_changes_the_key(change, loaded: Loaded) -> None:
    spec, hparams = change(SPEC, HPARAMS)
    assert sweep_key(spec, Loaded(loaded.family, loaded.data, hparams)) != sweep_key(SPEC, loaded)


def test_schedule_changes_keep_the_dense_key(loaded: Loaded) -> None:
    for other in (replace(SPEC, method="random"), replace(SPEC, amount=0.2), replace(SPEC, iterations=5)):
        assert dense_key(other, loaded) == dense_key(SPEC, loaded)
        assert sweep_key(other, loaded) != sweep_key(SPEC, loaded)


def test_the_key_follows_data_contents_not_its_location(loaded: Loaded, data) -> None:
    moved = replace(SPEC, data_dir="/elsewhere")
    assert dense_key(moved, loaded) == dense_key(SPEC, loaded)
    family = loaded.family
    other = subset(load(SPEC).data, 301, None, 0)
    assert family.data_fingerprint(other) != family.data_fingerprint(data)
    assert family.data_fingerprint(subset(load(SPEC).data, 300, None, 0)) == family.data_fingerprint(data)
    assert dense_key(SPEC, Loaded(family, other, HPARAMS)) != dense_key(SPEC, loaded)


def test_the_key_follows_library_versions_and_code(monkeypatch, loaded: Loaded) -> None:
    before = sweep_key(SPEC, loaded)
    monkeypatch.setattr(cache, "package_versions", lambda names: {"torch": "0.0-other"})
    assert sweep_key(SPEC, loaded) != before
    monkeypatch.undo()
    assert sweep_key(SPEC, loaded) == before
    monkeypatch.setattr(cache, "code_fingerprint", lambda *extra: "edited")
    assert sweep_key(SPEC, loaded) != before


def test_the_key_follows_the_familys_own_sources(monkeypatch, loaded: Loaded, tmp_path: Path) -> None:
    before = sweep_key(SPEC, loaded)
    plugin = tmp_path / "my_family.py"
    plugin.write_text("X = 1\n")
    monkeypatch.setattr(loaded.family, "sources", lambda: [plugin])
    with_plugin = sweep_key(SPEC, loaded)
    assert with_plugin != before
    plugin.write_text("X = 2\n")
    assert sweep_key(SPEC, loaded) != with_plugin


# ---------------------------------------------------------------- artifacts
def test_checkpoints_load_with_masks_and_match_metrics(tmp_path: Path, loaded: Loaded) -> None:
    sweep = prepare_sweep(SPEC, loaded, tmp_path)
    m1, m2 = load_model(sweep, loaded, 1), load_model(sweep, loaded, 2)
    assert named_masks(m1) and all(torch.all(named_masks(m2)[k] <= v) for k, v in named_masks(m1).items())
    assert evaluate(m2, loaded.data.test) == pytest.approx(sweep.row(2)["accuracy"])
    assert sweep.row(2)["sparsity"] == pytest.approx(0.75, abs=1e-5)
    manifest = json.loads((sweep.folder / "manifest.json").read_text())
    assert manifest["kind"] == "sweep" and manifest["key"] == sweep_key(SPEC, loaded)
    assert manifest["spec"]["method"] == "imp-rewind" and "data_dir" not in manifest["spec"]
    assert manifest["data_fingerprint"] == loaded.family.data_fingerprint(loaded.data)
    with pytest.raises(ValueError, match="iteration 3"):
        sweep.checkpoint(3)
    with pytest.raises(KeyError, match="iteration 5"):
        sweep.row(5)


def test_concurrent_builders_build_once(tmp_path: Path, loaded: Loaded, count_training: list[str]) -> None:
    results, errors = [], []

    def work() -> None:
        try:
            results.append(prepare_sweep(SPEC, loaded, tmp_path).folder)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(set(results)) == 1 and count_training.count("dense") == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".building-")]


def test_a_broken_leftover_is_set_aside_not_deleted(tmp_path: Path, loaded: Loaded) -> None:
    folder = tmp_path / f"sweep-{sweep_key(SPEC, loaded)}"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me")
    with pytest.warns(CacheWarning, match=f"{folder.name}.*manifest.json is missing"):
        sweep = prepare_sweep(SPEC, loaded, tmp_path)
    assert (sweep.folder / "manifest.json").is_file() and sweep.folder == folder
    kept = list(tmp_path.glob(f".corrupt-{folder.name}-*"))
    assert len(kept) == 1 and (kept[0] / "notes.txt").read_text() == "keep me"


def test_a_failed_build_leaves_no_entry_and_the_next_try_resumes(tmp_path: Path, loaded: Loaded, monkeypatch) -> None:
    real, calls = cache.static_metrics, []

    def fails_at_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "static_metrics", fails_at_two)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_sweep(SPEC, loaded, tmp_path)
    assert not list(tmp_path.glob("sweep-*"))
    staging = tmp_path / f".building-{sweep_key(SPEC, loaded)}"
    assert [r["iteration"] for r in cache.completed_rows(staging, SPEC.iterations)] == [0, 1]
    monkeypatch.undo()
    resumed = prepare_sweep(SPEC, loaded, tmp_path)
    assert json.loads((resumed.folder / "manifest.json").read_text())["resumed_from"] == 2
    assert not list(tmp_path.glob(".building-*")) and not list(resumed.folder.glob("*.done.json"))
    whole = prepare_sweep(SPEC, loaded, tmp_path / "uninterrupted")
    assert resumed.metrics.equals(whole.metrics)
    assert manifest_files(resumed.folder) == manifest_files(whole.folder)  # byte-identical checkpoints


def test_a_resumed_build_trusts_only_checkpoints_whose_hash_holds(tmp_path: Path, loaded: Loaded, monkeypatch) -> None:
    monkeypatch.setattr(cache, "static_metrics", lambda *a, **k: pytest.fail("measured"))
    monkeypatch.setattr(cache, "iterate_schedule", lambda *a, **k: iter(()))
    staging = tmp_path / "staging"
    staging.mkdir()
    for k in range(3):
        (staging / f"it{k:02d}.safetensors").write_bytes(b"weights %d" % k)
        entries.record_done(staging, f"it{k:02d}.safetensors", {"row": {"iteration": k, "accuracy": 0.5}})
    assert len(cache.completed_rows(staging, 2)) == 3
    (staging / "it01.safetensors").write_bytes(b"weights 1 but torn")
    assert [r["iteration"] for r in cache.completed_rows(staging, 2)] == [0]
    (staging / "it00.safetensors.done.json").write_text("{not json")
    assert cache.completed_rows(staging, 2) == []


def manifest_files(folder: Path) -> dict[str, str]:
    return json.loads((folder / "manifest.json").read_text())["files"]


def flip_signs(path: Path) -> None:
    """Negate every float weight, keeping a perfectly valid safetensors file (a silent corruption)."""
    tensors = read_tensors(path)
    flipped = {k: (-v if v.is_floating_point() and not k.endswith("_mask") else v) for k, v in tensors.items()}
    save_file({k: v.contiguous() for k, v in flipped.items()}, str(path))


def test_a_truncated_checkpoint_is_moved_aside_and_rebuilt(tmp_path: Path, loaded: Loaded) -> None:
    first = prepare_sweep(SPEC, loaded, tmp_path)
    path = first.checkpoint(1)
    torn = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(torn)
    with pytest.warns(CacheWarning, match=f"{first.folder.name}.*it01.safetensors does not match its sha256"):
        again = prepare_sweep(SPEC, loaded, tmp_path)
    assert again.folder == first.folder and entries.problem(again.folder) is None
    assert again.metrics.equals(first.metrics)
    (aside,) = tmp_path.glob(f".corrupt-{first.folder.name}-*")
    assert (aside / "it01.safetensors").read_bytes() == torn  # kept for inspection, not deleted


def test_a_tampered_checkpoint_is_caught_before_it_is_timed(tmp_path: Path, loaded: Loaded) -> None:
    first = prepare_sweep(SPEC, loaded, tmp_path)
    flip_signs(first.checkpoint(2))
    tampered = load_model(first, loaded, 2)  # loads fine: only the hash tells
    assert evaluate(tampered, loaded.data.test) < first.row(2)["accuracy"] - 0.3
    with pytest.warns(CacheWarning, match="it02.safetensors does not match"):
        again = prepare_sweep(SPEC, loaded, tmp_path)
    assert evaluate(load_model(again, loaded, 2), loaded.data.test) == pytest.approx(again.row(2)["accuracy"])
    assert again.metrics.equals(first.metrics)


@pytest.mark.parametrize("damage", ["missing checkpoint", "missing manifest", "unlisted metrics"])
def test_a_damaged_entry_is_rebuilt(damage: str, tmp_path: Path, loaded: Loaded) -> None:
    first = prepare_sweep(SPEC, loaded, tmp_path)
    manifest = first.folder / "manifest.json"
    if damage == "missing checkpoint":
        first.checkpoint(0).unlink()
    elif damage == "missing manifest":
        manifest.unlink()
    else:
        body = json.loads(manifest.read_text())
        del body["files"]["metrics.csv"]
        manifest.write_text(json.dumps(body))
    with pytest.warns(CacheWarning, match=first.folder.name):
        again = prepare_sweep(SPEC, loaded, tmp_path)
    assert entries.problem(again.folder) is None and again.metrics.equals(first.metrics)


def test_replayed_rewind_matches_the_cached_masks(tmp_path: Path, loaded: Loaded) -> None:
    sweep = prepare_sweep(SPEC, loaded, tmp_path)
    replayed, cached = replay_rewind_step(sweep, loaded, 2)
    assert masks_equal(replayed, cached)
    assert not masks_equal(replayed, load_model(sweep, loaded, 1))
    structured = prepare_sweep(replace(SPEC, method="structured-imp-rewind"), loaded, tmp_path)
    assert masks_equal(*replay_rewind_step(structured, loaded, 1))
    with pytest.raises(ValueError, match="no rewind"):
        replay_rewind_step(prepare_sweep(replace(SPEC, method="no-retrain"), loaded, tmp_path), loaded, 1)
