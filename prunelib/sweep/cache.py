"""On-disk cache of a sweep's expensive state: the trained dense model and every iteration's checkpoint.

A cache entry is a folder named by a hash of everything that determines its contents — data
(hashed from the loaded tensors), model, hyperparameters, pruning schedule, seed, library
versions and prunelib's own training/pruning code — so a changed configuration never reuses a
stale entry. Entries are built in a hidden folder and renamed into place under a file lock:
concurrent pytest-xdist workers build each entry once, and a reader never sees half of one.
Checkpoints are safetensors (no pickle).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from filelock import FileLock
from safetensors.torch import save_file

from prunelib.config import DataConfig, MeasureConfig, PruneConfig, TrainConfig, config_key
from prunelib.families.mlp.data import Splits
from prunelib.families.mlp.models import MLP
from prunelib.families.mlp.train import init_model, train
from prunelib.fileio import write_atomic, write_text_atomic
from prunelib.measure.machine import package_versions
from prunelib.progress import progress
from prunelib.pruning.criteria import initial_state, rewind
from prunelib.pruning.schedules import get_schedule, iterate_schedule, model_spec, prune_step, static_metrics
from prunelib.storage.checkpoint import load_checkpoint, read_tensors, save_checkpoint

VERSIONED_PACKAGES = ("torch", "numpy", "mlxtend", "safetensors", "prunelib")
CACHE_FORMAT = 1

Metrics = Callable[..., Mapping[str, object]]


def default_cache_root() -> Path:
    """``$PRUNELIB_CACHE_DIR/bench`` if set, else ``~/.cache/prunelib/bench``."""
    base = os.environ.get("PRUNELIB_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "prunelib") / "bench"


@dataclass(frozen=True)
class SweepSpec:
    """One sweep as the bench suite runs it: data, model, hyperparameters, schedule, seed."""

    data: DataConfig
    model: str
    train: TrainConfig
    prune: PruneConfig
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    seed: int = 0

    @property
    def label(self) -> str:
        """``dataset-model-method``: the readable prefix of test ids and report sections."""
        return f"{self.data.name}-{self.model}-{self.prune.method}"


def source_files(root: Path) -> list[Path]:
    """Every ``.py`` file under ``root`` (a package folder), or ``[root]`` for a single module, sorted."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"cannot fingerprint {root}: no such file or folder")
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def code_fingerprint(*extra: Path) -> str:
    """A hash of the *content* of every source file of prunelib plus ``extra`` files or packages.

    Every ``.py`` under the installed ``prunelib/`` counts, by its path relative to the package
    and its bytes, so an edited, added, moved or renamed module changes the key; ``extra`` names
    a family's own modules (:func:`prunelib.families.registry.family_sources`). A missing path is
    an error, never a silent constant.
    """
    digest = hashlib.sha256()
    roots = [Path(__file__).resolve().parents[1], *(Path(e).resolve() for e in extra)]
    for root in roots:
        for path in source_files(root):
            rel = path.relative_to(root.parent if root.is_dir() else path.parent)
            digest.update(rel.as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def data_fingerprint(splits: Splits) -> str:
    """A hash of the split tensors themselves: the same bytes give the same key, wherever they came from."""
    digest = hashlib.sha256()
    for part in ("train", "dev", "test"):
        split = getattr(splits, part)
        for t in (split.x, split.y):
            digest.update(f"{part}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.contiguous().numpy().tobytes())
    digest.update(f"{splits.num_classes}:{splits.in_features}:{splits.vocab_size}".encode())
    return digest.hexdigest()[:16]


def _versions() -> dict[str, str]:
    return {**package_versions(VERSIONED_PACKAGES), "format": str(CACHE_FORMAT), "code": code_fingerprint()}


def dense_key(spec: SweepSpec, splits: Splits) -> str:
    """Key of the trained dense model: shared by every method of the same data/model/training/seed."""
    data = asdict(spec.data)
    data.pop("data_dir")  # where the files live does not matter, their contents (hashed) do
    return config_key(data, spec.model, spec.train, spec.seed, data_fingerprint(splits), versions=_versions())


def sweep_key(spec: SweepSpec, splits: Splits) -> str:
    """Key of one schedule's checkpoints and static metrics."""
    return config_key(dense_key(spec, splits), spec.prune, spec.measure.precision, versions=_versions())


@dataclass(frozen=True)
class SweepArtifacts:
    """A cached sweep: one checkpoint per iteration plus the per-iteration metrics (no timing)."""

    spec: SweepSpec
    folder: Path
    metrics: pd.DataFrame  # one row per iteration: static_metrics() columns

    def checkpoint(self, iteration: int) -> Path:
        """The safetensors checkpoint (masks included) of ``iteration``."""
        if not 0 <= iteration <= self.spec.prune.iterations:
            raise ValueError(f"iteration {iteration} outside 0..{self.spec.prune.iterations} of {self.spec.label}")
        return self.folder / f"it{iteration:02d}.safetensors"

    @property
    def initial(self) -> Path:
        """The initial weights IMP rewinds to (saved before any training)."""
        return self.folder / "initial.safetensors"

    def row(self, iteration: int) -> dict[str, object]:
        """The metrics row of ``iteration`` as plain Python values."""
        sel = self.metrics[self.metrics["iteration"] == iteration]
        if sel.empty:
            raise KeyError(f"no metrics for iteration {iteration} of {self.spec.label}")
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in sel.iloc[0].items()}


def fresh_model(spec: SweepSpec, splits: Splits) -> MLP:
    """An untrained model of ``spec``'s shape (load a checkpoint into it)."""
    return init_model(model_spec(spec.model, splits), spec.seed)


def load_model(artifacts: SweepArtifacts, splits: Splits, iteration: int) -> MLP:
    """The pruned model of ``iteration`` (masks re-applied), in eval mode."""
    return load_checkpoint(fresh_model(artifacts.spec, splits), artifacts.checkpoint(iteration))


def build_once(folder: Path, key: str, root: Path, build: Callable[[Path], None]) -> Path:
    """Build ``folder`` once: under a lock, into a hidden staging folder renamed into place."""
    if (folder / "manifest.json").exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{key}.lock")):
        if (folder / "manifest.json").exists():  # another process built it while we waited
            return folder
        staging = Path(tempfile.mkdtemp(prefix=f".building-{key}-", dir=root))
        try:
            build(staging)
            if folder.exists():  # a broken, manifest-less leftover: set it aside, never delete data
                folder.rename(root / f".stale-{folder.name}-{os.getpid()}")
            staging.rename(folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return folder


def _manifest(kind: str, key: str, spec: SweepSpec, splits: Splits, extra: dict | None = None) -> str:
    body = {
        "kind": kind,
        "key": key,
        "spec": asdict(spec),
        "data_fingerprint": data_fingerprint(splits),
        "versions": _versions(),
        **(extra or {}),
    }
    return json.dumps(body, indent=1, sort_keys=True, default=str) + "\n"


def prepare_dense(spec: SweepSpec, splits: Splits, root: Path | str) -> Path:
    """Folder with ``initial.safetensors`` (before training) and ``trained.safetensors``; built once."""
    root = Path(root)
    key = dense_key(spec, splits)

    def build(staging: Path) -> None:
        model = fresh_model(spec, splits)
        init = initial_state(model)
        write_atomic(staging / "initial.safetensors", lambda p: save_file(init, str(p)))
        train(model, splits.train, spec.train, spec.seed, desc=f"train {spec.data.name}-{spec.model}")
        save_checkpoint(model, staging / "trained.safetensors")
        write_text_atomic(staging / "manifest.json", _manifest("dense", key, spec, splits))

    return build_once(root / f"dense-{key}", key, root, build)


def prepare_sweep(
    spec: SweepSpec,
    splits: Splits,
    root: Path | str,
    metrics: Metrics = static_metrics,
) -> SweepArtifacts:
    """Train (or reuse) the dense model, walk ``spec``'s schedule, save every checkpoint and its metrics.

    ``metrics(model, splits, measure_cfg, structured=...)`` gives the per-iteration row; timing is
    left to the caller (pytest-benchmark). A second call with the same spec only reads files.
    """
    root = Path(root)
    schedule = get_schedule(spec.prune.method)
    key = sweep_key(spec, splits)

    def build(staging: Path) -> None:
        dense = prepare_dense(spec, splits, root)
        init = read_tensors(dense / "initial.safetensors")
        model = load_checkpoint(fresh_model(spec, splits), dense / "trained.safetensors")
        shutil.copyfile(dense / "initial.safetensors", staging / "initial.safetensors")
        rows = []
        steps = iterate_schedule(model, init, splits.train, schedule, spec.prune, spec.train, spec.seed)
        for k, current in progress(steps, desc=spec.label, total=spec.prune.iterations + 1):
            save_checkpoint(current, staging / f"it{k:02d}.safetensors")
            rows.append({"iteration": k, **metrics(current, splits, spec.measure, structured=schedule.structured)})
        write_text_atomic(staging / "metrics.csv", pd.DataFrame(rows).to_csv(index=False))
        write_text_atomic(staging / "manifest.json", _manifest("sweep", key, spec, splits, {"dense": dense.name}))

    folder = build_once(root / f"sweep-{key}", key, root, build)
    return SweepArtifacts(spec, folder, pd.read_csv(folder / "metrics.csv"))


def replay_rewind_step(artifacts: SweepArtifacts, splits: Splits, iteration: int) -> tuple[MLP, MLP]:
    """Re-run step ``iteration``'s prune + rewind from the cached ``iteration - 1`` checkpoint.

    Returns ``(replayed, cached)`` before retraining: the replayed model's survivors must equal
    the initial weights and its masks the cached checkpoint's. A check that the cache is not
    lying about rewinding (used by the bench suite's correctness gate).
    """
    spec = artifacts.spec
    schedule = get_schedule(spec.prune.method)
    if not schedule.rewind or iteration < 1:
        raise ValueError(f"{spec.label}: no rewind step at iteration {iteration}")
    model = load_model(artifacts, splits, iteration - 1)
    prune_step(model, schedule, spec.prune.amount, spec.seed + iteration)
    rewind(model, read_tensors(artifacts.initial))
    return model, load_model(artifacts, splits, iteration)


def masks_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two pruned models carry identical masks."""
    from prunelib.pruning.criteria import named_masks

    ma, mb = named_masks(a), named_masks(b)
    return ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
