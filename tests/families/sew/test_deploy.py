"""SEW deployment helpers: weight norm folded exactly and put back, inference copies, saving for the hub path."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunelib.families.sew.data import dataset_folder, read_librispeech
from prunelib.families.sew.deploy import (
    fold_weight_norm,
    inference_copy,
    prepare_model,
    save_speech_model,
    unfold_weight_norm,
)
from prunelib.families.sew.family import SewFamily
from prunelib.families.sew.load import load_speech_model
from prunelib.families.sew.models import build_processor, build_sew
from prunelib.families.sew.wer import evaluate_wer
from prunelib.pruning.criteria import magnitude_prune, named_masks
from prunelib.pruning.sparsity import sparsity_report

from .tiny import TINY

X = torch.randn(1, 6400, generator=torch.Generator().manual_seed(0))
POS = "sew.encoder.pos_conv_embed.conv"


def logits(model: nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return model(input_values=x).logits


def pos_conv(model: nn.Module) -> nn.Module:
    return model.sew.encoder.pos_conv_embed.conv


def pruned_tiny(amount: float = 0.5) -> nn.Module:
    model = prepare_model(build_sew(TINY, seed=0))
    magnitude_prune(SewFamily().prunable(model), amount)
    return model


# ----------------------------------------------------------------------------- fold / unfold


def test_fold_is_exact_and_leaves_a_plain_conv() -> None:
    model = build_sew(TINY, seed=0)
    assert parametrize.is_parametrized(pos_conv(model))
    want, weight = logits(model), pos_conv(model).weight.detach().clone()
    folded = fold_weight_norm(copy.deepcopy(model))
    conv = pos_conv(folded)
    assert type(conv) is nn.Conv1d and list(dict(conv.named_parameters())) == ["weight", "bias"]
    assert isinstance(conv.weight, nn.Parameter) and torch.equal(conv.weight, weight)
    assert torch.equal(logits(folded), want)  # bit for bit: the forward pass used this very tensor
    # the original (whose generated class a deep copy shares) still has its parametrization
    assert parametrize.is_parametrized(pos_conv(model))
    assert f"{POS}.parametrizations.weight.original0" in dict(model.named_parameters())
    assert torch.equal(logits(model), want)


def test_fold_is_a_no_op_without_parametrizations() -> None:
    folded = fold_weight_norm(build_sew(TINY, seed=0))
    before = {k: v.clone() for k, v in folded.state_dict().items()}
    assert fold_weight_norm(folded) is folded
    assert folded.state_dict().keys() == before.keys()
    assert all(torch.equal(v, folded.state_dict()[k]) for k, v in before.items())
    lin = nn.Linear(3, 2)
    assert fold_weight_norm(lin) is lin and list(dict(lin.named_parameters())) == ["weight", "bias"]


def test_unfold_restores_weight_norm_with_the_same_outputs_and_exact_zeros() -> None:
    model = inference_copy(pruned_tiny(0.6))
    conv = pos_conv(model)
    assert sparsity_report(model).per_parameter[f"{POS}.weight"] > 0.1  # the pos conv was pruned too
    zeros = conv.weight == 0
    want = logits(model)
    unfolded = unfold_weight_norm(model)
    assert unfolded is model and parametrize.is_parametrized(pos_conv(model))
    names = set(dict(model.named_parameters()))
    assert {f"{POS}.parametrizations.weight.original0", f"{POS}.parametrizations.weight.original1"} <= names
    assert f"{POS}.weight" not in names
    assert torch.equal(pos_conv(model).weight == 0, zeros)  # pruned zeros stay exactly zero
    torch.testing.assert_close(logits(model), want, atol=1e-6, rtol=0)
    unfold_weight_norm(model)  # already parametrized: a no-op
    assert len(pos_conv(model).parametrizations.weight) == 1
    lin = nn.Linear(3, 2)
    assert unfold_weight_norm(lin) is lin and not parametrize.is_parametrized(lin)


def test_fold_then_unfold_gives_the_state_dict_names_from_pretrained_expects() -> None:
    model = build_sew(TINY, seed=0)
    round_trip = unfold_weight_norm(fold_weight_norm(copy.deepcopy(model)))
    assert round_trip.state_dict().keys() == model.state_dict().keys()
    torch.testing.assert_close(logits(round_trip), logits(model), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- inference copies


def test_prepare_model_folds_in_place_and_switches_to_eval() -> None:
    model = build_sew(TINY, seed=0).train()
    assert prepare_model(model) is model
    assert not model.training and not parametrize.is_parametrized(pos_conv(model))


def test_inference_copy_makes_pruning_permanent_and_leaves_the_model_alone() -> None:
    model = pruned_tiny(0.5).train()
    masks = {k: v.clone() for k, v in named_masks(model).items()}
    want = logits(model.eval())
    model.train()
    copy_ = inference_copy(model)
    assert copy_ is not model and not copy_.training
    assert model.training and named_masks(model).keys() == masks.keys()  # the pruned model is unchanged
    assert not named_masks(copy_) and not any(n.endswith("_orig") for n, _ in copy_.named_parameters())
    assert not parametrize.is_parametrized(pos_conv(copy_))
    assert sparsity_report(copy_).sparsity == pytest.approx(sparsity_report(model).sparsity)
    assert torch.equal(logits(copy_), want)
    with torch.no_grad():  # a real copy: changing it does not touch the model
        for p in copy_.parameters():
            p.zero_()
    assert torch.equal(logits(model.eval()), want)


def test_inference_copy_of_an_unpruned_unfolded_model() -> None:
    model = build_sew(TINY, seed=0)
    dense = inference_copy(model)
    assert parametrize.is_parametrized(pos_conv(model)) and not parametrize.is_parametrized(pos_conv(dense))
    assert torch.equal(logits(dense), logits(model))


# ----------------------------------------------------------------------------- saving


def test_pruned_model_saved_for_the_hub_path_loads_and_scores_librispeech(tmp_path: Path, data_root: Path) -> None:
    """A pruned model saved with its processor loads through load_speech_model(dir), WER end to end."""
    model, proc = pruned_tiny(0.5), build_processor()
    masks = {k: v.clone() for k, v in named_masks(model).items()}
    assert save_speech_model(model, proc, tmp_path / "pruned") == tmp_path / "pruned"
    assert named_masks(model).keys() == masks.keys()  # saving works on a copy
    loaded, loaded_proc = load_speech_model(tmp_path / "pruned")
    x = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(logits(loaded, x), logits(model, x), atol=1e-5, rtol=0)
    assert parametrize.is_parametrized(pos_conv(loaded))  # weight norm restored, as SEWForCTC builds it
    zeros = sparsity_report(fold_weight_norm(copy.deepcopy(loaded))).sparsity
    assert zeros == pytest.approx(sparsity_report(model).sparsity)  # zeros stored
    if not (data_root / "librispeech-mini").is_dir():
        pytest.skip(f"librispeech-mini not found under {data_root} (set PRUNELIB_DATA_DIR)")
    data = read_librispeech(dataset_folder(data_root, "librispeech-mini"), subset=4)
    wer = evaluate_wer(loaded, loaded_proc, data)
    assert math.isfinite(wer) and wer == evaluate_wer(model, proc, data)
