"""Size on disk: dense bytes ignore sparsity, the lab's COO bytes follow the nonzeros monotonically."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunelib.families.mlp.models import ModelSpec, build_model
from prunelib.pruning.criteria import CRITERIA, get_criterion, magnitude_prune, named_masks
from prunelib.pruning.params import count_parameters, linear_and_conv_weights
from prunelib.pruning.sparsity import count_nonzero
from prunelib.storage.lab import dense_state_dict, disk_dense_bytes, disk_sparse_bytes, lab_sparse_state_dict


def lenet(sparsity_steps: int, amount: float = 0.5) -> nn.Module:
    model = build_model(ModelSpec("lenet300", 784, 10))
    for _ in range(sparsity_steps):
        magnitude_prune(linear_and_conv_weights(model), amount)
    return model


def test_dense_state_dict_has_plain_keys_and_zeros_where_pruned(make_mlp: Callable[..., nn.Sequential]) -> None:
    model = make_mlp((5, 4, 3))
    magnitude_prune(linear_and_conv_weights(model), 0.5)
    state = dense_state_dict(model)
    assert sorted(state) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert torch.equal(state["0.weight"], model[0].weight_orig.detach() * model[0].weight_mask)
    assert "0.weight_mask" in dict(model.named_buffers())  # the model keeps its reparametrization


def test_lab_sparse_state_dict_stores_2d_weights_as_coo(make_mlp: Callable[..., nn.Sequential]) -> None:
    model = make_mlp((6, 5, 4))
    magnitude_prune(linear_and_conv_weights(model), 0.6)
    dense, sparse = dense_state_dict(model), lab_sparse_state_dict(model)
    assert sorted(sparse) == sorted(dense)
    for key, value in sparse.items():
        if dense[key].dim() == 2:
            assert value.layout == torch.sparse_coo
            assert value.coalesce().values().numel() == int(torch.count_nonzero(dense[key]))
            assert torch.equal(value.to_dense(), dense[key])
        else:
            assert value.layout == torch.strided and torch.equal(value, dense[key])


def test_dense_bytes_ignore_sparsity_and_hold_every_float() -> None:
    sizes = [disk_dense_bytes(lenet(k)) for k in (1, 3)]
    assert sizes[0] == sizes[1]
    assert 4 * 266_610 <= sizes[0] <= 4 * 266_610 + 4096
    unpruned = lenet(0)
    assert abs(disk_dense_bytes(unpruned) - sizes[0]) < 256
    buf = io.BytesIO()
    torch.save(unpruned.state_dict(), buf)
    assert disk_dense_bytes(unpruned) == buf.getbuffer().nbytes


def test_coo_is_larger_than_dense_at_low_sparsity_and_smaller_at_high() -> None:
    """COO stores 16 bytes of indices + 4 of value per nonzero: break-even near 80 % of weights pruned."""
    half, most = lenet(1), lenet(4)  # 50 % and 93.75 % of the weights pruned
    assert disk_sparse_bytes(half) > disk_dense_bytes(half)
    assert disk_sparse_bytes(most) < disk_dense_bytes(most)
    nonzero_weights = count_nonzero(most) - sum(p.numel() for n, p in most.named_parameters() if n.endswith("bias"))
    assert disk_sparse_bytes(most) >= 20 * nonzero_weights


def test_measuring_size_does_not_change_the_model(make_mlp: Callable[..., nn.Sequential]) -> None:
    model = make_mlp((5, 4))
    magnitude_prune(linear_and_conv_weights(model), 0.5)
    masks, weights = named_masks(model), model[0].weight_orig.detach().clone()
    disk_dense_bytes(model), disk_sparse_bytes(model)
    assert torch.equal(named_masks(model)["0.weight"], masks["0.weight"])
    assert torch.equal(model[0].weight_orig, weights) and count_parameters(model) == 24


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(1, 24), min_size=2, max_size=4),
    st.sampled_from([None, 2]),
    st.floats(0.01, 0.99),
    st.integers(1, 5),
    st.integers(0, 2**16),
    st.sampled_from(sorted(CRITERIA)),
)
def test_sparse_bytes_are_monotone_in_the_number_of_nonzeros(
    make_mlp: Callable[..., nn.Sequential], widths, levels, amount, steps, seed, criterion
) -> None:
    model = make_mlp(tuple(widths), seed, levels)
    trace = [(count_nonzero(model), disk_sparse_bytes(model))]
    for step in range(steps):
        get_criterion(criterion)(linear_and_conv_weights(model), amount, seed + step)
        trace.append((count_nonzero(model), disk_sparse_bytes(model)))
    for (nnz_a, bytes_a), (nnz_b, bytes_b) in zip(trace, trace[1:]):
        assert nnz_b <= nnz_a
        assert bytes_b <= bytes_a, f"{nnz_a} → {nnz_b} nonzeros but {bytes_a} → {bytes_b} bytes"
    assert trace[-1][1] <= trace[0][1]


@pytest.mark.parametrize("nnz", [1, 255, 256, 65_535, 65_536])
def test_sparse_bytes_grow_at_pickle_integer_boundaries(nnz: int) -> None:
    """One more nonzero never shrinks the file, also where the pickled sizes change width."""

    def size(n: int) -> int:
        linear = nn.Linear(70_000, 1, bias=False)
        with torch.no_grad():
            linear.weight.zero_()
            linear.weight[0, :n] = 1.0
        return disk_sparse_bytes(linear)

    assert size(nnz - 1) <= size(nnz) <= size(nnz + 1)
