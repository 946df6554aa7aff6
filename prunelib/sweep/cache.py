"""On-disk cache of a sweep's expensive state: the trained dense model and every iteration's checkpoint.

A cache entry is a folder named by a hash of everything that determines its contents: the
family and the content of its source files, the data (hashed from what was loaded), model,
hyper-parameters, pruning schedule, seed, library versions and the content of every source file
of prunelib, so a changed configuration or edited, added, moved or renamed code never reuses a
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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from filelock import FileLock
from safetensors.torch import save_file
from torch import nn

from prunelib.config import config_key
from prunelib.fileio import write_atomic, write_text_atomic
from prunelib.measure.machine import package_versions
from prunelib.progress import progress
from prunelib.pruning.criteria import initial_state, named_masks, rewind
from prunelib.pruning.schedules import iterate_schedule, prune_step
from prunelib.storage.checkpoint import read_tensors, save_checkpoint
from prunelib.sweep.loaded import Loaded
from prunelib.sweep.metrics import static_metrics
from prunelib.sweep.spec import SweepSpec

VERSIONED_PACKAGES = ("torch", "numpy", "safetensors", "transformers", "prunelib")
CACHE_FORMAT = 2


def default_cache_root() -> Path:
    """``$PRUNELIB_CACHE_DIR/bench`` if set, else ``~/.cache/prunelib/bench``."""
    base = os.environ.get("PRUNELIB_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "prunelib") / "bench"


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


def _versions(loaded: Loaded) -> dict[str, str]:
    return {
        **package_versions(VERSIONED_PACKAGES),
        "format": str(CACHE_FORMAT),
        "code": code_fingerprint(*loaded.family.sources()),
    }


def dense_key(spec: SweepSpec, loaded: Loaded) -> str:
    """Key of the trained dense model: shared by every method of the same family/data/model/training/seed."""
    parts = (spec.family, spec.dataset, spec.model, spec.seed, spec.quick, loaded.hparams)
    return config_key(*parts, loaded.data_fingerprint, versions=_versions(loaded))


def sweep_key(spec: SweepSpec, loaded: Loaded) -> str:
    """Key of one schedule's checkpoints and static metrics."""
    schedule = (spec.method, spec.amount, spec.iterations, spec.embeddings, spec.precision, spec.unit_rule)
    return config_key(dense_key(spec, loaded), schedule, versions=_versions(loaded))


@dataclass(frozen=True)
class SweepArtifacts:
    """A cached sweep: one checkpoint per iteration plus the per-iteration metrics (no timing)."""

    spec: SweepSpec
    folder: Path
    metrics: pd.DataFrame  # one row per iteration: static_metrics() columns

    def checkpoint(self, iteration: int) -> Path:
        """The safetensors checkpoint (masks included) of ``iteration``."""
        if not 0 <= iteration <= self.spec.iterations:
            raise ValueError(f"iteration {iteration} outside 0..{self.spec.iterations} of {self.spec.label}")
        return self.folder / f"it{iteration:02d}.safetensors"

    @property
    def initial(self) -> Path:
        """The initial weights IMP rewinds to (saved before any training)."""
        return self.folder / "initial.safetensors"

    def row(self, iteration: int) -> dict[str, Any]:
        """The metrics row of ``iteration`` as plain Python values."""
        sel = self.metrics[self.metrics["iteration"] == iteration]
        if sel.empty:
            raise KeyError(f"no metrics for iteration {iteration} of {self.spec.label}")
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in sel.iloc[0].items()}


def load_model(artifacts: SweepArtifacts, loaded: Loaded, iteration: int) -> nn.Module:
    """The pruned model of ``iteration`` (masks re-applied), in eval mode."""
    return loaded.checkpoint(artifacts.spec, artifacts.checkpoint(iteration))


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


def _manifest(kind: str, key: str, spec: SweepSpec, loaded: Loaded, extra: dict | None = None) -> str:
    body = {
        "kind": kind,
        "key": key,
        "spec": {k: v for k, v in asdict(spec).items() if k != "data_dir"},
        "data_fingerprint": loaded.data_fingerprint,
        "versions": _versions(loaded),
        **(extra or {}),
    }
    return json.dumps(body, indent=1, sort_keys=True, default=str) + "\n"


def prepare_dense(spec: SweepSpec, loaded: Loaded, root: Path | str) -> Path:
    """Folder with ``initial.safetensors`` (as built, before training) and ``trained.safetensors``; built once."""
    root = Path(root)
    key = dense_key(spec, loaded)

    def build(staging: Path) -> None:
        model = loaded.fresh(spec)
        init = initial_state(model)
        write_atomic(staging / "initial.safetensors", lambda p: save_file(init, str(p)))
        loaded.family.train(model, loaded.data, loaded.hparams, spec.seed, "dense")
        model.eval()
        save_checkpoint(model, staging / "trained.safetensors")
        write_text_atomic(staging / "manifest.json", _manifest("dense", key, spec, loaded))

    return build_once(root / f"dense-{key}", key, root, build)


def prepare_sweep(spec: SweepSpec, loaded: Loaded, root: Path | str) -> SweepArtifacts:
    """Train (or reuse) the dense model, walk ``spec``'s schedule, save every checkpoint and its metrics.

    Timing is left to the caller (pytest-benchmark). A second call with the same spec only reads files.
    """
    root = Path(root)
    key = sweep_key(spec, loaded)
    family, schedule = loaded.family, spec.schedule

    def build(staging: Path) -> None:
        dense = prepare_dense(spec, loaded, root)
        init = read_tensors(dense / "initial.safetensors")
        model = loaded.checkpoint(spec, dense / "trained.safetensors")
        shutil.copyfile(dense / "initial.safetensors", staging / "initial.safetensors")
        rows = []
        steps = iterate_schedule(
            family, model, init, loaded.data, loaded.hparams, schedule,
            spec.amount, spec.iterations, spec.seed, spec.embeddings, spec.unit_rule,
        )  # fmt: skip
        for k, current in progress(steps, desc=spec.label, total=spec.iterations + 1):
            save_checkpoint(current, staging / f"it{k:02d}.safetensors")
            row = static_metrics(family, current, loaded.data, schedule.structured, spec.precision, spec.embeddings)
            rows.append({"iteration": k, **row})
        write_text_atomic(staging / "metrics.csv", pd.DataFrame(rows).to_csv(index=False))
        write_text_atomic(staging / "manifest.json", _manifest("sweep", key, spec, loaded, {"dense": dense.name}))

    folder = build_once(root / f"sweep-{key}", key, root, build)
    return SweepArtifacts(spec, folder, pd.read_csv(folder / "metrics.csv"))


def replay_rewind_step(artifacts: SweepArtifacts, loaded: Loaded, iteration: int) -> tuple[nn.Module, nn.Module]:
    """Re-run step ``iteration``'s prune + rewind from the cached ``iteration - 1`` checkpoint.

    Returns ``(replayed, cached)`` before retraining: the replayed model's survivors must equal
    the initial weights and its masks the cached checkpoint's. A check that the cache is not
    lying about rewinding (used by the bench suite's correctness gate).
    """
    spec = artifacts.spec
    if not spec.schedule.rewind or iteration < 1:
        raise ValueError(f"{spec.label}: no rewind step at iteration {iteration}")
    model = load_model(artifacts, loaded, iteration - 1)
    prune_step(loaded.family, model, spec.schedule, spec.amount, spec.seed + iteration, spec.embeddings, spec.unit_rule)
    rewind(model, read_tensors(artifacts.initial))
    return model, load_model(artifacts, loaded, iteration)


def masks_equal(a: nn.Module, b: nn.Module) -> bool:
    """Whether two pruned models carry identical masks."""
    ma, mb = named_masks(a), named_masks(b)
    return ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
