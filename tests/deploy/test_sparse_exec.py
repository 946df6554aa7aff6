"""Sparse execution: same outputs as dense, forced choices really are sparse, choose/apply split."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from prunelib.deploy.sparse_exec import (
    LayerChoice,
    SparseLinear,
    apply_execution,
    choose_execution,
    to_sparse_execution,
)
from prunelib.families.mlp.models import MLP
from prunelib.pruning.criteria import remove_reparametrization
from prunelib.pruning.params import linear_and_conv_weights


def pruned_mlp(amount: float, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    model = MLP(20, (32, 24), 5).eval()
    prune.global_unstructured(linear_and_conv_weights(model), pruning_method=prune.L1Unstructured, amount=amount)
    return model


@settings(max_examples=15, deadline=None)
@given(amount=st.floats(0.05, 0.99), seed=st.integers(0, 2**16), batch=st.integers(1, 5))
def test_forced_sparse_matches_dense(amount: float, seed: int, batch: int) -> None:
    model = pruned_mlp(amount, seed)
    fast, choices = to_sparse_execution(model, torch.randn(1, 20), force="sparse")
    linears = {n: m for n, m in remove_reparametrization(model).named_modules() if isinstance(m, nn.Linear)}
    assert [c.name for c in choices] == list(linears)
    for c in choices:
        layer = fast.get_submodule(c.name)
        assert isinstance(layer, SparseLinear) and layer.weight.layout == torch.sparse_csr
        assert layer.nnz == int(linears[c.name].weight.count_nonzero())
        assert c.sparse and math.isclose(c.density, layer.nnz / linears[c.name].weight.numel())
    x = torch.randn(batch, 20, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(fast(x), model(x), rtol=0, atol=1e-5)


def test_measured_choice_is_consistent_and_exact() -> None:
    model = pruned_mlp(0.9)
    fast, choices = to_sparse_execution(model, torch.randn(1, 20), repeats=3, inner=2)
    for c in choices:
        assert c.dense_s > 0 and c.sparse_s > 0
        assert c.sparse == (c.sparse_s < c.dense_s)
        assert isinstance(fast.get_submodule(c.name), SparseLinear) == c.sparse
    x = torch.randn(3, 20)
    torch.testing.assert_close(fast(x), model(x), rtol=0, atol=1e-5)


def test_forced_dense_and_input_untouched() -> None:
    model = pruned_mlp(0.5)
    masks = {k: v.clone() for k, v in model.named_buffers()}
    fast, choices = to_sparse_execution(model, torch.randn(1, 20), force="dense")
    assert not any(isinstance(m, SparseLinear) for m in fast.modules())
    assert all(not c.sparse and math.isnan(c.dense_s) for c in choices)
    assert all(torch.equal(masks[k], v) for k, v in model.named_buffers())  # still reparametrized
    assert not any(hasattr(m, "weight_mask") for m in fast.modules())


def test_apply_execution_from_a_record() -> None:
    model = pruned_mlp(0.8)
    record = [LayerChoice("layers.2", 0.2, 1e-5, 5e-6, None, True)]
    fast = apply_execution(model, record)
    assert isinstance(fast.layers[2], SparseLinear) and isinstance(fast.layers[0], nn.Linear)
    x = torch.randn(2, 20)
    torch.testing.assert_close(fast(x), model(x), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="'layers.1'"):
        apply_execution(model, [LayerChoice("layers.1", 0.2, 1e-5, 5e-6, None, True)])


def test_sparse_linear_shapes_threads_and_copy() -> None:
    torch.manual_seed(0)
    dense = nn.Linear(6, 4, bias=False)
    with torch.no_grad():
        dense.weight[dense.weight.abs() < 0.2] = 0
    layer = SparseLinear.from_linear(dense, threads=1)
    x = torch.randn(2, 3, 6)
    before = torch.get_num_threads()
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), dense(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(layer(x[0, :1]), dense(x[0, :1]), rtol=0, atol=1e-6)
    assert torch.get_num_threads() == before
    twin = copy.deepcopy(layer)  # CSR storage cannot be deep-copied by torch itself
    assert twin.weight.values().data_ptr() != layer.weight.values().data_ptr()
    torch.testing.assert_close(twin(x), layer(x), rtol=0, atol=0)


def test_validation() -> None:
    with pytest.raises(ValueError, match=r"\(3,\)"):
        SparseLinear(torch.ones(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="2-D"):
        SparseLinear(torch.ones(3))
    with pytest.raises(ValueError, match="0"):
        SparseLinear(torch.ones(3, 2), threads=0)
    model = pruned_mlp(0.5)
    with pytest.raises(ValueError, match="0"):
        choose_execution(model, torch.randn(1, 20), repeats=0)
    with pytest.raises(ValueError, match="'fast'"):
        choose_execution(model, torch.randn(1, 20), force="fast")
