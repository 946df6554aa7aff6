"""Pruning sweeps of SEW CTC models: global magnitude pruning step by step, WER and costs per step.

Mirrors :mod:`prunelib.pruning.schedules`: :func:`iterate_schedule` walks a schedule (prune →
(rewind) → (retrain)) and yields the model after every step, :func:`static_metrics` measures a
step without timing (for the bench suite, which times with pytest-benchmark itself),
:func:`measure` adds latency, and :func:`run_sweep` returns one row per iteration 0..N.

Prunable parameters: the ``weight`` of every ``nn.Linear`` and ``nn.Conv1d`` — the feature
encoder's convolutions, the positional convolution, the attention and feed-forward projections,
the upsampling projection and the CTC head — as :func:`prunelib.families.mlp.models.linear_and_conv_weights`
selects them. Biases and the group/layer norms stay dense, as in the lab.

The positional convolution (``sew.encoder.pos_conv_embed.conv``) carries a weight-norm
parametrization (``weight = g * v / ||v||``). It is *included*: :func:`fold_weight_norm`
first replaces the parametrization by its current value, a plain ``weight`` (exact: the
forward pass computes the same tensor), so it is scored by the magnitude of the weight the
forward pass uses like every other layer, counted by :mod:`prunelib.pruning.sparsity` under its plain
name, and exported to ONNX as a plain weight. Pruning ``v`` instead would score it on a
different scale than every other weight; leaving it out would hide 1.2 % of SEW-tiny (0.5 M of
40.7 M weights). After folding, IMP retraining updates the weight directly (no weight norm).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunelib.config import check_fraction
from prunelib.deploy.runtimes import check_runtime, time_calls
from prunelib.families.sew.data import (
    Utterance,
    dataset_folder,
    default_data_root,
    fsdd_utterances,
    list_fsdd,
    load_clips,
    split_fsdd,
)
from prunelib.families.sew.onnx import latency_input, make_ctc_runner
from prunelib.families.sew.structured import shrink_sew, structured_prune_step, unit_sparsity
from prunelib.families.sew.train import SpeechTrainConfig, train_ctc, trained_fsdd_model
from prunelib.families.sew.wer import evaluate_wer
from prunelib.measure.flops import count_flops
from prunelib.progress import progress
from prunelib.pruning.criteria import get_criterion, initial_state, refresh_masked, rewind
from prunelib.pruning.params import count_parameters
from prunelib.pruning.params import linear_and_conv_weights as _linear_and_conv_weights
from prunelib.pruning.schedules import Schedule, get_schedule, size_metrics
from prunelib.storage.checkpoint import load_checkpoint
from prunelib.sweep.sensitivity import DEFAULT_LEVELS, sensitivity, sew_groups

Params = list[tuple[nn.Module, str]]
#: Schedules a speech sweep supports (those of :data:`prunelib.pruning.schedules.SCHEDULES`); the structured
#: ones remove feed-forward units, attention heads and conv channels (:mod:`prunelib.families.sew.structured`).
SPEECH_METHODS = (
    "no-retrain",
    "imp-finetune",
    "imp-rewind",
    "random",
    "structured-no-retrain",
    "structured-imp-finetune",
    "structured-imp-rewind",
)


@dataclass(frozen=True)
class SpeechPruneConfig:
    """How a speech sweep prunes: method, fraction of the remaining weights per step, steps, retraining.

    ``retrain_*`` apply to the IMP methods only: each step retrains with CTC on FSDD train
    utterances for ``retrain_steps`` at peak learning rate ``retrain_lr`` (warm-up then cosine),
    seeded from ``seed + k``.
    """

    method: str = "no-retrain"
    amount: float = 0.1  # of the remaining weights, or of each group's remaining units (structured)
    iterations: int = 10
    retrain_steps: int = 150
    retrain_lr: float = 3e-4
    retrain_warmup: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in SPEECH_METHODS:
            get_schedule(self.method)  # names the known schedules for a typo
            raise ValueError(
                f"method {self.method!r} does not apply to speech models; choose one of {list(SPEECH_METHODS)}"
            )
        check_fraction("amount", self.amount)
        if self.iterations < 0 or self.retrain_steps < 0 or self.retrain_lr <= 0 or self.retrain_warmup < 0:
            raise ValueError(f"invalid speech pruning config: {self}")


@dataclass(frozen=True)
class SpeechMeasureConfig:
    """Latency measurement of one forward pass on ``audio_seconds`` of audio (batch 1)."""

    runtime: str = "torch"
    threads: int | None = None
    runs: int = 20
    warmup: int = 3
    audio_seconds: float = 2.0
    parity_utterances: int = 5  # ORT only: utterances of the evaluation set checked before timing

    def __post_init__(self) -> None:
        check_runtime(self.runtime)
        if self.runs < 2 or self.warmup < 0 or not self.audio_seconds > 0 or self.parity_utterances < 0:
            raise ValueError(f"invalid speech measure config: {self}")


# --------------------------------------------------------------------------- what is pruned


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """Replace every parametrized ``weight`` (SEW's weight-normed positional conv) by its value, in place.

    The forward pass is unchanged; the module becomes a plain ``Conv1d`` with a ``weight``
    parameter. Returns ``model``. A no-op for a model without parametrizations.
    """
    # Not parametrize.remove_parametrizations: it deletes the property from the module's
    # generated class, which a deep copy shares with its original (breaking the original).
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        with torch.no_grad():
            values = {name: getattr(module, name).detach().clone() for name in module.parametrizations.keys()}
        module.__class__ = module.__class__.__bases__[0]  # ParametrizedConv1d -> Conv1d
        del module.parametrizations
        params = dict(module._parameters)
        module._parameters = {**{n: nn.Parameter(v) for n, v in values.items()}, **params}  # weight first
    return model


def unfold_weight_norm(model: nn.Module) -> nn.Module:
    """Put weight norm back on SEW's positional conv (in place), as ``SEWForCTC`` builds it.

    With ``v = weight`` and ``g = ||weight||`` the forward pass is unchanged up to float
    rounding and pruned zeros stay exactly zero; the state dict then has the names
    ``from_pretrained`` expects. A no-op if already parametrized or there is no such conv.
    """
    base = getattr(model, "base_model", model)
    conv = getattr(getattr(getattr(base, "encoder", None), "pos_conv_embed", None), "conv", None)
    if conv is not None and not parametrize.is_parametrized(conv):
        torch.nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    return model


def save_speech_model(model: nn.Module, processor: Any, directory: Path | str) -> Path:
    """``save_pretrained`` a (pruned) CTC model and its processor so ``load_speech_model(directory)`` loads it.

    Pruning is made permanent (zeros stored) and weight norm restored on a copy; ``model`` is
    not changed. Returns ``directory``.
    """
    from prunelib.families.sew.onnx import inference_copy

    directory = Path(directory)
    plain = unfold_weight_norm(inference_copy(model))
    plain.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def load_sweep_checkpoint(base: nn.Module, path: Path | str) -> nn.Module:
    """A sweep checkpoint (``prunelib.storage.checkpoint.save_checkpoint`` of a step's model) loaded into a
    copy of ``base`` (same architecture), weight norm folded as in the sweep; in eval mode."""
    fresh = prepare_model(copy.deepcopy(base))
    return load_checkpoint(fresh, path)


def prunable_parameters(model: nn.Module) -> Params:
    """``(module, "weight")`` of every Linear and Conv1d of a SEW model, positional conv included.

    Raises:
        ValueError: a weight is still parametrized (call :func:`fold_weight_norm` first).
    """
    params = _linear_and_conv_weights(model)
    for module, name in params:
        if parametrize.is_parametrized(module, name):
            raise ValueError(
                f"{type(module).__name__} weight is parametrized (weight norm); "
                "call prunelib.families.sew.sweep.fold_weight_norm(model) before pruning"
            )
    return params


def prepare_model(model: nn.Module) -> nn.Module:
    """Fold weight norm (in place) and switch to eval mode: the model a sweep starts from."""
    return fold_weight_norm(model).eval()


# --------------------------------------------------------------------------- schedule


def retrain_config(base: SpeechTrainConfig, prune_cfg: SpeechPruneConfig, k: int) -> SpeechTrainConfig:
    """The short CTC fine-tuning after pruning step ``k``: ``base``'s data and batch, short and gentle."""
    return dataclasses.replace(
        base,
        steps=prune_cfg.retrain_steps,
        lr=prune_cfg.retrain_lr,
        warmup_steps=min(prune_cfg.retrain_warmup, prune_cfg.retrain_steps),
        seed=prune_cfg.seed + k,
    )


def iterate_schedule(
    model: nn.Module,
    prune_cfg: SpeechPruneConfig,
    processor: Any = None,
    train_clips: Sequence[tuple[int, np.ndarray]] | None = None,
    train_cfg: SpeechTrainConfig | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
) -> Iterator[tuple[int, nn.Module]]:
    """Yield ``(0, model)`` then, after each of ``prune_cfg.iterations`` steps, ``(k, model)``.

    Each step prunes ``prune_cfg.amount`` of the remaining prunable weights (global, by the
    schedule's criterion), or for structured schedules of each group's remaining units
    (:func:`prunelib.families.sew.structured.structured_prune_step`); IMP methods then (rewind to ``initial`` and) retrain on
    ``train_clips`` with :func:`retrain_config`. Mutates ``model`` in place (weight norm is
    folded first); copy what you keep.

    Raises:
        ValueError: an IMP method without ``processor``/``train_clips``/``train_cfg``, or
            ``imp-rewind`` without ``initial``.
    """
    schedule: Schedule = get_schedule(prune_cfg.method)
    if schedule.retrain and (processor is None or not train_clips or train_cfg is None):
        raise ValueError(f"method {schedule.name!r} retrains: pass processor, train_clips and train_cfg")
    if schedule.rewind and initial is None:
        raise ValueError(f"method {schedule.name!r} rewinds: pass the initial weights")
    prepare_model(model)
    yield 0, model
    for k in range(1, prune_cfg.iterations + 1):
        if schedule.structured:
            structured_prune_step(model, prune_cfg.amount)
        else:
            get_criterion(schedule.criterion)(prunable_parameters(model), prune_cfg.amount, prune_cfg.seed + k)
        if schedule.rewind:
            rewind(model, initial)
        if schedule.retrain:
            train_ctc(model, processor, list(train_clips), retrain_config(train_cfg, prune_cfg, k), desc=f"retrain {k}")
            refresh_masked(model)  # drop the autograd history of the cached weights (deepcopy-safe)
        model.eval()
        yield k, model


def initial_weights(train_cfg: SpeechTrainConfig) -> dict[str, torch.Tensor]:
    """What ``imp-rewind`` rewinds to: the seeded initialisation of ``train_cfg.arch``, weight norm folded."""
    from prunelib.families.sew.models import build_sew

    return initial_state(fold_weight_norm(build_sew(train_cfg.arch, train_cfg.seed)))


# --------------------------------------------------------------------------- metrics


#: Seconds of audio ``flops`` is counted on (a typical FSDD utterance; scale linearly for others).
FLOPS_SECONDS = 2.0


def deployed(model: nn.Module, structured: bool = False) -> nn.Module:
    """The model as it runs: pruning made permanent, weight norm folded, and physically shrunk when ``structured``."""
    from prunelib.families.sew.onnx import inference_copy

    return shrink_sew(model) if structured else inference_copy(model)


def static_metrics(
    model: nn.Module, processor: Any, dataset: Sequence[Utterance], structured: bool = False
) -> dict[str, float | int]:
    """WER on ``dataset``, sparsity, parameter counts, sizes and work: every column but latency.

    The lab's columns are of the pruned model (``disk_dense_bytes``, ``disk_sparse_bytes``);
    ``disk_compact_bytes``/``disk_bound_bytes`` (:func:`prunelib.storage.compact.compact_stats`, fp32),
    ``params_deployed`` and ``flops`` (multiply-adds on :data:`FLOPS_SECONDS` of audio) are of
    the model as deployed (:func:`deployed`: shrunk for ``structured``). ``neuron_sparsity`` is
    the fraction of removable units that are dead (:func:`~prunelib.families.sew.structured.unit_sparsity`).
    Never changes ``model``.
    """
    runs = deployed(model, structured)
    return {
        **size_metrics(model, runs, "fp32"),
        "wer": evaluate_wer(model, processor, dataset),
        "params_deployed": count_parameters(runs),
        "flops": count_flops(runs, latency_input(FLOPS_SECONDS)),
        "neuron_sparsity": unit_sparsity(model),
    }


def latency(
    model: nn.Module,
    cfg: SpeechMeasureConfig,
    processor: Any = None,
    dataset: Sequence[Utterance] = (),
    structured: bool = False,
) -> tuple[float, float]:
    """Mean and std (s) of one forward pass on ``cfg.audio_seconds`` of audio in ``cfg.runtime``.

    ``structured``: the physically shrunk model is timed. ONNX Runtime is parity-checked first
    on the first ``cfg.parity_utterances`` of ``dataset``. Torch's thread count is restored afterwards.
    """
    before = torch.get_num_threads()
    try:
        audios = [u.audio for u in list(dataset)[: cfg.parity_utterances]] if processor is not None else None
        runner = make_ctc_runner(model, cfg.runtime, cfg.threads, audios or None, processor, structured=structured)
        return time_calls(runner, latency_input(cfg.audio_seconds), cfg.runs, cfg.warmup)
    finally:
        torch.set_num_threads(before)


def measure(
    model: nn.Module,
    processor: Any,
    dataset: Sequence[Utterance],
    cfg: SpeechMeasureConfig,
    structured: bool = False,
) -> dict[str, float | int]:
    """:func:`static_metrics` plus ``latency_mean_s`` and ``latency_std_s`` for ``cfg.runtime``."""
    row = static_metrics(model, processor, dataset, structured)
    mean, std = latency(model, cfg, processor, dataset, structured)
    return {**row, "latency_mean_s": mean, "latency_std_s": std}


COLUMNS = (
    "iteration",
    "sparsity",
    "sparsity_model",
    "wer",
    "latency_mean_s",
    "latency_std_s",
    "params_total",
    "params_nonzero",
    "disk_dense_bytes",
    "disk_sparse_bytes",
    "disk_compact_bytes",
    "disk_bound_bytes",
    "params_deployed",
    "flops",
    "neuron_sparsity",
)


def run_sweep(
    model: nn.Module,
    processor: Any,
    dataset: Sequence[Utterance],
    prune_cfg: SpeechPruneConfig = SpeechPruneConfig(),
    measure_cfg: SpeechMeasureConfig | None = SpeechMeasureConfig(),
    train_clips: Sequence[tuple[int, np.ndarray]] | None = None,
    train_cfg: SpeechTrainConfig | None = None,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> pd.DataFrame:
    """Walk ``prune_cfg``'s schedule from ``model`` and measure every iteration: rows 0..N.

    Columns: :data:`COLUMNS` (``latency_*`` are NaN when ``measure_cfg`` is None, i.e. static
    metrics only). ``on_step(k, model)`` is called at each step before measuring (e.g. to save
    checkpoints). ``model`` is pruned in place (weight norm folded first); pass a copy to keep
    it. For ``imp-rewind`` the initial weights come from :func:`initial_weights` of ``train_cfg``.
    """
    schedule = get_schedule(prune_cfg.method)
    initial = initial_weights(train_cfg) if schedule.rewind and train_cfg is not None else None
    steps = iterate_schedule(model, prune_cfg, processor, train_clips, train_cfg, initial)
    rows = []
    for k, current in progress(steps, desc=f"speech {schedule.name}", total=prune_cfg.iterations + 1):
        if on_step is not None:
            on_step(k, current)
        if measure_cfg is None:
            row: dict[str, Any] = {
                **static_metrics(current, processor, dataset, schedule.structured),
                "latency_mean_s": float("nan"),
                "latency_std_s": float("nan"),
            }
        else:
            row = measure(current, processor, dataset, measure_cfg, schedule.structured)
        rows.append({"iteration": k, **row})
    return pd.DataFrame(rows, columns=list(COLUMNS))


#: FSDD test utterances a speech sweep is scored on by default (official test takes 0-4).
FSDD_TEST_COUNT = 200


def fsdd_sweep(
    prune_cfg: SpeechPruneConfig = SpeechPruneConfig(),
    measure_cfg: SpeechMeasureConfig | None = SpeechMeasureConfig(),
    data_root: Path | str | None = None,
    cache_dir: Path | str | None = None,
    train_cfg: SpeechTrainConfig = SpeechTrainConfig(),  # noqa: B008 (frozen)
    test_count: int = FSDD_TEST_COUNT,
    test_seed: int = 0,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> pd.DataFrame:
    """:func:`run_sweep` of the trained FSDD model (``load_speech_model("sew-fsdd")``, cached) on
    ``test_count`` seeded FSDD test utterances; IMP methods retrain on the FSDD train split.

    Raises:
        FileNotFoundError: no data root with ``fsdd/`` (pass ``data_root`` or set ``$PRUNELIB_DATA_DIR``).
    """
    root = Path(data_root) if data_root is not None else default_data_root()
    if root is None:
        raise FileNotFoundError("the FSDD sweep needs FSDD: pass data_root or set PRUNELIB_DATA_DIR")
    model, processor = trained_fsdd_model(train_cfg, data_root=root, cache_dir=cache_dir)
    test = fsdd_utterances(root, "test", test_count, seed=test_seed, cfg=train_cfg.data)
    clips = None
    if get_schedule(prune_cfg.method).retrain:
        recordings = split_fsdd(list_fsdd(dataset_folder(root, "fsdd")), train_cfg.data)["train"]
        clips = load_clips(recordings)
    return run_sweep(model, processor, test, prune_cfg, measure_cfg, clips, train_cfg, on_step)


# --------------------------------------------------------------------------- sensitivity


def wer_sensitivity(
    model: nn.Module,
    processor: Any,
    dataset: Sequence[Utterance],
    levels: Sequence[float] = DEFAULT_LEVELS,
    others: bool = False,
) -> pd.DataFrame:
    """WER with one SEW component group pruned at a time (:func:`prunelib.sweep.sensitivity.sew_groups`).

    Works on a folded copy; ``model`` is not changed. Columns: ``group``, ``sparsity``,
    ``group_sparsity``, ``model_sparsity``, ``wer``.
    """
    work = prepare_model(copy.deepcopy(model))
    return sensitivity(
        work, sew_groups(work, others=others), lambda m: evaluate_wer(m, processor, dataset), levels, metric="wer"
    )
