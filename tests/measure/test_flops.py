"""Multiply-add counts on hand-computed cases: dense, pruned-but-dense, shrunk, sparse, conv, embedding."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from prunelib.deploy.sparse_exec import SparseLinear, to_sparse_execution
from prunelib.families.mlp.family import MlpFamily
from prunelib.families.mlp.models import MLP
from prunelib.measure.flops import count_flops, flops_by_layer
from prunelib.pruning.params import linear_and_conv_weights


def small_mlp() -> MLP:
    torch.manual_seed(0)
    return MLP(10, (8, 6), 3).eval()


def test_dense_mlp_counts_in_times_out() -> None:
    model = small_mlp()
    assert flops_by_layer(model, torch.randn(1, 10)) == {"layers.0": 80, "layers.2": 48, "out": 18}
    assert count_flops(model, torch.randn(1, 10)) == 146
    assert count_flops(model, torch.randn(4, 10)) == 4 * 146  # all rows of the input


def test_unstructured_pruned_run_densely_costs_the_dense_count() -> None:
    model = small_mlp()
    prune.global_unstructured(linear_and_conv_weights(model), pruning_method=prune.L1Unstructured, amount=0.9)
    assert count_flops(model, torch.randn(1, 10)) == 146
    for module, name in linear_and_conv_weights(model):
        prune.remove(module, name)
    assert count_flops(model, torch.randn(1, 10)) == 146


def test_shrunk_model_counts_its_smaller_layers() -> None:
    model = small_mlp()
    MlpFamily().structured_step(model, 0.5, 0)  # 8 -> 4, 6 -> 3 neurons
    assert count_flops(model, torch.randn(1, 10)) == 146  # masked, still dense
    assert count_flops(MlpFamily().shrink(model), torch.randn(1, 10)) == 10 * 4 + 4 * 3 + 3 * 3
    deployed = MlpFamily().deploy(model, structured=True)  # what the sweep counts: the family's deployed model
    assert count_flops(deployed, torch.randn(1, 10)) == 10 * 4 + 4 * 3 + 3 * 3
    assert count_flops(MlpFamily().deploy(model, structured=False), torch.randn(1, 10)) == 146


def test_sparse_layer_counts_nonzeros() -> None:
    weight = torch.tensor([[1.0, 0, 2], [0, 0, 0], [0, 3, 0], [4, 0, 0]])
    layer = SparseLinear(weight, torch.zeros(4))
    assert count_flops(layer, torch.randn(1, 3)) == 4
    assert count_flops(layer, torch.randn(2, 5, 3)) == 40
    model = small_mlp()
    prune.global_unstructured(linear_and_conv_weights(model), pruning_method=prune.L1Unstructured, amount=0.75)
    fast, _ = to_sparse_execution(model, torch.randn(1, 10), force="sparse")
    nonzero = sum(int(m.weight.count_nonzero()) for m, _ in linear_and_conv_weights(model))
    assert count_flops(fast, torch.randn(1, 10)) == nonzero == round(0.25 * 146)


def test_conv1d_counts_outputs_times_kernel_inputs() -> None:
    conv = nn.Conv1d(2, 4, 3)  # length 10 -> 8
    assert count_flops(conv, torch.randn(1, 2, 10)) == 8 * 4 * 2 * 3
    grouped = nn.Conv1d(4, 6, 3, padding=1, groups=2)  # length 5 -> 5, 2 inputs per group
    assert count_flops(grouped, torch.randn(1, 4, 5)) == 5 * 6 * 2 * 3


def test_embeddings_count_zero() -> None:
    torch.manual_seed(0)
    model = MLP(0, (8,), 2, vocab_size=30, embed_dim=5).eval()
    assert count_flops(model, torch.randint(0, 30, (1, 7))) == 5 * 8 + 8 * 2
    bag = nn.EmbeddingBag(30, 5, mode="mean")
    assert flops_by_layer(bag, torch.randint(0, 30, (1, 7))) == {"": 0}


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_dynamic_int8_linear_counts_like_dense() -> None:
    quantized = torch.ao.quantization.quantize_dynamic(small_mlp(), {nn.Linear}, dtype=torch.qint8)
    assert isinstance(quantized.out, torch.ao.nn.quantized.dynamic.Linear)
    assert count_flops(quantized, torch.randn(1, 10)) == 146


def test_conv2d_counts_output_elements_times_its_receptive_field() -> None:
    conv = nn.Conv2d(3, 8, kernel_size=(3, 5), padding=1, groups=1)
    x = torch.randn(2, 3, 10, 12)
    out_elements = conv(x).numel()
    assert count_flops(conv, x) == out_elements * 3 * 3 * 5


def test_grouped_conv2d_counts_only_its_group_inputs() -> None:
    conv = nn.Conv2d(8, 8, kernel_size=3, groups=8)  # depthwise
    x = torch.randn(1, 8, 6, 6)
    assert count_flops(conv, x) == conv(x).numel() * 1 * 9


def test_layer_costs_compare_a_dense_and_a_shrunk_model_layer_by_layer() -> None:
    from prunelib.measure.flops import layer_costs

    torch.manual_seed(0)
    family = MlpFamily()
    model = MLP(10, (8, 6), 3).eval()
    dense = family.deploy(model, structured=True)
    family.structured_step(model, 0.5, 0)
    table = layer_costs(dense, family.deploy(model, structured=True), torch.randn(1, 10))
    assert table["layer"].tolist() == ["layers.0", "layers.2", "out"]
    assert table["macs_dense"].tolist() == [80, 48, 18] and table["macs_kept"].tolist() == [40, 12, 9]
    assert (table["macs_removed"] == table["macs_dense"] - table["macs_kept"]).all()
    assert table["params_dense"].tolist() == [88, 54, 21] and table["params_kept"].tolist() == [44, 15, 12]
