"""Structured pruning of SEW: which units may go (engine groups and hand-written heads), the rule, masks, exact shrinking."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from prunelib.deploy.runtimes import make_runner
from prunelib.families.sew.data import Utterance, join_digits
from prunelib.families.sew.deploy import prepare_model
from prunelib.families.sew.family import SewData, SewFamily, SewHparams
from prunelib.families.sew.models import SEW_MINI, build_processor, build_sew
from prunelib.families.sew.structured import (
    alive_heads,
    engine_roots,
    head_norms,
    head_prune,
    shrink_sew,
    structure,
    structured_prune_step,
    unit_counts,
)
from prunelib.families.sew.train import SpeechTrainConfig
from prunelib.pruning import structured as engine
from prunelib.pruning.criteria import initial_state, named_masks
from prunelib.pruning.schedules import get_schedule, iterate_schedule
from prunelib.pruning.structured import UnitRule, count_to_prune
from prunelib.sweep.metrics import static_metrics

from .tiny import TINY as TINY_BASE
from .tiny import TINY_DATA, tone_clips

#: Two transformer layers with four heads of 8, and four convs: conv channels of layers 1 and 2 are removable.
TINY = dataclasses.replace(
    TINY_BASE,
    num_hidden_layers=2,
    num_attention_heads=4,
    mask_time_prob=0.0,
    dropout=0.0,
    conv_dim=(8, 16, 16, 32),
    conv_stride=(5, 4, 2, 8),
    conv_kernel=(10, 4, 3, 8),
)
TRAIN_CFG = SpeechTrainConfig(arch=TINY, data=TINY_DATA, steps=3, batch_size=2)
AUDIO = torch.randn(2, 9600, generator=torch.Generator().manual_seed(0))
FAMILY = SewFamily()


def tiny(seed: int = 0) -> nn.Module:
    return prepare_model(build_sew(TINY, seed=seed))


def logits(model: nn.Module, x: torch.Tensor = AUDIO) -> torch.Tensor:
    with torch.no_grad():
        return model(input_values=x).logits


# ----------------------------------------------------------------------------- which units


def test_units_are_inner_conv_channels_heads_and_feed_forward_units() -> None:
    assert FAMILY.units_remaining(tiny()) == {
        "feature_extractor.conv_layers.1": 16,
        "feature_extractor.conv_layers.2": 16,
        "encoder.layers.0.attention": 4,
        "encoder.layers.0.feed_forward": 64,
        "encoder.layers.1.attention": 4,
        "encoder.layers.1.feed_forward": 64,
    }


def test_the_engine_sees_exactly_the_feed_forward_and_inner_conv_groups() -> None:
    model = tiny()
    names = {id(m): n for n, m in model.named_modules()}
    roots = {name: names[id(m)] for name, m in engine_roots(model).items()}
    assert roots == {
        "feature_extractor.conv_layers.1": "sew.feature_extractor.conv_layers.1.conv",
        "feature_extractor.conv_layers.2": "sew.feature_extractor.conv_layers.2.conv",
        "encoder.layers.0.feed_forward": "sew.encoder.layers.0.feed_forward.intermediate_dense",
        "encoder.layers.1.feed_forward": "sew.encoder.layers.1.feed_forward.intermediate_dense",
    }
    st = FAMILY.structure(model)
    assert st.example.shape[0] == 1 and st.example.dim() == 2  # a short clip
    assert set(engine.unit_counts(model, st)) == set(roots.values())
    ignored = {names[id(m)] for m in st.ignored}
    per_layer = ("q_proj", "k_proj", "v_proj", "out_proj")
    assert ignored == {  # the hidden size, the upsample reshape, conv 0 (GroupNorm), the last conv, attention
        "lm_head",
        "sew.encoder.upsample.projection",
        "sew.encoder.pos_conv_embed.conv",
        "sew.feature_extractor.conv_layers.0.conv",
        "sew.feature_extractor.conv_layers.3.conv",
        *(f"sew.encoder.layers.{i}.attention.{p}" for i in range(2) for p in per_layer),
        *(f"sew.encoder.layers.{i}.feed_forward.output_dense" for i in range(2)),
    }


def test_a_step_masks_only_feed_forward_pairs_inner_convs_and_head_rows() -> None:
    model = tiny()
    structured_prune_step(model, 0.5)
    layers = [f"sew.encoder.layers.{i}" for i in range(2)]
    assert set(named_masks(model)) == {
        *(f"sew.feature_extractor.conv_layers.{i}.conv.weight" for i in (1, 2, 3)),  # conv 3: input channels
        *(
            f"{layer}.feed_forward.{p}"
            for layer in layers
            for p in ("intermediate_dense.weight", "intermediate_dense.bias", "output_dense.weight")
        ),
        *(
            f"{layer}.attention.{p}.{t}"
            for layer in layers
            for p in ("q_proj", "k_proj", "v_proj")
            for t in ("weight", "bias")
        ),
    }
    ffn = model.sew.encoder.layers[0].feed_forward
    rows = ffn.intermediate_dense.weight_mask.any(dim=1)
    assert int(rows.sum()) == 32
    assert torch.equal(ffn.intermediate_dense.bias_mask.bool(), rows)
    assert torch.equal(ffn.output_dense.weight_mask.bool(), rows.expand(32, 64))  # the matching columns
    convs = model.sew.feature_extractor.conv_layers
    kept = convs[1].conv.weight_mask.flatten(1).any(dim=1)
    assert int(kept.sum()) == 8 and torch.equal(convs[2].conv.weight_mask.transpose(0, 1).flatten(1).any(dim=1), kept)


def test_layer_norm_layout_has_no_removable_conv_channels() -> None:
    model = prepare_model(build_sew(dataclasses.replace(TINY, feat_extract_norm="layer"), seed=0))
    assert list(engine_roots(model)) == ["encoder.layers.0.feed_forward", "encoder.layers.1.feed_forward"]
    assert not any(name.startswith("feature_extractor") for name in FAMILY.units_remaining(model))
    structured_prune_step(model, 0.5)
    assert not any("conv_layers" in name for name in named_masks(model))


def test_non_sew_models_and_activations_that_do_not_keep_zero_are_rejected() -> None:
    with pytest.raises(TypeError, match="SEW"):
        engine_roots(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="SEW"):
        structure(nn.Linear(2, 2))
    model = tiny()
    model.sew.encoder.layers[1].feed_forward.intermediate_act_fn = nn.Sigmoid()
    with pytest.raises(ValueError, match="encoder.layers.1.feed_forward.*does not map 0 to 0"):
        structured_prune_step(model, 0.5)


# ----------------------------------------------------------------------------- the rule


def test_head_pruning_removes_the_lowest_norm_heads_with_their_biases() -> None:
    model = tiny()
    attn = model.sew.encoder.layers[0].attention
    with torch.no_grad():  # make head 2 the weakest, head 0 the next
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight[16:24] *= 0.01
            proj.weight[0:8] *= 0.1
            proj.bias.fill_(0.5)
        attn.out_proj.weight[:, 16:24] *= 0.01
        attn.out_proj.weight[:, 0:8] *= 0.1
    norms = head_norms(attn)
    assert int(norms.argmin()) == 2
    head_prune(attn, 0.5)
    assert alive_heads(attn).tolist() == [False, True, False, True]
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
        rows_alive = proj.weight.ne(0).any(dim=1)
        assert rows_alive.tolist() == [False] * 8 + [True] * 8 + [False] * 8 + [True] * 8
        assert proj.bias[0:8].eq(0).all() and proj.bias[8:16].eq(0.5).all()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(0.05, 0.95), min_size=1, max_size=4))
def test_each_step_removes_count_to_prune_of_every_groups_alive_units(amounts: list[float]) -> None:
    model = tiny()
    before, previous = FAMILY.units_remaining(model), named_masks(model)
    for amount in amounts:
        structured_prune_step(model, amount)
        now = FAMILY.units_remaining(model)
        for name, n in before.items():
            assert now[name] == n - count_to_prune(amount, n), name
        masks = named_masks(model)
        for name, mask in previous.items():  # masks only ever lose entries
            assert torch.all(masks[name] <= mask), name
        before, previous = now, masks
    assert all(n >= 1 for n in before.values())
    totals = {name: total for name, (_, total) in unit_counts(model).items()}
    assert set(totals.values()) == {16, 4, 64}  # conv channels, heads, feed-forward units
    assert FAMILY.unit_sparsity(model) == pytest.approx(1 - sum(before.values()) / sum(totals.values()))


def test_a_non_default_rule_ranks_the_engines_units_and_heads_stay_l2_per_layer() -> None:
    model = tiny()
    ff = model.sew.encoder.layers[1].feed_forward
    with torch.no_grad():  # 30 of layer 1's feed-forward units are far weaker: a global ranking takes them all
        ff.intermediate_dense.weight[:30] *= 1e-3
        ff.intermediate_dense.bias[:30] *= 1e-3
        ff.output_dense.weight[:, :30] *= 1e-3
    FAMILY.structured_step(model, 0.25, 0, UnitRule(scope="global"))
    now = FAMILY.units_remaining(model)
    assert now["encoder.layers.0.attention"] == now["encoder.layers.1.attention"] == 3  # 4 - round(0.25 * 4)
    assert sum(n for name, n in now.items() if "attention" not in name) == 160 - 40  # 16 + 16 + 64 + 64, together
    assert now["encoder.layers.1.feed_forward"] <= 64 - 30 < 64 - count_to_prune(0.25, 64)  # not 16 per layer


# ----------------------------------------------------------------------------- shrinking


def test_shrunk_model_is_smaller_and_gives_the_same_logits() -> None:
    model = tiny()
    for _ in range(2):
        structured_prune_step(model, 0.5)
    want = logits(model)
    small = shrink_sew(model)
    assert torch.equal(logits(model), want)  # the pruned model is not changed
    torch.testing.assert_close(logits(small), want, atol=1e-5, rtol=0)
    layer = small.sew.encoder.layers[0]
    assert layer.feed_forward.intermediate_dense.out_features == 16
    assert layer.feed_forward.output_dense.in_features == 16
    assert layer.attention.q_proj.out_features == layer.attention.out_proj.in_features == 8  # one head of 8
    convs = small.sew.feature_extractor.conv_layers
    assert [c.conv.out_channels for c in convs] == [8, 4, 4, 32]
    assert [c.conv.in_channels for c in convs] == [1, 8, 4, 4]
    assert not named_masks(small)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters()) // 2


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_sew_mini_shrinks_exactly_with_heads_feed_forward_units_and_conv_channels_pruned(norm: str) -> None:
    """The engine's shrink, then the heads': the masked model's logits, bit for bit, even with peaked attention."""
    arch = dataclasses.replace(SEW_MINI, feat_extract_norm=norm)  # the preset is "group"
    model = prepare_model(build_sew(arch, seed=0))
    with torch.no_grad():  # peaked attention (mean max probability ~0.8): merged or misplaced heads would show
        for layer in model.sew.encoder.layers:
            layer.attention.q_proj.weight.mul_(30)
            layer.attention.k_proj.weight.mul_(30)
    x = torch.randn(1, 16000, generator=torch.Generator().manual_seed(1))
    for amount in (0.3, 0.5):
        FAMILY.structured_step(model, amount, 0)
    counts = unit_counts(model)
    assert all(alive < total for alive, total in counts.values())  # every kind lost units
    assert any(name.startswith("feature_extractor") for name in counts) == (norm == "group")
    small = FAMILY.shrink(model)
    torch.testing.assert_close(logits(small, x), logits(model, x), atol=0, rtol=0)
    layer = small.sew.encoder.layers[0]
    assert layer.attention.num_heads == 1 and layer.attention.q_proj.out_features == 16
    assert layer.feed_forward.intermediate_dense.out_features == counts["encoder.layers.0.feed_forward"][0]
    if norm == "group":
        conv = small.sew.feature_extractor.conv_layers[1]
        assert conv.conv.out_channels == conv.out_conv_dim == counts["feature_extractor.conv_layers.1"][0] < 16


def test_shrinking_a_dense_model_changes_nothing_and_a_dead_group_keeps_one_unit() -> None:
    model = tiny()
    torch.testing.assert_close(logits(shrink_sew(model)), logits(model), atol=0, rtol=0)
    ff = model.sew.encoder.layers[1].feed_forward
    with torch.no_grad():  # dead: every weight coupled to the units is zero (their rows, biases and columns)
        ff.intermediate_dense.weight.zero_()
        ff.intermediate_dense.bias.zero_()
        ff.output_dense.weight.zero_()
    small = shrink_sew(model)
    assert small.sew.encoder.layers[1].feed_forward.intermediate_dense.out_features == 1
    torch.testing.assert_close(logits(small), logits(model), atol=1e-5, rtol=0)


def test_shrinking_folds_weight_norm_on_the_copy_as_inference_copy_does() -> None:
    model = build_sew(TINY, seed=0).eval()  # weight norm not folded (no prepare)
    small = shrink_sew(model)
    assert parametrize.is_parametrized(model.sew.encoder.pos_conv_embed.conv)  # the original keeps it
    assert not parametrize.is_parametrized(small.sew.encoder.pos_conv_embed.conv) and not small.training
    torch.testing.assert_close(logits(small), logits(model), atol=0, rtol=0)


def test_shrunk_model_exports_to_onnx_with_parity_against_the_masked_model() -> None:
    model, proc = tiny(), build_processor()
    structured_prune_step(model, 0.6)
    data = SewData(proc, [Utterance("a", AUDIO[0].numpy(), "ONE"), Utterance("b", AUDIO[1, :7000].numpy(), "TWO")])
    # make_runner parity-checks the shrunk graph (logits and transcript) against the shrunk torch model
    runner = make_runner(FAMILY, model, data, "onnxruntime", threads=1, structured=True)
    torch.testing.assert_close(torch.as_tensor(runner(AUDIO[:1])), logits(model, AUDIO[:1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        torch.as_tensor(runner(AUDIO[1:, :7000])), logits(model, AUDIO[1:, :7000]), atol=1e-4, rtol=0
    )
    deployed = FAMILY.deploy(model, structured=True)
    assert deployed.sew.encoder.layers[0].attention.num_heads == 2  # the family deploys the shrunk model
    assert sum(p.numel() for p in deployed.parameters()) < sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- schedules


def tone_utterances(count: int = 2) -> list[Utterance]:
    rng = np.random.default_rng(0)
    clips = tone_clips(0.15)
    return [Utterance(f"tone-{i}", *join_digits([clips[1], clips[2]], rng, TINY_DATA)) for i in range(count)]


def tone_data() -> SewData:
    return SewData(build_processor(), tone_utterances(), tone_clips(0.15))


def test_structured_imp_finetune_retrains_keeps_units_dead_and_still_shrinks_exactly() -> None:
    model, data = tiny(), tone_data()
    hparams = SewHparams(retrain_steps=3, retrain_lr=1e-2, base=TRAIN_CFG)
    schedule = get_schedule("structured-imp-finetune")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    counts, moved = [], []
    steps = iterate_schedule(FAMILY, model, initial_state(model), data, hparams, schedule, 0.5, 2, seed=0)
    for _k, current in steps:
        counts.append(FAMILY.units_remaining(current)["encoder.layers.0.feed_forward"])
        torch.testing.assert_close(logits(shrink_sew(current)), logits(current), atol=1e-5, rtol=0)
        moved.append(not torch.equal(current.state_dict()[OUT_PROJ], before[OUT_PROJ]))
    assert counts == [64, 32, 16]  # retraining revived no unit
    assert moved == [False, True, True]  # and it did retrain
    assert not model.training


OUT_PROJ = "sew.encoder.layers.0.attention.out_proj.weight"


def test_structured_imp_rewind_rewinds_survivors_to_the_models_initial_weights() -> None:
    """sew-mini is built from its seed: IMP rewinds the surviving units to exactly that random init."""
    data = tone_data()
    model = FAMILY.prepare(FAMILY.build("sew-mini", data, seed=3))
    initial = initial_state(model)
    again = initial_state(FAMILY.prepare(FAMILY.build("sew-mini", data, seed=3)))
    other = initial_state(FAMILY.prepare(FAMILY.build("sew-mini", data, seed=4)))
    assert all(torch.equal(initial[k], again[k]) for k in initial)  # the seed fixes the init
    assert not torch.equal(initial[OUT_PROJ], other[OUT_PROJ])
    with torch.no_grad():  # move the weights away from init, as training would
        for p in model.parameters():
            p.add_(0.1)
    hparams = SewHparams(retrain_steps=0, base=TRAIN_CFG)
    schedule = get_schedule("structured-imp-rewind")
    *_, (k, pruned) = iterate_schedule(FAMILY, model, initial, data, hparams, schedule, 0.5, 1, seed=0)
    assert k == 1
    layer = pruned.sew.encoder.layers[0]
    for name, module, dim in (
        ("attention.v_proj", layer.attention.v_proj, 1),  # heads: by hand
        ("feed_forward.intermediate_dense", layer.feed_forward.intermediate_dense, 1),  # the engine's rows
        ("feed_forward.output_dense", layer.feed_forward.output_dense, 0),  # and the matching columns
    ):
        want = initial[f"sew.encoder.layers.0.{name}.weight"] * module.weight_mask
        assert torch.equal(module.weight, want), name
        assert 0 < int(module.weight_mask.any(dim=dim).sum()) < module.weight_mask.shape[1 - dim], name
    assert torch.equal(pruned.lm_head.weight, initial["lm_head.weight"])  # unpruned layers rewound too
    assert FAMILY.units_remaining(pruned)["encoder.layers.0.attention"] == 1


def test_static_metrics_of_a_structured_step_are_of_the_shrunk_model() -> None:
    model, data = tiny(), SewData(build_processor(), tone_utterances(2))
    dense = static_metrics(FAMILY, copy.deepcopy(model), data, structured=True)
    structured_prune_step(model, 0.5)
    masked = static_metrics(FAMILY, model, data, structured=False)
    shrunk = static_metrics(FAMILY, model, data, structured=True)
    assert masked["wer"] == shrunk["wer"] and masked["sparsity"] == shrunk["sparsity"] > 0
    assert masked["neuron_sparsity"] == shrunk["neuron_sparsity"] == pytest.approx(FAMILY.unit_sparsity(model))
    assert dense["neuron_sparsity"] == 0 and dense["params_deployed"] == masked["params_deployed"]
    assert shrunk["params_deployed"] < masked["params_deployed"]
    assert shrunk["flops"] < 0.7 * masked["flops"] == 0.7 * dense["flops"]
    assert shrunk["disk_compact_bytes"] < masked["disk_compact_bytes"] < dense["disk_compact_bytes"]
