"""Layer helpers for hand-written unit pruning (SEW's attention heads): effective tensors, alive rows, rebuilding.

Every other unit is pruned through Torch-Pruning (``tests/pruning/test_structured.py``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from prunelib.pruning.neurons import alive_neurons, effective_tensor, rebuild_layer


def test_effective_tensor_is_recomputed_from_orig_and_mask() -> None:
    layer = nn.Linear(3, 4)
    prune.custom_from_mask(layer, "weight", torch.tensor([[1.0] * 3, [0.0] * 3, [1.0] * 3, [0.0] * 3]))
    with torch.no_grad():  # what a rewind does: the cached .weight is now stale
        layer.weight_orig.add_(1.0)
    expected = layer.weight_orig * layer.weight_mask
    assert torch.equal(effective_tensor(layer, "weight"), expected)
    assert not torch.equal(layer.weight, expected)
    assert torch.equal(effective_tensor(layer, "bias"), layer.bias.detach())  # not pruned: the parameter
    assert effective_tensor(nn.Linear(3, 4, bias=False), "bias") is None


def test_a_neuron_is_alive_while_its_row_or_its_bias_is_nonzero() -> None:
    """Masked or pruned for good alike, Linear rows and Conv1d channels."""
    torch.manual_seed(0)
    conv = nn.Conv1d(3, 8, 3)
    keep = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1], dtype=torch.bool)
    prune.custom_from_mask(conv, "weight", keep[:, None, None].float().expand_as(conv.weight))
    prune.custom_from_mask(conv, "bias", keep.float())
    assert torch.equal(alive_neurons(conv), keep)
    prune.remove(conv, "weight")
    prune.remove(conv, "bias")
    assert torch.equal(alive_neurons(conv), keep)
    lin = nn.Linear(2, 3)
    with torch.no_grad():
        lin.weight[1:].zero_()
        lin.bias[2] = 0.5
        lin.bias[1] = 0.0
    assert alive_neurons(lin).tolist() == [True, False, True]  # row 2 lives on its bias
    with pytest.raises(ValueError, match="no weight"):
        alive_neurons(nn.ReLU())


def test_rebuild_layer_copies_values_and_dtype_and_rejects_other_layers() -> None:
    w, b = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    new = rebuild_layer(nn.Linear(7, 9), w, b)
    assert isinstance(new, nn.Linear) and (new.in_features, new.out_features) == (5, 2)
    assert torch.equal(new.weight, w) and torch.equal(new.bias, b) and new.weight.dtype == torch.float64
    assert rebuild_layer(nn.Linear(7, 9, bias=False), w, None).bias is None
    with pytest.raises(TypeError, match="Conv1d"):
        rebuild_layer(nn.Conv1d(4, 4, 3), torch.randn(4, 4, 3), None)
