"""Speech pruning sweeps on a tiny SEW: what is prunable, rows per iteration, IMP, checkpoints, sensitivity."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from prunelib.families.sew.data import Utterance, dataset_folder, join_digits, read_librispeech
from prunelib.families.sew.models import build_processor, build_sew, load_speech_model
from prunelib.families.sew.sweep import (
    COLUMNS,
    SpeechMeasureConfig,
    SpeechPruneConfig,
    fold_weight_norm,
    iterate_schedule,
    linear_and_conv_weights,
    load_sweep_checkpoint,
    prepare_model,
    run_sweep,
    save_speech_model,
    static_metrics,
    wer_sensitivity,
)
from prunelib.families.sew.train import SpeechTrainConfig
from prunelib.families.sew.wer import evaluate_wer
from prunelib.pruning.params import count_parameters
from prunelib.pruning.sparsity import sparsity_report
from prunelib.storage.checkpoint import save_checkpoint
from prunelib.sweep.sensitivity import sew_groups

from .tiny import TINY as TINY_BASE
from .tiny import TINY_DATA, tone_clips, write_fake_fsdd

REPO = Path(__file__).resolve().parents[3]
TINY = dataclasses.replace(TINY_BASE, num_hidden_layers=2, mask_time_prob=0.0, dropout=0.0)
TRAIN_CFG = SpeechTrainConfig(
    arch=TINY,
    data=TINY_DATA,
    steps=5,
    batch_size=2,
)


def tone_utterances(count: int = 4) -> list[Utterance]:
    rng = np.random.default_rng(0)
    clips = tone_clips(0.15)
    out = []
    for i in range(count):
        picks = [clips[j] for j in rng.integers(0, 10, size=2)]
        audio, text = join_digits(picks, rng, TRAIN_CFG.data)
        out.append(Utterance(f"tone-{i}", audio, text))
    return out


def tiny_model(seed: int = 0) -> nn.Module:
    return build_sew(TINY, seed=seed)


# ----------------------------------------------------------------------------- prunable


def test_fold_weight_norm_is_exact_and_makes_the_pos_conv_prunable() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="fold_weight_norm"):
        linear_and_conv_weights(model)
    x = torch.randn(1, 6400, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(input_values=x).logits
    folded = fold_weight_norm(copy.deepcopy(model))
    conv = folded.sew.encoder.pos_conv_embed.conv
    assert type(conv) is nn.Conv1d and list(dict(conv.named_parameters())) == ["weight", "bias"]
    with torch.no_grad():
        assert torch.allclose(folded(input_values=x).logits, want, atol=1e-6)
    assert model.sew.encoder.pos_conv_embed.conv.weight.shape == conv.weight.shape  # original intact
    params = linear_and_conv_weights(folded)
    assert (conv, "weight") in params
    linear_conv = [m for m in folded.modules() if isinstance(m, (nn.Linear, nn.Conv1d))]
    assert len(params) == len(linear_conv) == 3 + 1 + 2 * 6 + 1 + 1  # convs, pos, layers, upsample, head
    names = set(sparsity_report(folded).per_parameter)
    assert "sew.encoder.pos_conv_embed.conv.weight" in names


# ----------------------------------------------------------------------------- sweep


def test_no_retrain_sweep_rows_and_sparsity() -> None:
    model, proc, data = tiny_model(), build_processor(), tone_utterances()
    seen = []
    cfg = SpeechPruneConfig(method="no-retrain", amount=0.5, iterations=3)
    frame = run_sweep(
        model,
        proc,
        data,
        cfg,
        SpeechMeasureConfig(runs=2, warmup=0, audio_seconds=0.3, threads=1),
        on_step=lambda k, m: seen.append((k, sparsity_report(m).sparsity)),
    )
    assert list(frame.columns) == list(COLUMNS)
    assert frame["iteration"].tolist() == [0, 1, 2, 3] == [k for k, _ in seen]
    assert frame["sparsity"].tolist() == [s for _, s in seen]
    for k, s in zip(frame["iteration"], frame["sparsity"]):
        assert s == pytest.approx(1 - 0.5**k, abs=1e-3)
    assert frame["sparsity_model"].between(0, 1).all()  # over every parameter (HF inits biases to 0)
    assert frame["params_total"].nunique() == 1 and frame["params_total"].iloc[0] == count_parameters(model)
    assert frame["params_nonzero"].is_monotonic_decreasing
    assert (frame["latency_mean_s"] > 0).all() and (frame["wer"] >= 0).all()
    assert frame["disk_sparse_bytes"].iloc[-1] < frame["disk_sparse_bytes"].iloc[0]


def test_static_sweep_has_no_timing_and_matches_static_metrics() -> None:
    proc, data = build_processor(), tone_utterances(2)
    frame = run_sweep(tiny_model(), proc, data, SpeechPruneConfig(iterations=1), measure_cfg=None)
    assert frame["latency_mean_s"].isna().all()
    again = prepare_model(tiny_model())
    row = static_metrics(again, proc, data)
    assert frame.iloc[0][list(row)].tolist() == pytest.approx(list(row.values()))


def test_onnxruntime_latency_is_parity_checked() -> None:
    proc, data = build_processor(), tone_utterances(2)
    cfg = SpeechMeasureConfig(
        runtime="onnxruntime", threads=1, runs=2, warmup=0, audio_seconds=0.3, parity_utterances=2
    )
    frame = run_sweep(tiny_model(), proc, data, SpeechPruneConfig(amount=0.3, iterations=1), cfg)
    assert (frame["latency_mean_s"] > 0).all()


def test_imp_finetune_retrains_and_keeps_masks() -> None:
    model, proc = tiny_model(), build_processor()
    cfg = SpeechPruneConfig(method="imp-finetune", amount=0.4, iterations=2, retrain_steps=3, retrain_lr=1e-2)
    with pytest.raises(ValueError, match="retrains"):
        next(iter(iterate_schedule(model, cfg)))
    snapshots = []
    for _k, current in iterate_schedule(model, cfg, proc, tone_clips(0.15), TRAIN_CFG):
        snapshots.append({n: t.detach().clone() for n, t in current.state_dict().items()})
        copy.deepcopy(current)  # no autograd history left on the cached weights
    assert len(snapshots) == 3
    report = sparsity_report(model)
    assert report.sparsity == pytest.approx(1 - 0.6**2, abs=1e-3)  # retraining revived nothing
    key = "sew.encoder.layers.0.feed_forward.intermediate_dense.weight_orig"
    assert not torch.equal(snapshots[1][key], snapshots[2][key])  # weights moved while retraining
    assert not model.training


def test_imp_rewind_rewinds_to_the_seeded_init() -> None:
    proc = build_processor()
    cfg = SpeechPruneConfig(method="imp-rewind", amount=0.5, iterations=1, retrain_steps=0)
    frame = run_sweep(tiny_model(seed=TRAIN_CFG.seed), proc, tone_utterances(2), cfg, None, tone_clips(0.15), TRAIN_CFG)
    assert frame["sparsity"].iloc[1] == pytest.approx(0.5, abs=1e-3)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        SpeechPruneConfig(method="lottery")
    with pytest.raises(ValueError, match="amount"):
        SpeechPruneConfig(amount=1.0)
    with pytest.raises(ValueError, match="runtime"):
        SpeechMeasureConfig(runtime="tflite")
    with pytest.raises(ValueError, match="runs=1"):
        SpeechMeasureConfig(runs=1)


# ----------------------------------------------------------------------------- saving


def test_checkpoint_of_a_step_reloads_into_the_base_model(tmp_path: Path) -> None:
    base, proc, data = tiny_model(), build_processor(), tone_utterances(2)
    paths = {}

    def save(k: int, m: nn.Module) -> None:
        paths[k] = save_checkpoint(m, tmp_path / f"step{k}.safetensors")

    frame = run_sweep(copy.deepcopy(base), proc, data, SpeechPruneConfig(amount=0.5, iterations=2), None, on_step=save)
    loaded = load_sweep_checkpoint(base, paths[2])
    assert sparsity_report(loaded).sparsity == pytest.approx(frame["sparsity"].iloc[2])
    assert evaluate_wer(loaded, proc, data) == frame["wer"].iloc[2]


def test_pruned_model_saved_for_the_hub_path_loads_and_scores_librispeech(tmp_path: Path) -> None:
    """A pruned model saved with its processor loads through load_speech_model(dir), WER end to end."""
    model, proc = prepare_model(tiny_model()), build_processor()
    list(iterate_schedule(model, SpeechPruneConfig(amount=0.5, iterations=1)))
    save_speech_model(model, proc, tmp_path / "pruned")
    loaded, loaded_proc = load_speech_model(tmp_path / "pruned")
    x = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded(input_values=x).logits, model(input_values=x).logits, atol=1e-5)
    zeros = sparsity_report(fold_weight_norm(copy.deepcopy(loaded))).sparsity
    assert zeros == pytest.approx(sparsity_report(model).sparsity)  # zeros stored, weight norm restored
    root = Path(os.environ.get("PRUNELIB_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (root / "librispeech-mini").is_dir():
        pytest.skip(f"librispeech-mini not found under {root} (set PRUNELIB_DATA_DIR)")
    data = read_librispeech(dataset_folder(root, "librispeech-mini"))
    wer = evaluate_wer(loaded, loaded_proc, data)
    assert math.isfinite(wer) and wer == evaluate_wer(model, proc, data)


# ----------------------------------------------------------------------------- sensitivity


def test_sew_groups_cover_the_components() -> None:
    model = prepare_model(tiny_model())
    groups = sew_groups(model)
    assert list(groups) == ["feature_extractor", "attention", "feed_forward", "layer.0", "layer.1"]
    assert len(groups["feature_extractor"]) == 3
    assert len(groups["attention"]) == 8 and len(groups["feed_forward"]) == 4
    assert len(groups["layer.0"]) == 6
    assert {id(m) for m, _ in groups["layer.1"]} == {
        id(m) for m in model.sew.encoder.layers[1].modules() if isinstance(m, nn.Linear)
    }
    more = sew_groups(model, others=True)
    assert list(more)[5:] == ["pos_conv_embed", "upsample", "lm_head"]
    with pytest.raises(ValueError, match="fold_weight_norm"):
        sew_groups(tiny_model(), others=True)
    with pytest.raises(ValueError, match="SEW"):
        sew_groups(nn.Linear(2, 2))


def test_wer_sensitivity_per_group_and_level() -> None:
    model, proc, data = tiny_model(), build_processor(), tone_utterances(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frame = wer_sensitivity(model, proc, data, levels=(0.0, 0.5))
    assert isinstance(frame, pd.DataFrame) and "wer" in frame
    assert len(frame) == 5 * 2
    assert frame.loc[frame["sparsity"] == 0.5, "group_sparsity"].tolist() == pytest.approx([0.5] * 5, abs=1e-3)
    assert frame.loc[frame["sparsity"] == 0.0, "wer"].nunique() == 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_train_config_replacement_is_short() -> None:
    from prunelib.families.sew.sweep import retrain_config

    cfg = retrain_config(TRAIN_CFG, SpeechPruneConfig(retrain_steps=7, retrain_lr=1e-4, retrain_warmup=20, seed=3), 2)
    assert (cfg.steps, cfg.lr, cfg.warmup_steps, cfg.seed) == (7, 1e-4, 7, 5)
    assert (
        dataclasses.replace(
            cfg, steps=TRAIN_CFG.steps, lr=TRAIN_CFG.lr, warmup_steps=TRAIN_CFG.warmup_steps, seed=TRAIN_CFG.seed
        )
        == TRAIN_CFG
    )


@pytest.mark.parametrize("method", ["no-retrain", "imp-finetune"])
def test_fsdd_sweep_end_to_end_on_fake_data(tmp_path: Path, method: str) -> None:
    from prunelib.families.sew.sweep import fsdd_sweep

    root = write_fake_fsdd(tmp_path / "data", speakers=("ann",), takes=7)
    cfg = SpeechPruneConfig(method=method, amount=0.2, iterations=2, retrain_steps=2)
    frame = fsdd_sweep(cfg, None, data_root=root, cache_dir=tmp_path / "cache", train_cfg=TRAIN_CFG, test_count=3)
    assert frame["iteration"].tolist() == [0, 1, 2]
    assert frame["sparsity"].iloc[-1] == pytest.approx(1 - 0.8**2, abs=1e-3)
    with pytest.raises(FileNotFoundError, match="fsdd"):
        fsdd_sweep(cfg, None, data_root=tmp_path, cache_dir=tmp_path / "cache", train_cfg=TRAIN_CFG, test_count=3)
