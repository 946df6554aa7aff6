"""A pruned model as a compact file: effective tensors and bool masks out, the same model back in."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from prunelib.deploy.precision import quantized_copy
from prunelib.families.mlp.models import ModelSpec, build_model
from prunelib.pruning.criteria import named_masks, remove_reparametrization
from prunelib.pruning.params import linear_and_conv_weights
from prunelib.storage.compact import load_compact, save_compact
from prunelib.storage.modelfile import load_into, load_model_compact, model_tensors, save_model_compact
from tests.storage.test_compact import assert_bit_exact


def pruned_mlp(density: float, name: str = "mlp1m", seed: int = 0) -> torch.nn.Module:
    """A randomly initialised preset, pruned globally by magnitude to ``density``."""
    torch.manual_seed(seed)
    model = build_model(ModelSpec(name, 784, 10))
    params = linear_and_conv_weights(model)
    if density < 1.0:
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=1.0 - density)
    else:
        for module, p_name in params:
            prune.identity(module, p_name)
    return model


def fresh() -> nn.Module:
    return build_model(ModelSpec("lenet300", 784, 10))


class Tiny(nn.Module):
    """Linear + BatchNorm (buffers) + a non-pruning ``*_mask`` buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 5)
        self.bn = nn.BatchNorm1d(5)
        self.head = nn.Linear(5, 3)
        self.register_buffer("attn_mask", torch.tensor([1.0, 0.5, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.fc(x)))) * self.attn_mask


def tiny(seed: int) -> Tiny:
    torch.manual_seed(seed)
    model = Tiny()
    model.bn.running_mean.normal_()
    model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


# ---------------------------------------------------------------- model_tensors
def test_model_tensors_names_follow_state_dict_after_remove() -> None:
    model = pruned_mlp(0.3, "lenet300", seed=4)
    state = model_tensors(model)
    plain = remove_reparametrization(model)
    masks = {f"{k}_mask" for k in named_masks(model)}
    assert set(state) == set(plain.state_dict()) | masks
    for name, value in plain.state_dict().items():
        assert torch.equal(state[name], value), name
    for name in masks:
        assert state[name].dtype == torch.bool


def test_pruned_positions_hold_positive_zero_and_masks_are_bool() -> None:
    model = pruned_mlp(0.3, "lenet300", seed=5)
    with torch.no_grad():  # make sure negative originals sit under the masks
        for module, _ in linear_and_conv_weights(model):
            module.weight_orig.sub_(1.0)
    state = model_tensors(model)
    for module_name in ("layers.0", "layers.2", "out"):
        module = model.get_submodule(module_name)
        weight, mask = state[f"{module_name}.weight"], state[f"{module_name}.weight_mask"]
        assert mask.dtype == torch.bool and torch.equal(mask, module.weight_mask.bool())
        assert (module.weight_orig[~mask] < 0).any()  # the trap: orig * mask would give -0.0 here
        pruned = weight[~mask]
        assert torch.equal(pruned.view(torch.int32), torch.zeros_like(pruned).view(torch.int32))  # +0.0 bits
        assert torch.equal(weight[mask], module.weight_orig[mask].detach())


def test_model_tensors_does_not_mutate_the_model() -> None:
    model = pruned_mlp(0.4, "lenet300", seed=6)
    before = copy.deepcopy(model.state_dict())
    model_tensors(model)
    assert hasattr(model.out, "weight_orig") and hasattr(model.out, "weight_mask")  # still pruned
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_model_tensors_of_an_unpruned_model_is_its_state_dict() -> None:
    model = tiny(0)
    state = model_tensors(model)
    assert list(state) == list(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_model_tensors_rejects_non_binary_masks() -> None:
    model = pruned_mlp(0.5, "lenet300")
    model.out.weight_mask[0, 0] = 0.5
    with pytest.raises(ValueError, match="0/1"):
        model_tensors(model)


# ---------------------------------------------------------------- load_into
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), amount=st.floats(0.05, 0.95), bias=st.booleans())
def test_load_into_restores_outputs_and_masks(seed: int, amount: float, bias: bool) -> None:
    model = tiny(seed)
    prune.l1_unstructured(model.fc, "weight", amount)
    prune.random_unstructured(model.head, "weight", amount)
    if bias:
        prune.l1_unstructured(model.head, "bias", amount)
    state = model_tensors(model)
    target = tiny(seed + 1)
    assert load_into(target, state) is target
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(model(x), target(x))
    assert list(named_masks(target)) == list(named_masks(model))
    assert all(torch.equal(named_masks(target)[k], v) for k, v in named_masks(model).items())
    assert torch.equal(target.attn_mask, model.attn_mask)  # a plain buffer named *_mask stays a buffer
    assert not hasattr(target, "attn_orig")
    assert_bit_exact(model_tensors(model), model_tensors(target))


def test_pruned_model_restores_exactly(tmp_path: Path) -> None:
    model = pruned_mlp(0.3, "lenet300", seed=1)
    prune.global_unstructured(
        linear_and_conv_weights(model), pruning_method=prune.L1Unstructured, amount=0.5
    )  # two masks deep
    save_model_compact(model, tmp_path / "m.compact")
    restored = fresh()
    load_model_compact(restored, tmp_path / "m.compact")
    x = torch.randn(16, 784)
    assert torch.equal(model(x), restored(x))
    masks, back = named_masks(model), named_masks(restored)
    assert list(masks) == list(back)
    for name in masks:
        assert torch.equal(masks[name], back[name])
    assert_bit_exact(model_tensors(model), model_tensors(restored))


def test_load_into_an_already_pruned_model_overwrites_its_masks(tmp_path: Path) -> None:
    source, target = pruned_mlp(0.2, "lenet300", seed=2), pruned_mlp(0.7, "lenet300", seed=3)
    load_into(target, load_compact(save_compact(model_tensors(source), tmp_path / "s").path))
    x = torch.randn(4, 784)
    assert torch.equal(source(x), target(x))


def test_load_into_rejects_tensors_that_do_not_fit() -> None:
    state = model_tensors(pruned_mlp(0.5, "lenet300"))
    with pytest.raises(ValueError, match="missing"):
        load_into(fresh(), {k: v for k, v in state.items() if k != "out.bias"})
    with pytest.raises(ValueError, match="unexpected"):
        load_into(fresh(), {**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="shape"):
        load_into(fresh(), {**state, "out.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match="no mask"):
        load_into(pruned_mlp(0.5, "lenet300"), {k: v for k, v in state.items() if k != "out.weight_mask"})


def test_load_into_rejects_non_binary_and_misshapen_masks() -> None:
    state = model_tensors(pruned_mlp(0.5, "lenet300"))
    bad = state["out.weight_mask"].float()
    bad[0, 0] = 0.5  # not a bool mask: no pruning mask, and the model has no such buffer
    with pytest.raises(ValueError, match=r"unexpected \['out.weight_mask'\]"):
        load_into(fresh(), {**state, "out.weight_mask": bad})
    with pytest.raises(ValueError, match="shape"):
        load_into(fresh(), {**state, "out.weight_mask": state["out.weight_mask"][:, :5]})


def test_a_plain_buffer_named_after_a_parameter_is_not_a_pruning_mask() -> None:
    def gated(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        module = nn.Linear(3, 2)
        module.register_buffer("weight_mask", torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 2.0]]))
        return module

    source = gated(0)
    target = gated(1)
    load_into(target, model_tensors(source))
    assert not hasattr(target, "weight_orig")
    assert torch.equal(target.weight, source.weight)


# ---------------------------------------------------------------- files
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_save_and_load_model_compact_round_trip(tmp_path: Path, precision: str) -> None:
    model = pruned_mlp(0.1, "lenet300", seed=7)
    path = tmp_path / f"m-{precision}.compact"
    stats = save_model_compact(model, path, precision)
    assert stats.precision == precision and stats.disk_compact_bytes == path.stat().st_size
    restored = load_model_compact(fresh(), str(path))
    x = torch.randn(8, 784, generator=torch.Generator().manual_seed(0))
    expected = model if precision == "fp32" else quantized_copy(model, precision)
    assert torch.equal(expected(x), restored(x))  # what precision.py promises for quantized_copy
    masks = named_masks(model)
    assert all(torch.equal(named_masks(restored)[k], v) for k, v in masks.items())
    if precision == "fp32":
        assert_bit_exact(model_tensors(model), model_tensors(restored))


def test_sparse_model_file_is_smaller_than_the_dense_one(tmp_path: Path) -> None:
    sparse = save_model_compact(pruned_mlp(0.05, "lenet300"), tmp_path / "sparse")
    dense = save_model_compact(pruned_mlp(1.0, "lenet300"), tmp_path / "dense")
    assert sparse.disk_compact_bytes < 0.2 * dense.disk_compact_bytes
