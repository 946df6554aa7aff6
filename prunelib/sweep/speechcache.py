"""Cached speech sweeps for the bench suite: every checkpoint and its WER, built once per configuration.

The key hashes the evaluation audio and transcripts, the dense model's weights, the schedule,
the seed, library versions and prunelib's code, as :mod:`prunelib.sweep.cache` does for Part I.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from prunelib.config import config_key
from prunelib.fileio import write_text_atomic
from prunelib.measure.machine import package_versions
from prunelib.progress import progress
from prunelib.storage.checkpoint import save_checkpoint
from prunelib.sweep.cache import build_once, code_fingerprint


@dataclass(frozen=True)
class SpeechSweepSpec:
    """One speech sweep as the bench suite runs it."""

    dataset: str  # fsdd | librispeech
    model: str  # sew-fsdd | sew-tiny | directory | hub id
    method: str = "no-retrain"
    amount: float = 0.1
    iterations: int = 10
    seed: int = 0
    eval_count: int | None = None  # utterances scored (None: the data set's default)

    @property
    def label(self) -> str:
        """``dataset-model-method`` with the model's last path part (readable test ids)."""
        return f"{self.dataset}-{Path(self.model).name}-{self.method}"


def utterances_fingerprint(utterances: Sequence[Any]) -> str:
    """A hash of every utterance's audio samples and transcript."""
    digest = hashlib.sha256()
    for u in utterances:
        digest.update(u.text.encode())
        digest.update(u.audio.tobytes())
    return digest.hexdigest()[:16]


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A hash of a model's state dict (names, shapes, values)."""
    digest = hashlib.sha256()
    for name, t in model.state_dict().items():
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class SpeechSweepArtifacts:
    """A cached speech sweep: checkpoints ``it00..itNN`` and per-iteration static metrics (WER, sizes)."""

    spec: SpeechSweepSpec
    folder: Path
    metrics: pd.DataFrame

    def checkpoint(self, iteration: int) -> Path:
        if not 0 <= iteration <= self.spec.iterations:
            raise ValueError(f"iteration {iteration} outside 0..{self.spec.iterations} of {self.spec.label}")
        return self.folder / f"it{iteration:02d}.safetensors"

    def row(self, iteration: int) -> dict[str, Any]:
        sel = self.metrics[self.metrics["iteration"] == iteration]
        if sel.empty:
            raise KeyError(f"no metrics for iteration {iteration} of {self.spec.label}")
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in sel.iloc[0].items()}


def prepare_speech_sweep(
    spec: SpeechSweepSpec,
    model: torch.nn.Module,
    processor: Any,
    utterances: Sequence[Any],
    cache_root: Path | str,
) -> SpeechSweepArtifacts:
    """Prune ``model`` (a copy) by ``spec`` without timing; save each step's checkpoint and WER once.

    Schedules that retrain are not cached here (they need training data); use ``python -m prunelib sweep``.
    """
    import copy

    from prunelib.families.sew.sweep import SpeechPruneConfig, iterate_schedule, static_metrics
    from prunelib.pruning.schedules import get_schedule

    root = Path(cache_root)
    versions = {**package_versions(("torch", "transformers", "numpy", "prunelib")), "code": code_fingerprint()}
    key = config_key(spec, utterances_fingerprint(utterances), weights_fingerprint(model), versions=versions)
    prune_cfg = SpeechPruneConfig(spec.method, spec.amount, spec.iterations, seed=spec.seed)
    structured = get_schedule(spec.method).structured

    def build(staging: Path) -> None:
        rows = []
        steps = iterate_schedule(copy.deepcopy(model), prune_cfg)
        for k, current in progress(steps, desc=spec.label, total=spec.iterations + 1):
            save_checkpoint(current, staging / f"it{k:02d}.safetensors")
            rows.append({"iteration": k, **static_metrics(current, processor, utterances, structured)})
        write_text_atomic(staging / "metrics.csv", pd.DataFrame(rows).to_csv(index=False))
        manifest = {"kind": "speech-sweep", "key": key, "spec": asdict(spec), "versions": versions}
        write_text_atomic(staging / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    folder = build_once(root / f"speech-{key}", key, root, build)
    return SpeechSweepArtifacts(spec, folder, pd.read_csv(folder / "metrics.csv"))
