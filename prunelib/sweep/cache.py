"""On-disk cache of a sweep's expensive state: the trained dense model and every iteration's checkpoint.

A cache entry is a folder named by a hash of everything that determines its contents: the
family and the content of its source files, the data (hashed from what was loaded), model,
hyper-parameters, pruning schedule, seed, library versions and the content of every source file
of prunelib, so a changed configuration or edited, added, moved or renamed code never reuses a
stale entry. Entries are built in a hidden folder and renamed into place under a file lock:
concurrent pytest-xdist workers build each entry once, and a reader never sees half of one.
Checkpoints are safetensors (no pickle). Every entry's manifest holds the sha256 of each of its
files and is checked on every load: a corrupt entry is moved aside and rebuilt, and a killed
build resumes from its last complete checkpoint (:mod:`prunelib.storage.entries`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
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
from prunelib.fingerprint import code_fingerprint
from prunelib.measure.machine import package_versions
from prunelib.progress import progress
from prunelib.pruning.criteria import initial_state, named_masks, rewind
from prunelib.pruning.schedules import iterate_schedule, prune_step
from prunelib.storage import entries
from prunelib.storage.checkpoint import read_tensors, save_checkpoint
from prunelib.sweep.loaded import Loaded
from prunelib.sweep.metrics import static_metrics
from prunelib.sweep.spec import SweepSpec

VERSIONED_PACKAGES = ("torch", "numpy", "safetensors", "transformers", "prunelib")
CACHE_FORMAT = 3  # 3: manifests hold every file's sha256


def default_cache_root() -> Path:
    """``$PRUNELIB_CACHE_DIR/bench`` if set, else ``~/.cache/prunelib/bench``."""
    base = os.environ.get("PRUNELIB_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "prunelib") / "bench"


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
    schedule: tuple = (spec.method, spec.amount, spec.iterations, spec.embeddings, spec.precision, spec.unit_rule)
    if spec.schedule.late:  # only late rewinding has a rewind epoch: the other methods' keys stay as they were
        schedule += (("rewind_epoch", spec.rewind_epoch),)
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

    @property
    def rewind_target(self) -> Path:
        """What rewinding resets survivors to: the initial weights, or (late rewinding) ``rewind.safetensors``."""
        return self.folder / REWIND_FILE if self.spec.schedule.late else self.initial

    def row(self, iteration: int) -> dict[str, Any]:
        """The metrics row of ``iteration`` as plain Python values."""
        sel = self.metrics[self.metrics["iteration"] == iteration]
        if sel.empty:
            raise KeyError(f"no metrics for iteration {iteration} of {self.spec.label}")
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in sel.iloc[0].items()}


def load_model(artifacts: SweepArtifacts, loaded: Loaded, iteration: int) -> nn.Module:
    """The pruned model of ``iteration`` (masks re-applied), in eval mode."""
    return loaded.checkpoint(artifacts.spec, artifacts.checkpoint(iteration))


def build_once(folder: Path, key: str, root: Path, build: Callable[[Path], None], required: Iterable[str] = ()) -> Path:
    """Build ``folder`` once: under a lock, in the staging folder ``.building-<key>``, renamed into place.

    A valid entry (every hash of its manifest matches, ``required`` files listed) is reused; a
    corrupt one is moved aside with a :class:`~prunelib.storage.entries.CacheWarning` and rebuilt.
    A staging folder left by a killed build is handed to ``build`` again, which resumes from
    what it recorded as complete; leftovers of the older random-suffix staging are removed (the
    lock is ours, so their builders are gone).
    """
    required = tuple(required)
    if folder.exists() and entries.problem(folder, required) is None:
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{key}.lock")):
        if entries.valid_or_aside(folder, required):  # another process built it while we waited
            return folder
        for old in root.glob(f"{entries.STAGING}{key}-*"):
            shutil.rmtree(old, ignore_errors=True)
        staging = root / f"{entries.STAGING}{key}"
        staging.mkdir(exist_ok=True)
        entries.write_owner(staging)
        build(staging)  # on failure the staging folder stays: the next build resumes it
        if folder.exists():  # a leftover that appeared without the lock: set it aside, never delete data
            folder.rename(root / f".stale-{folder.name}-{os.getpid()}")
        staging.rename(folder)
    return folder


def _manifest(kind: str, key: str, spec: SweepSpec, loaded: Loaded, label: str, extra: dict | None = None) -> dict:
    return {
        "kind": kind,
        "key": key,
        "label": label,
        "spec": json.loads(json.dumps({k: v for k, v in asdict(spec).items() if k != "data_dir"}, default=str)),
        "data_fingerprint": loaded.data_fingerprint,
        "versions": _versions(loaded),
        **(extra or {}),
    }


DENSE_FILES = ("initial.safetensors", "trained.safetensors")
#: A late-rewinding sweep's rewind target: the weights after ``rewind_epoch`` epochs of dense training.
REWIND_FILE = "rewind.safetensors"


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
        label = f"{spec.dataset}-{Path(spec.model).name} dense"
        entries.finish(staging, _manifest("dense", key, spec, loaded, label))

    return build_once(root / f"dense-{key}", key, root, build, DENSE_FILES)


def _name(iteration: int) -> str:
    return f"it{iteration:02d}.safetensors"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def sweep_files(iterations: int, late: bool = False) -> tuple[str, ...]:
    """The files a sweep entry of ``iterations`` steps must hold (``late``: also its rewind target)."""
    return ("initial.safetensors", "metrics.csv", *map(_name, range(iterations + 1)), *((REWIND_FILE,) if late else ()))


def completed_rows(staging: Path, iterations: int) -> list[dict[str, Any]]:
    """The metrics rows of the iterations ``0..k`` a killed build recorded complete (checkpoint hash intact)."""
    rows: list[dict[str, Any]] = []
    for k in range(iterations + 1):
        record = entries.done_record(staging, _name(k))
        row = record.get("row") if record else None
        if not isinstance(row, dict) or row.get("iteration") != k:
            break
        rows.append(row)
    return rows


def prepare_sweep(spec: SweepSpec, loaded: Loaded, root: Path | str) -> SweepArtifacts:
    """Train (or reuse) the dense model, walk ``spec``'s schedule, save every checkpoint and its metrics.

    Timing is left to the caller (pytest-benchmark). A second call with the same spec only reads
    files (after checking their hashes). A killed build resumes after its last complete checkpoint.
    """
    root = Path(root)
    key = sweep_key(spec, loaded)
    family, schedule = loaded.family, spec.schedule

    def build(staging: Path) -> None:
        dense = prepare_dense(spec, loaded, root)
        init = read_tensors(dense / "initial.safetensors")
        shutil.copyfile(dense / "initial.safetensors", staging / "initial.safetensors")
        if schedule.late:
            init = loaded.rewind_point(spec)
            snapshot = dict(init)
            write_atomic(staging / REWIND_FILE, lambda p: save_file(snapshot, str(p)))
        rows = completed_rows(staging, spec.iterations)
        start = len(rows)
        model = loaded.checkpoint(spec, staging / _name(start - 1) if start else dense / "trained.safetensors")
        steps = iterate_schedule(
            family, model, init, loaded.data, loaded.hparams, schedule,
            spec.amount, spec.iterations, spec.seed, spec.embeddings, spec.unit_rule, start,
        )  # fmt: skip
        for k, current in progress(steps, desc=spec.label, total=spec.iterations + 1 - start):
            save_checkpoint(current, staging / _name(k))
            row = static_metrics(family, current, loaded.data, schedule.structured, spec.precision, spec.embeddings)
            rows.append({"iteration": k, **{name: _plain(v) for name, v in row.items()}})
            entries.record_done(staging, _name(k), {"row": rows[-1]})
        write_text_atomic(staging / "metrics.csv", pd.DataFrame(rows).to_csv(index=False))
        extra = {"dense": dense.name, "resumed_from": start}
        entries.finish(staging, _manifest("sweep", key, spec, loaded, spec.label, extra))

    folder = build_once(root / f"sweep-{key}", key, root, build, sweep_files(spec.iterations, schedule.late))
    return SweepArtifacts(spec, folder, pd.read_csv(folder / "metrics.csv"))


def replay_rewind_step(artifacts: SweepArtifacts, loaded: Loaded, iteration: int) -> tuple[nn.Module, nn.Module]:
    """Re-run step ``iteration``'s prune + rewind from the cached ``iteration - 1`` checkpoint.

    Returns ``(replayed, cached)`` before retraining: the replayed model's survivors must equal
    the rewind target (:attr:`SweepArtifacts.rewind_target`) and its masks the cached checkpoint's. A check that the cache is not
    lying about rewinding (used by the bench suite's correctness gate).
    """
    spec = artifacts.spec
    if not spec.schedule.rewind or iteration < 1:
        raise ValueError(f"{spec.label}: no rewind step at iteration {iteration}")
    model = load_model(artifacts, loaded, iteration - 1)
    prune_step(loaded.family, model, spec.schedule, spec.amount, spec.seed + iteration, spec.embeddings, spec.unit_rule)
    rewind(model, read_tensors(artifacts.rewind_target))
    return model, load_model(artifacts, loaded, iteration)


def masks_equal(a: nn.Module, b: nn.Module) -> bool:
    """Whether two pruned models carry identical masks."""
    ma, mb = named_masks(a), named_masks(b)
    return ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
