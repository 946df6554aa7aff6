"""The sweep cache: built once per configuration, keyed by everything that shapes it, never stale."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import prunelib
import prunelib.sweep.cache as cache
from prunelib.families.mlp.config import TrainConfig
from prunelib.families.mlp.data import subset
from prunelib.families.mlp.family import MlpFamily
from prunelib.families.mlp.train import evaluate
from prunelib.pruning.criteria import named_masks
from prunelib.storage.checkpoint import read_tensors
from prunelib.sweep.cache import (
    code_fingerprint,
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


# ---------------------------------------------------------------- code_fingerprint
def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


@pytest.fixture()
def fake_prunelib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of prunelib's sources that code_fingerprint reads as the installed package."""
    root = copy_tree(PRUNELIB, tmp_path / "site" / "prunelib")
    monkeypatch.setattr(cache, "__file__", str(root / "sweep" / "cache.py"))
    return root


def test_fingerprint_is_content_not_location(fake_prunelib: Path, monkeypatch) -> None:
    copied = code_fingerprint()
    monkeypatch.undo()
    assert code_fingerprint() == copied  # same bytes at the same relative paths: same key
    assert len(copied) == 16 and int(copied, 16) >= 0


def test_fingerprint_changes_when_any_source_file_changes(fake_prunelib: Path) -> None:
    files = sorted(fake_prunelib.rglob("*.py"))
    assert len(files) > 40 and fake_prunelib / "sweep" / "cache.py" in files
    base = code_fingerprint()
    seen = {base}
    for path in files:
        original = path.read_bytes()
        path.write_bytes(original + b"\n# edited\n")
        edited = code_fingerprint()
        assert edited not in seen, path.relative_to(fake_prunelib)
        seen.add(edited)
        path.write_bytes(original)
    assert code_fingerprint() == base


def test_fingerprint_changes_when_a_file_is_added_moved_or_renamed(fake_prunelib: Path) -> None:
    base = code_fingerprint()
    added = fake_prunelib / "pruning" / "extra.py"
    added.write_text("")  # even an empty module
    assert code_fingerprint() != base
    added.unlink()
    assert code_fingerprint() == base
    module = fake_prunelib / "results" / "knee.py"
    renamed = module.rename(fake_prunelib / "results" / "elbow.py")
    assert code_fingerprint() != base
    moved = renamed.rename(fake_prunelib / "report" / "knee.py")
    assert code_fingerprint() != base
    moved.rename(module)
    assert code_fingerprint() == base


def test_fingerprint_ignores_bytecode_and_non_python_files(fake_prunelib: Path) -> None:
    base = code_fingerprint()
    (fake_prunelib / "pruning" / "__pycache__").mkdir()
    (fake_prunelib / "pruning" / "__pycache__" / "criteria.py").write_text("stale = True\n")
    (fake_prunelib / "pruning" / "notes.txt").write_text("not code\n")
    assert code_fingerprint() == base


def test_fingerprint_of_extra_packages_and_modules(tmp_path: Path) -> None:
    base = code_fingerprint()
    package = tmp_path / "my_family"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "family.py").write_text("A = 1\n")
    with_package = code_fingerprint(package)
    assert with_package != base
    assert code_fingerprint(copy_tree(package, tmp_path / "elsewhere" / "my_family")) == with_package
    (package / "family.py").write_text("A = 2\n")
    edited = code_fingerprint(package)
    assert edited not in (base, with_package)
    (package / "data.py").write_text("")
    added = code_fingerprint(package)
    assert added != edited
    (package / "data.py").rename(package / "loader.py")
    assert code_fingerprint(package) not in (added, edited)
    module = tmp_path / "single.py"
    module.write_text("B = 1\n")
    single = code_fingerprint(module)
    assert single != base
    module.write_text("B = 2\n")
    assert code_fingerprint(module) != single


def test_a_missing_extra_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        code_fingerprint(missing)
    with pytest.raises(FileNotFoundError, match="gone.py"):
        code_fingerprint(PRUNELIB / "gone.py")


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
    sweep = prepare_sweep(SPEC, loaded, tmp_path)
    assert (sweep.folder / "manifest.json").is_file() and sweep.folder == folder
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".stale-")]
    assert len(kept) == 1 and (kept[0] / "notes.txt").read_text() == "keep me"


def test_a_failed_build_leaves_no_entry(tmp_path: Path, loaded: Loaded, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cache, "static_metrics", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_sweep(SPEC, loaded, tmp_path)
    assert not list(tmp_path.glob("sweep-*")) and not list(tmp_path.glob(".building-*"))
    monkeypatch.undo()
    assert (prepare_sweep(SPEC, loaded, tmp_path).folder / "manifest.json").is_file()  # and the next try builds


def test_replayed_rewind_matches_the_cached_masks(tmp_path: Path, loaded: Loaded) -> None:
    sweep = prepare_sweep(SPEC, loaded, tmp_path)
    replayed, cached = replay_rewind_step(sweep, loaded, 2)
    assert masks_equal(replayed, cached)
    assert not masks_equal(replayed, load_model(sweep, loaded, 1))
    structured = prepare_sweep(replace(SPEC, method="structured-imp-rewind"), loaded, tmp_path)
    assert masks_equal(*replay_rewind_step(structured, loaded, 1))
    with pytest.raises(ValueError, match="no rewind"):
        replay_rewind_step(prepare_sweep(replace(SPEC, method="no-retrain"), loaded, tmp_path), loaded, 1)
