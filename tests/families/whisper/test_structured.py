"""Whisper structured pruning: heads and FFN neurons masked through Torch-Pruning, then shrunk with the same outputs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunelib.families.whisper import structured as ws
from prunelib.families.whisper.family import WhisperFamily
from prunelib.pruning.params import effective_parameters
from prunelib.pruning.structured import UnitRule

from .random_whisper import features, random_whisper

FAMILY = WhisperFamily()
IDS = torch.tensor([[1, 5, 7, 9], [1, 3, 4, 150]])


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in effective_parameters(model)}


def head_l2(attn: nn.Module) -> torch.Tensor:
    """Each head's L2 norm over its q/k/v rows and biases and out_proj columns, computed here from the weights."""
    d = attn.head_dim
    sq = torch.zeros(attn.num_heads, dtype=torch.float64)
    for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
        sq += proj.weight.detach().double().pow(2).reshape(-1, d, proj.in_features).sum((1, 2))
        if proj.bias is not None:
            sq += proj.bias.detach().double().pow(2).reshape(-1, d).sum(1)
    sq += attn.out_proj.weight.detach().double().pow(2).reshape(-1, attn.num_heads, d).sum((0, 2))
    return sq.sqrt()


def test_a_head_step_zeroes_the_weakest_heads_q_k_v_rows_biases_and_out_proj_columns_only() -> None:
    model = random_whisper()
    before = weights(model)
    attentions = ws.attention_modules(model)
    weakest = {name: set(torch.argsort(head_l2(a), stable=True)[:2].tolist()) for name, a in attentions.items()}
    ws.structured_step(model, 0.5, units=("heads",))
    after = weights(model)
    for name, attn in attentions.items():
        d = attn.head_dim
        dead = torch.zeros(attn.num_heads, dtype=torch.bool)
        dead[list(weakest[name])] = True
        rows = dead.repeat_interleave(d)
        for p in ("q_proj.weight", "q_proj.bias", "k_proj.weight", "v_proj.weight", "v_proj.bias"):
            key = f"{name}.{p}"
            assert (after[key][rows] == 0).all(), key
            assert torch.equal(after[key][~rows], before[key][~rows]), key
        out = f"{name}.out_proj.weight"
        assert (after[out][:, rows] == 0).all() and torch.equal(after[out][:, ~rows], before[out][:, ~rows])
        assert torch.equal(after[f"{name}.out_proj.bias"], before[f"{name}.out_proj.bias"])
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".self_attn." in k or ".encoder_attn." in k for k in changed)


def test_an_ffn_step_zeroes_the_weakest_fc1_rows_and_biases_with_their_fc2_columns_and_leaves_heads_alone() -> None:
    model = random_whisper()
    before = weights(model)
    roots = ws.ffn_roots(model)
    weakest = {}
    for name, fc1 in roots.items():
        fc2 = model.get_submodule(name.removesuffix("fc1") + "fc2")
        sq = fc1.weight.detach().double().pow(2).sum(1) + fc1.bias.detach().double().pow(2)
        sq += fc2.weight.detach().double().pow(2).sum(0)
        weakest[name] = torch.argsort(sq.sqrt(), stable=True)[: round(0.3 * 128)]
    ws.structured_step(model, 0.3, units=("ffn",))
    after = weights(model)
    for name in roots:
        dead = torch.zeros(128, dtype=torch.bool)
        dead[weakest[name]] = True
        fc2 = name.removesuffix("fc1") + "fc2"
        assert (after[f"{name}.weight"][dead] == 0).all() and (after[f"{name}.bias"][dead] == 0).all()
        assert (after[f"{fc2}.weight"][:, dead] == 0).all()
        assert torch.equal(after[f"{name}.weight"][~dead], before[f"{name}.weight"][~dead])
        assert torch.equal(after[f"{fc2}.weight"][:, ~dead], before[f"{fc2}.weight"][:, ~dead])
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {k for n in roots for k in (f"{n}.weight", f"{n}.bias", n.removesuffix("fc1") + "fc2.weight")}
    assert all(alive == 4 for name, alive in FAMILY.units_remaining(model).items() if name.endswith("attn"))


def test_unit_counts_fall_by_the_amount_and_every_module_keeps_a_head_and_a_neuron() -> None:
    model = random_whisper()
    counts = FAMILY.units_remaining(model)
    assert list(counts)[:3] == [
        "model.encoder.layers.0.self_attn",
        "model.encoder.layers.0.fc1",
        "model.encoder.layers.1.self_attn",
    ]
    assert "model.decoder.layers.1.encoder_attn" in counts and len(counts) == 10
    assert FAMILY.unit_sparsity(model) == 0.0
    ws.structured_step(model, 0.5)
    assert {n: c for n, c in FAMILY.units_remaining(model).items()} == {n: c // 2 for n, c in counts.items()}
    assert FAMILY.unit_sparsity(model) == pytest.approx(0.5)
    for _ in range(3):
        ws.structured_step(model, 0.9)
    assert set(FAMILY.units_remaining(model).values()) == {1}


def test_rounding_applies_to_neurons_not_heads() -> None:
    model = random_whisper()
    ws.structured_step(model, 0.3, UnitRule(round_to=16))
    for name, alive in FAMILY.units_remaining(model).items():
        assert alive == (96 if name.endswith("fc1") else 3), name  # 128 keeps 89.6 -> 96; 4 heads keep 3


def weak_heads(model: nn.Module) -> None:
    """Heads 0-2 of the first encoder layer get tiny weights; head 3 keeps its own."""
    attn = model.model.encoder.layers[0].self_attn
    with torch.no_grad():
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight[:48] *= 0.05
            if proj.bias is not None:
                proj.bias[:48] *= 0.05
        attn.out_proj.weight[:, :48] *= 0.05


def test_global_scope_ranks_heads_with_heads_and_may_take_more_from_one_module() -> None:
    model = random_whisper()
    weak_heads(model)
    ws.structured_step(model, 0.25, UnitRule(scope="global"), units=("heads",))
    heads = {n: c for n, c in FAMILY.units_remaining(model).items() if n.endswith("attn")}
    assert heads["model.encoder.layers.0.self_attn"] == 1 and sum(heads.values()) == 6 * 4 - 6
    assert max(heads.values()) == 4  # 3 of the 6 from the weak module, the rest where heads rank lowest


def test_shrink_keeps_the_outputs_and_generate_works_with_different_head_counts_per_layer() -> None:
    model = random_whisper()
    weak_heads(model)
    ws.structured_step(model, 0.25, UnitRule(scope="global"))
    ws.structured_step(model, 0.4, units=("ffn",))
    remaining = FAMILY.units_remaining(model)
    dense = copy.deepcopy(model)
    small = ws.shrink(model)
    assert FAMILY.units_remaining(model) == remaining and weights(model).keys() == weights(dense).keys()
    heads = [a.num_heads for a in ws.attention_modules(small).values()]
    assert heads == [c for n, c in remaining.items() if n.endswith("attn")] and len(set(heads)) > 1
    for name, attn in ws.attention_modules(small).items():
        assert attn.q_proj.out_features == attn.k_proj.out_features == attn.num_heads * attn.head_dim, name
        assert attn.out_proj.in_features == attn.num_heads * attn.head_dim and attn.out_proj.out_features == 64
    assert [fc1.out_features for fc1 in ws.ffn_roots(small).values()] == [
        c for n, c in remaining.items() if n.endswith("fc1")
    ]
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in dense.parameters())
    x = features()
    with torch.no_grad():
        enc = (model.model.encoder(x).last_hidden_state - small.model.encoder(x).last_hidden_state).abs().max()
        logits = model(input_features=x, decoder_input_ids=IDS).logits
        diff = (logits - small(input_features=x, decoder_input_ids=IDS).logits).abs().max()
    assert float(enc) < 1e-4 and float(diff) < 1e-4
    tokens = small.generate(x, max_new_tokens=4, do_sample=False)
    assert tokens.dtype == torch.long and tokens.shape[0] == 2 and tokens.shape[1] >= 4
    assert torch.equal(tokens, model.generate(x, max_new_tokens=4, do_sample=False))


def test_shrink_refuses_a_head_that_is_only_partly_dead() -> None:
    model = random_whisper()
    attn = model.model.decoder.layers[0].encoder_attn
    with torch.no_grad():  # kill one row of head 1 everywhere it is coupled: one unit of Torch-Pruning, not a head
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight[16].zero_()
        attn.q_proj.bias[16] = attn.v_proj.bias[16] = 0
        attn.out_proj.weight[:, 16].zero_()
    with pytest.raises(ValueError, match=r"model\.decoder\.layers\.0\.encoder_attn: some heads are only partly dead"):
        ws.shrink(model)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"units": ("heads", "neurons")}, ValueError, "units must be a non-empty selection"),
        ({"units": ()}, ValueError, "units must be a non-empty selection"),
        ({"units": "heads"}, ValueError, "units must be a non-empty selection"),
        ({"rule": "l2"}, TypeError, "rule must be a UnitRule, got str"),
        ({"amount": 1.5}, ValueError, "amount"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, error, message) -> None:
    model = random_whisper()
    before = weights(model)
    with pytest.raises(error, match=message):
        ws.structured_step(model, **{"amount": 0.5, **kwargs})
    assert all(torch.equal(before[k], t) for k, t in weights(model).items())


def test_a_model_that_is_not_whisper_is_refused() -> None:
    with pytest.raises(ValueError, match="Whisper's layout"):
        FAMILY.units_remaining(nn.Sequential(nn.Linear(3, 3)))


def test_the_real_tiny_en_shrinks_with_the_same_outputs(tiny_en) -> None:
    model = copy.deepcopy(tiny_en[0])
    ws.structured_step(model, 0.3)
    remaining = FAMILY.units_remaining(model)
    assert remaining["model.encoder.layers.0.self_attn"] == 4 and remaining["model.decoder.layers.3.fc1"] == 1075
    small = ws.shrink(model)
    assert [a.num_heads for a in ws.attention_modules(small).values()] == [4] * 12
    x = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[50257, 50362, 440, 2068]])
    with torch.no_grad():
        enc = (model.model.encoder(x).last_hidden_state - small.model.encoder(x).last_hidden_state).abs().max()
        logits = model(input_features=x, decoder_input_ids=ids).logits
        diff = (logits - small(input_features=x, decoder_input_ids=ids).logits).abs().max()
    assert float(enc) < 1e-4 and float(diff) < 1e-4
