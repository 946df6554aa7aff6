"""The SEW speech family: CTC recognisers (SEW via transformers) pruned and scored by word error rate.

Models: ``sew-fsdd`` (a small SEW prunelib trains once on FSDD and caches), ``sew-tiny`` (the
exact SEW-tiny architecture, random weights from the seed), or a ``save_pretrained`` directory
or hub id. Data sets: ``fsdd`` (seeded multi-digit utterances from FSDD's test recordings; its
train recordings retrain IMP) and ``librispeech`` (the standard speaker/chapter layout).

The models are pretrained when built, so the dense training phase is a no-op and IMP with
rewinding rewinds to the pretrained weights. Retraining (IMP methods) is short CTC fine-tuning
on FSDD's training recordings. Timing runs one forward pass on 2 s of audio (batch 1).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from prunelib.families.contract import Family, Metric, Params, Runner, Unsupported, fingerprint
from prunelib.families.datadir import DataError
from prunelib.pruning.structured import DEFAULT_RULE, Structure, UnitRule

#: Folders tried, in order, for ``librispeech`` under the data root.
LIBRISPEECH_FOLDERS = ("librispeech", "librispeech-mini", "LibriSpeech/test-clean", "test-clean")
#: FSDD test utterances scored (official test takes 0-4); quick mode scores fewer.
FSDD_TEST_COUNT, QUICK_COUNT = 200, 40
#: Seconds of audio one timed forward pass (and the FLOP count) runs on.
TIMING_SECONDS = 2.0
PRESETS = ("sew-fsdd", "sew-tiny", "sew-mini")


@dataclass(frozen=True)
class SewHparams:
    """Retraining after each pruning step (IMP methods): CTC on FSDD train clips, warm-up then cosine."""

    retrain_steps: int = 150
    retrain_lr: float = 3e-4
    retrain_warmup: int = 10
    base: Any = None  # the SpeechTrainConfig whose data and batch retraining reuses (None: the default)


@dataclass
class SewData:
    """What a SEW sweep reads: the processor, the scored utterances, and (FSDD) training clips."""

    processor: Any
    utterances: list
    train_clips: list = field(default_factory=list)
    root: Path | None = None


def librispeech_folder(root: Path) -> Path:
    """The LibriSpeech split folder under ``root`` (or ``root`` itself when it is one)."""
    for name in LIBRISPEECH_FOLDERS:
        if (root / name).is_dir():
            return root / name
    if list(root.glob("*/*/*.trans.txt")):
        return root
    raise DataError(
        f"no LibriSpeech folder under {root}: expected one of {list(LIBRISPEECH_FOLDERS)} "
        "holding speaker/chapter/*.flac and *.trans.txt"
    )


class SewFamily(Family):
    """SEW CTC speech models scored by WER (lower is better)."""

    name = "sew"
    metric = Metric("wer", higher_is_better=False, low=0.0, high=float("inf"))
    datasets = ("fsdd", "librispeech")
    models = PRESETS
    runtimes = ("torch", "onnxruntime")
    precisions = ("fp32",)
    batched = False
    amount, iterations = 0.1, 10
    quick_amount, quick_iterations = 0.3, 3
    parity_atol = 1e-3
    floors: ClassVar[dict[tuple[str, str], tuple[float, float]]] = {("fsdd", "sew-fsdd"): (0.10, 0.10)}
    smoke = ("fsdd", "sew-mini")
    #: IMP retrains for minutes per step: ``pytest bench/`` runs the one-shot sweeps unless told otherwise.
    bench_methods = ("no-retrain", "structured-no-retrain")

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, int], tuple[nn.Module, Any]] = {}

    def check_model(self, model: str) -> None:
        """A preset, a ``save_pretrained`` directory, or a hub id: ``hf:org/name[@revision]`` (downloaded) or
        ``org/name`` (from the local Hugging Face cache only)."""
        from prunelib.families.sew.load import hub_id

        if model in PRESETS or Path(model).is_dir() or (model.count("/") == 1 and not model.startswith((".", "/"))):
            hub_id(model)  # hf: followed by something other than org/name is an error naming it
            return
        raise ValueError(
            f"family 'sew' has no model {model!r}; choose one of {list(PRESETS)}, a directory or a hub id hf:org/name"
        )

    def default_model(self, dataset: str) -> str:
        """``sew-fsdd`` for FSDD; for LibriSpeech the pretrained SEW-tiny of the lab (hub id, needs network)."""
        return "sew-fsdd" if dataset == "fsdd" else "hf:asapp/sew-tiny-100k-ft-ls100h"

    def supports(
        self,
        method: str | None = None,
        runtime: str | None = None,
        precision: str | None = None,
        dataset: str | None = None,
    ) -> str:
        """The contract's reasons, plus: retraining needs FSDD's training recordings."""
        from prunelib.pruning.schedules import get_schedule

        reason = super().supports(method, runtime, precision, dataset)
        if not reason and method is not None and dataset not in (None, "fsdd") and get_schedule(method).retrain:
            reason = f"{method} retrains a SEW model on FSDD's training recordings: use --dataset fsdd"
        if not reason and method is not None and get_schedule(method).retrain_phase == "dense":
            reason = f"{method} replays the dense training, and a SEW model is built pretrained (no dense run)"
        return reason

    def prunable(self, model: nn.Module, embeddings: bool = False) -> Params:
        """The contract's Linear and Conv weights; weight norm must be folded first (:meth:`prepare`)."""
        from torch.nn.utils import parametrize

        params = super().prunable(model, embeddings)
        for module, name in params:
            if parametrize.is_parametrized(module, name):
                raise ValueError(
                    f"{type(module).__name__} weight is parametrized (weight norm); call "
                    "SewFamily.prepare(model) (prunelib.families.sew.deploy.fold_weight_norm) before pruning"
                )
        return params

    def pretrained(self, model: str) -> bool:
        """``sew-fsdd`` (trained once by prunelib) and directories or hub ids; ``sew-tiny``/``sew-mini`` are random."""
        return model not in ("sew-tiny", "sew-mini")

    def hparams(self, dataset: str, quick: bool) -> SewHparams:
        return SewHparams()

    def _model(self, model: str, seed: int, root: Path | None) -> tuple[nn.Module, Any]:
        from prunelib.families.sew.load import load_speech_model

        key = (model, seed if model in ("sew-tiny", "sew-mini") else 0)
        if key not in self._loaded:
            self._loaded[key] = load_speech_model(model, seed=seed, data_root=root)
        return self._loaded[key]

    def load_data(self, dataset: str, model: str, data_dir: Path | None, seed: int, quick: bool) -> SewData:
        from prunelib.families.sew.data import (
            dataset_folder,
            fsdd_utterances,
            list_fsdd,
            load_clips,
            read_librispeech,
            split_fsdd,
        )
        from prunelib.families.sew.models import build_processor

        if data_dir is None:
            raise DataError(f"dataset {dataset!r} needs a data root: pass --data-dir DIR or set PRUNELIB_DATA_DIR")
        count = QUICK_COUNT if quick else None
        if dataset == "fsdd":
            utterances = fsdd_utterances(data_dir, "test", count or FSDD_TEST_COUNT, seed=seed)
            clips = load_clips(split_fsdd(list_fsdd(dataset_folder(data_dir, "fsdd")))["train"])
        else:
            utterances, clips = read_librispeech(librispeech_folder(data_dir), subset=count), []
        processor = build_processor() if model in PRESETS else self._model(model, seed, data_dir)[1]
        return SewData(processor, utterances, clips, data_dir)

    def subset(self, data: SewData, train: int | None, test: int | None, seed: int) -> SewData:
        """The first ``test`` utterances (already a seeded draw) and ``train`` seeded training clips."""
        clips = data.train_clips
        if train is not None and train < len(clips):
            picks = sorted(np.random.default_rng(seed).choice(len(clips), size=train, replace=False))
            clips = [clips[i] for i in picks]
        utterances = data.utterances[:test] if test is not None else data.utterances
        return dataclasses.replace(data, utterances=utterances, train_clips=clips)

    def data_fingerprint(self, data: SewData) -> str:
        vocab = sorted(data.processor.tokenizer.get_vocab().items())
        digest = hashlib.sha256(fingerprint(vocab).encode())
        for u in data.utterances:
            digest.update(u.text.encode() + b"\0" + np.ascontiguousarray(u.audio).tobytes())
        for label, audio in data.train_clips:
            digest.update(f"{label}:".encode() + np.ascontiguousarray(audio).tobytes())
        return digest.hexdigest()[:16]

    def build(self, model: str, data: SewData, seed: int) -> nn.Module:
        self.check_model(model)
        return copy.deepcopy(self._model(model, seed, getattr(data, "root", None))[0]).eval()

    def prepare(self, model: nn.Module) -> nn.Module:
        from prunelib.families.sew.deploy import prepare_model

        return prepare_model(model)

    def train(self, model: nn.Module, data: SewData, hparams: SewHparams, seed: int, phase: str) -> None:
        if phase == "dense":
            return  # built pretrained (sew-fsdd is trained once by prunelib and cached)
        from prunelib.families.sew.train import SpeechTrainConfig, train_ctc

        if not data.train_clips:
            raise Unsupported("retraining a SEW model needs FSDD training recordings: use --dataset fsdd")
        base = hparams.base if hparams.base is not None else SpeechTrainConfig()
        steps = hparams.retrain_steps
        cfg = dataclasses.replace(
            base, steps=steps, lr=hparams.retrain_lr, warmup_steps=min(hparams.retrain_warmup, steps), seed=seed
        )
        train_ctc(model, data.processor, list(data.train_clips), cfg, desc="retrain")

    def evaluate(self, model: nn.Module, data: SewData) -> dict[str, float]:
        from prunelib.families.sew.wer import evaluate_wer

        return {"wer": evaluate_wer(model, data.processor, data.utterances)}

    def example_inputs(self, data: SewData, batch: int) -> torch.Tensor:
        from prunelib.families.sew.onnx import latency_input

        return latency_input(TIMING_SECONDS)

    def parity_inputs(self, data: SewData) -> torch.Tensor:
        from prunelib.families.sew.onnx import normalised_input

        return normalised_input(data.processor, data.utterances[0].audio)

    # structured (prunelib.families.sew.structured): feed-forward units and inner conv channels through
    # the Torch-Pruning engine, attention heads by hand
    def structure(self, model: nn.Module) -> Structure:
        """A short clip, and every layer but the feed-forward and inner conv roots kept whole (the engine's groups)."""
        from prunelib.families.sew.structured import structure

        return structure(model)

    def structured_step(self, model: nn.Module, amount: float, seed: int, rule: UnitRule = DEFAULT_RULE) -> None:
        """Feed-forward units and inner conv channels by ``rule`` (the engine), then heads by L2 per layer.

        A non-default ``rule`` applies to the engine's groups only: attention heads are always
        ranked by the L2 norm of their weights and counted per layer.
        """
        from prunelib.families.sew.structured import structured_prune_step

        structured_prune_step(model, amount, rule)

    def unit_counts(self, model: nn.Module) -> dict[str, tuple[int, int]]:
        """``(alive, total)`` per group: ``feature_extractor.conv_layers.i``, ``encoder.layers.i.attention`` (heads), ``….feed_forward``."""
        from prunelib.families.sew.structured import unit_counts

        return unit_counts(model)

    def shrink(self, model: nn.Module) -> nn.Module:
        from prunelib.families.sew.structured import shrink_sew

        return shrink_sew(model)

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "structured": "Torch-Pruning (feed-forward units, conv channels), own (heads)"}

    def sensitivity_groups(self, model: nn.Module) -> dict[str, Any]:
        from prunelib.families.sew.groups import sew_groups

        return sew_groups(model)

    def deploy(self, model: nn.Module, structured: bool) -> nn.Module:
        from prunelib.families.sew.deploy import inference_copy

        return (self.shrink(model) if structured else inference_copy(model)).eval()

    def forward(self, deployed: nn.Module) -> Runner:
        from prunelib.families.sew.onnx import LogitsOnly

        return super().forward(LogitsOnly(deployed).eval())

    def export_onnx(self, deployed: nn.Module, example: torch.Tensor, opset: int = 17) -> bytes:
        from prunelib.families.sew.onnx import export_ctc_onnx

        return export_ctc_onnx(deployed, opset=opset)

    def check_outputs(
        self, expected: np.ndarray, got: np.ndarray, data: SewData, what: str, atol: float | None = None
    ) -> float:
        """Logits within tolerance *and* the same greedy transcript."""
        worst = super().check_outputs(expected, got, data, what, atol)
        paths = torch.from_numpy(np.stack([expected.argmax(-1)[0], got.argmax(-1)[0]]))
        text_torch, text_other = data.processor.batch_decode(paths)
        if text_torch != text_other:
            raise ValueError(f"{what} transcribes {text_other!r}, PyTorch {text_torch!r}")
        return worst
