"""The SEW family through the generic pipeline: what it declares, its data, building, retraining, sweeps, sensitivity.

Sweeps run ``sew-mini`` (a few-thousand-parameter random SEW) on a fake FSDD folder, so every stage
(load, schedule, rewind, retrain, static metrics, timing on torch and ONNX Runtime, checkpoints,
cache, sensitivity) runs for real in seconds.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from prunelib.families.contract import Unsupported
from prunelib.families.datadir import DataError
from prunelib.families.registry import get_family
from prunelib.families.sew.data import Utterance, join_digits
from prunelib.families.sew.deploy import prepare_model
from prunelib.families.sew.family import SewData, SewFamily, SewHparams
from prunelib.families.sew.models import SEW_MINI, build_processor, build_sew
from prunelib.families.sew.train import SpeechTrainConfig
from prunelib.pruning.criteria import initial_state, named_masks
from prunelib.pruning.params import count_parameters
from prunelib.pruning.schedules import get_schedule, iterate_schedule
from prunelib.pruning.sparsity import sparsity_report
from prunelib.results.schema import sweep_columns
from prunelib.storage.checkpoint import save_checkpoint
from prunelib.sweep.cache import load_model, prepare_sweep
from prunelib.sweep.loaded import Loaded, load
from prunelib.sweep.metrics import static_metrics
from prunelib.sweep.runner import Timing, run_sweep
from prunelib.sweep.sensitivity import family_sensitivity
from prunelib.sweep.spec import SweepSpec

from .tiny import TINY as TINY_BASE
from .tiny import TINY_DATA, tone_clips, write_fake_fsdd

FAMILY = SewFamily()
TINY = dataclasses.replace(TINY_BASE, num_hidden_layers=2, mask_time_prob=0.0, dropout=0.0)
TRAIN_CFG = SpeechTrainConfig(arch=TINY, data=TINY_DATA, steps=5, batch_size=2)
FAST = Timing(runs=2, warmup=0, threads=1)
FFN = "sew.encoder.layers.0.feed_forward.intermediate_dense.weight"


def tone_utterances(count: int = 2) -> list[Utterance]:
    rng = np.random.default_rng(0)
    clips = tone_clips(0.15)
    out = []
    for i in range(count):
        picks = [clips[j] for j in rng.integers(0, 10, size=2)]
        out.append(Utterance(f"tone-{i}", *join_digits(picks, rng, TINY_DATA)))
    return out


def tone_data(count: int = 2) -> SewData:
    return SewData(build_processor(), tone_utterances(count), tone_clips(0.15))


@pytest.fixture(scope="module")
def fsdd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake FSDD: one speaker, 12 takes per digit (takes 0-4 test, 5 of 5-11 dev, 2 train)."""
    return write_fake_fsdd(tmp_path_factory.mktemp("data"), speakers=("ann",), takes=12)


def spec_of(root: Path, method: str = "no-retrain", amount: float = 0.5, iterations: int = 2) -> SweepSpec:
    return SweepSpec("sew", "fsdd", "sew-mini", method, amount, iterations, quick=True, data_dir=str(root))


@pytest.fixture(scope="module")
def loaded(fsdd_root: Path) -> Loaded:
    """sew-mini's data (3 scored utterances, 8 training clips) and short retraining. Do not mutate."""
    out = load(spec_of(fsdd_root))
    out.data = FAMILY.subset(out.data, 8, 3, seed=0)
    out.hparams = SewHparams(retrain_steps=2, retrain_lr=1e-2, base=TRAIN_CFG)
    return out


# ----------------------------------------------------------------------------- what the family declares


def test_the_family_declares_wer_its_data_models_and_what_it_runs_on() -> None:
    family = get_family("sew")
    assert isinstance(family, SewFamily) and family.name == "sew"
    assert family.metric.name == "wer" and not family.metric.higher_is_better
    assert family.metric.in_range(0.0) and family.metric.in_range(1.5) and not family.metric.in_range(-0.1)
    assert family.metric.loss(0.2, 0.3) == pytest.approx(0.1)  # a higher WER is worse
    assert family.datasets == ("fsdd", "librispeech") and family.models == ("sew-fsdd", "sew-tiny", "sew-mini")
    assert family.default_model("fsdd") == "sew-fsdd" and family.default_pair == ("fsdd", "sew-fsdd")
    assert family.default_model("librispeech") == "hf:asapp/sew-tiny-100k-ft-ls100h"  # written as a hub id
    assert family.smoke_pair == ("fsdd", "sew-mini") and not family.batched
    assert family.structured and family.supports(method="structured-imp-rewind") == ""
    assert "int8" in family.supports(precision="int8") and "torch-sparse" in family.supports(runtime="torch-sparse")
    described = family.describe()
    assert described["metric"] == "wer (lower is better)" and "structured-no-retrain" in described["methods"]
    assert described["structured"] == "Torch-Pruning (feed-forward units, conv channels), own (heads)"


def test_check_model_takes_presets_directories_and_hub_ids(tmp_path: Path) -> None:
    for model in ("sew-fsdd", "sew-tiny", "sew-mini", str(tmp_path), "asapp/sew-tiny-100k-ft-ls100h"):
        FAMILY.check_model(model)
    FAMILY.check_model("hf:asapp/sew-tiny-100k-ft-ls100h@1a2b3c")
    with pytest.raises(ValueError, match=r"'hf:asapp/sew@'.*hf:org/name"):
        FAMILY.check_model("hf:asapp/sew@")
    for bad in ("resnet18", "./no-such-dir", "/no/such/dir", "a/b/c"):
        with pytest.raises(ValueError, match=r"no model .*sew-mini"):
            FAMILY.check_model(bad)
    with pytest.raises(ValueError, match="'mnist5k'"):
        FAMILY.check_dataset("mnist5k")


# ----------------------------------------------------------------------------- data


def test_data_needs_a_root_and_names_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--data-dir"):
        FAMILY.load_data("fsdd", "sew-mini", None, 0, True)
    with pytest.raises(FileNotFoundError, match="fsdd"):
        FAMILY.load_data("fsdd", "sew-mini", tmp_path, 0, True)
    with pytest.raises(DataError, match="LibriSpeech"):
        FAMILY.load_data("librispeech", "sew-mini", tmp_path, 0, True)


def test_fsdd_data_is_seeded_and_subsets_are_seeded(fsdd_root: Path) -> None:
    data = FAMILY.load_data("fsdd", "sew-mini", fsdd_root, 0, quick=True)
    assert len(data.utterances) == 40 and len(data.train_clips) == 20 and data.root == fsdd_root
    assert all(u.text and len(u.audio) > 0 for u in data.utterances)
    again = FAMILY.load_data("fsdd", "sew-mini", fsdd_root, 0, quick=True)
    other = FAMILY.load_data("fsdd", "sew-mini", fsdd_root, 1, quick=True)
    assert FAMILY.data_fingerprint(data) == FAMILY.data_fingerprint(again) != FAMILY.data_fingerprint(other)
    small = FAMILY.subset(data, 5, 3, seed=0)
    assert [u.id for u in small.utterances] == [u.id for u in data.utterances[:3]] and len(small.train_clips) == 5
    assert FAMILY.data_fingerprint(small) == FAMILY.data_fingerprint(FAMILY.subset(data, 5, 3, seed=0))
    assert FAMILY.data_fingerprint(small) != FAMILY.data_fingerprint(FAMILY.subset(data, 5, 3, seed=1))
    assert FAMILY.subset(data, None, None, seed=0).utterances == data.utterances


# ----------------------------------------------------------------------------- building and prunable weights


def test_build_is_seeded_and_every_call_is_a_fresh_copy() -> None:
    data = tone_data()
    a, b = FAMILY.build("sew-mini", data, seed=0), FAMILY.build("sew-mini", data, seed=0)
    assert a is not b and not a.training
    want = build_sew(SEW_MINI, seed=0).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in a.state_dict().items())  # the seeded random init
    with torch.no_grad():
        next(a.parameters()).add_(1.0)  # changing one build leaves the next alone
    assert all(torch.equal(v, want[k]) for k, v in FAMILY.build("sew-mini", data, seed=0).state_dict().items())
    c = FAMILY.build("sew-mini", data, seed=1).state_dict()
    assert not torch.equal(c["lm_head.weight"], want["lm_head.weight"])


def test_prepare_folds_weight_norm_and_makes_the_pos_conv_prunable() -> None:
    model = build_sew(TINY, seed=0)
    x = torch.randn(1, 6400, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(input_values=x).logits
    prepared = FAMILY.prepare(copy.deepcopy(model))
    conv = prepared.sew.encoder.pos_conv_embed.conv
    assert type(conv) is nn.Conv1d and not prepared.training
    with torch.no_grad():
        assert torch.equal(prepared(input_values=x).logits, want)
    params = FAMILY.prunable(prepared)
    assert (conv, "weight") in params
    linear_conv = [m for m in prepared.modules() if isinstance(m, (nn.Linear, nn.Conv1d))]
    assert len(params) == len(linear_conv) == 3 + 1 + 2 * 6 + 1 + 1  # convs, pos, layers, upsample, head
    assert all(name == "weight" for _, name in params)
    assert "sew.encoder.pos_conv_embed.conv.weight" in sparsity_report(prepared).per_parameter


# ----------------------------------------------------------------------------- training


def test_dense_training_is_a_no_op_and_retraining_needs_training_clips() -> None:
    model = prepare_model(build_sew(TINY, seed=0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    FAMILY.train(model, tone_data(), SewHparams(base=TRAIN_CFG), 0, "dense")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    no_clips = SewData(build_processor(), tone_utterances())
    with pytest.raises(Unsupported, match="FSDD training recordings"):
        FAMILY.train(model, no_clips, SewHparams(base=TRAIN_CFG), 0, "retrain")


def test_retraining_is_a_short_run_of_the_base_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import prunelib.families.sew.train as train_module

    seen = []
    monkeypatch.setattr(train_module, "train_ctc", lambda model, proc, clips, cfg, desc="": seen.append((cfg, clips)))
    data = tone_data()
    hparams = SewHparams(retrain_steps=7, retrain_lr=1e-4, retrain_warmup=20, base=TRAIN_CFG)
    FAMILY.train(prepare_model(build_sew(TINY, seed=0)), data, hparams, 5, "retrain")
    ((cfg, clips),) = seen
    assert (cfg.steps, cfg.lr, cfg.warmup_steps, cfg.seed) == (7, 1e-4, 7, 5)  # warm-up capped at the steps
    restored = dataclasses.replace(
        cfg, steps=TRAIN_CFG.steps, lr=TRAIN_CFG.lr, warmup_steps=TRAIN_CFG.warmup_steps, seed=TRAIN_CFG.seed
    )
    assert restored == TRAIN_CFG and clips == data.train_clips
    FAMILY.train(prepare_model(build_sew(TINY, seed=0)), data, SewHparams(), 0, "retrain")
    assert seen[1][0].arch == SpeechTrainConfig().arch  # no base: the default training config


def test_imp_finetune_retrains_and_keeps_masks() -> None:
    model, data = prepare_model(build_sew(TINY, seed=0)), tone_data()
    hparams = SewHparams(retrain_steps=3, retrain_lr=1e-2, base=TRAIN_CFG)
    steps = iterate_schedule(
        FAMILY, model, initial_state(model), data, hparams, get_schedule("imp-finetune"), 0.4, 2, seed=0
    )
    snapshots = []
    for _k, current in steps:
        snapshots.append({n: t.detach().clone() for n, t in current.state_dict().items()})
        copy.deepcopy(current)  # no autograd history left on the cached weights
    assert len(snapshots) == 3
    assert sparsity_report(model, FAMILY.prunable(model)).sparsity == pytest.approx(1 - 0.6**2, abs=1e-3)
    key = FFN.replace(".weight", ".weight_orig")
    assert not torch.equal(snapshots[1][key], snapshots[2][key])  # weights moved while retraining
    masks = named_masks(model)
    pruned = model.sew.encoder.layers[0].feed_forward.intermediate_dense.weight[masks[FFN] == 0]
    assert pruned.numel() > 0 and torch.all(pruned == 0)  # retraining revived nothing
    assert not model.training


# ----------------------------------------------------------------------------- sweeps


def test_no_retrain_sweep_rows_and_sparsity(fsdd_root: Path, loaded: Loaded) -> None:
    spec = spec_of(fsdd_root, iterations=3)
    seen = []
    frame, init = run_sweep(
        spec, loaded, FAST, on_step=lambda k, m: seen.append((k, sparsity_report(m, FAMILY.prunable(m)).sparsity))
    )
    assert list(frame.columns) == list(sweep_columns("wer")) and frame.attrs["metric"] == FAMILY.metric
    assert frame["iteration"].tolist() == [0, 1, 2, 3] == [k for k, _ in seen]
    assert frame["sparsity"].tolist() == pytest.approx([s for _, s in seen])
    for k, s in zip(frame["iteration"], frame["sparsity"]):
        assert s == pytest.approx(1 - 0.5**k, abs=1e-3)
    assert frame["sparsity_model"].between(0, 1).all()
    assert frame["params_total"].nunique() == 1
    assert frame["params_total"].iloc[0] == count_parameters(loaded.fresh(spec))
    assert frame["params_nonzero"].is_monotonic_decreasing
    assert (frame["latency_mean_s"] > 0).all() and (frame["wer"] >= 0).all() and (frame["precision"] == "fp32").all()
    assert frame["neuron_sparsity"].iloc[0] == 0 and frame["neuron_sparsity"].is_monotonic_increasing
    assert frame["disk_sparse_bytes"].iloc[-1] < frame["disk_sparse_bytes"].iloc[0]
    fresh = initial_state(loaded.fresh(spec))
    assert init.keys() == fresh.keys() and all(torch.equal(init[k], fresh[k]) for k in init)
    row = static_metrics(FAMILY, loaded.fresh(spec), loaded.data)  # iteration 0 is the model as built
    assert frame.iloc[0][list(row)].tolist() == pytest.approx(list(row.values()))


def test_onnxruntime_structured_sweep_is_parity_checked_and_shrinks(fsdd_root: Path, loaded: Loaded) -> None:
    spec = spec_of(fsdd_root, "structured-no-retrain", 0.5, 2)
    frame, _ = run_sweep(spec, loaded, dataclasses.replace(FAST, runtime="onnxruntime"))
    assert (frame["latency_mean_s"] > 0).all()
    assert frame["neuron_sparsity"].iloc[0] == 0 < frame["neuron_sparsity"].iloc[1] < frame["neuron_sparsity"].iloc[2]
    assert frame["params_deployed"].is_monotonic_decreasing and frame["params_deployed"].nunique() == 3
    assert frame["flops"].iloc[2] < frame["flops"].iloc[0]


def test_imp_rewind_sweep_rewinds_to_the_built_weights(fsdd_root: Path, loaded: Loaded) -> None:
    spec = spec_of(fsdd_root, "imp-rewind", 0.5, 1)
    models = {}
    frame, init = run_sweep(spec, loaded, FAST, on_step=lambda k, m: models.setdefault(k, copy.deepcopy(m)))
    assert frame["sparsity"].iloc[1] == pytest.approx(0.5, abs=1e-3)
    built = initial_state(loaded.fresh(spec))
    assert all(torch.equal(init[k], built[k]) for k in built)
    assert not torch.equal(models[1].state_dict()[FFN.replace(".weight", ".weight_orig")], built[FFN])  # retrained
    # starting from other initial weights starts (and rewinds) there
    other = initial_state(FAMILY.prepare(FAMILY.build("sew-mini", loaded.data, seed=7)))
    _, init2 = run_sweep(dataclasses.replace(spec, iterations=0), loaded, FAST, initial=other)
    assert all(torch.equal(init2[k], other[k]) for k in other)


def test_checkpoint_of_a_step_reloads_into_a_fresh_model(fsdd_root: Path, loaded: Loaded, tmp_path: Path) -> None:
    spec = spec_of(fsdd_root, "no-retrain", 0.5, 2)
    paths = {}

    def save(k: int, m: nn.Module) -> None:
        paths[k] = save_checkpoint(m, tmp_path / f"step{k}.safetensors")

    frame, _ = run_sweep(spec, loaded, FAST, on_step=save)
    model = loaded.checkpoint(spec, paths[2])
    assert sparsity_report(model, FAMILY.prunable(model)).sparsity == pytest.approx(frame["sparsity"].iloc[2])
    assert FAMILY.evaluate(model, loaded.data)["wer"] == frame["wer"].iloc[2]


def test_cached_structured_sweep_is_built_once_and_reloads(fsdd_root: Path, loaded: Loaded, tmp_path: Path) -> None:
    spec = spec_of(fsdd_root, "structured-no-retrain", 0.5, 2)
    artifacts = prepare_sweep(spec, loaded, tmp_path / "cache")
    assert artifacts.metrics["iteration"].tolist() == [0, 1, 2]
    latency = {"latency_mean_s", "latency_std_s", "latency_median_s", "latency_iqr_s"}
    assert set(sweep_columns("wer")) - set(artifacts.metrics.columns) == latency
    stamp = (artifacts.folder / "metrics.csv").stat().st_mtime_ns
    again = prepare_sweep(spec, loaded, tmp_path / "cache")
    assert again.folder == artifacts.folder and (again.folder / "metrics.csv").stat().st_mtime_ns == stamp
    model = load_model(artifacts, loaded, 2)
    row = static_metrics(FAMILY, model, loaded.data, structured=True)
    assert artifacts.row(2)["wer"] == pytest.approx(row["wer"])
    assert artifacts.row(2)["params_deployed"] == row["params_deployed"] < artifacts.row(0)["params_deployed"]


@pytest.mark.parametrize("method", ["no-retrain", "imp-finetune"])
def test_fsdd_sweep_end_to_end_on_fake_data(fsdd_root: Path, loaded: Loaded, method: str) -> None:
    spec = spec_of(fsdd_root, method, 0.2, 2)
    frame, _ = run_sweep(spec, loaded, FAST)
    assert frame["iteration"].tolist() == [0, 1, 2]
    assert frame["sparsity"].iloc[-1] == pytest.approx(1 - 0.8**2, abs=1e-3)
    assert all(math.isfinite(w) for w in frame["wer"])


def test_spec_and_timing_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown method"):
        spec_of(tmp_path, "lottery")
    with pytest.raises(ValueError, match="amount"):
        spec_of(tmp_path, amount=1.0)
    with pytest.raises(ValueError, match="runtime"):
        Timing(runtime="tflite")
    with pytest.raises(ValueError, match="runs"):
        Timing(runs=1)
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        load(SweepSpec("sew", "fsdd", "sew-mini", "no-retrain", 0.5, 1, data_dir=str(tmp_path / "nope")))
    with pytest.raises(DataError, match="fsdd") as info:  # the reader's FileNotFoundError, as a DataError
        load(spec_of(tmp_path))
    assert isinstance(info.value.__cause__, FileNotFoundError)


# ----------------------------------------------------------------------------- sensitivity


def test_wer_sensitivity_per_group_and_level() -> None:
    model, data = build_sew(TINY, seed=0), tone_data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frame = family_sensitivity(FAMILY, model, data, levels=(0.0, 0.5))
    assert list(frame.columns) == ["group", "sparsity", "group_sparsity", "model_sparsity", "wer"]
    assert frame.attrs["metric"] == FAMILY.metric
    groups = ["feature_extractor", "attention", "feed_forward", "layer.0", "layer.1"]
    assert frame["group"].tolist() == [g for g in groups for _ in range(2)]
    assert frame.loc[frame["sparsity"] == 0.5, "group_sparsity"].tolist() == pytest.approx([0.5] * 5, abs=1e-3)
    assert frame.loc[frame["sparsity"] == 0.0, "wer"].nunique() == 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # unfolded original untouched
