"""Value precision: fp16/int8 storage error bounds, stored files match the copies, int8 inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from prunelib.deploy.precision import (
    INT8_MAX,
    PRECISIONS,
    check_precision,
    dequantize_int8,
    dynamic_int8,
    int8_scales,
    quantize_int8,
    quantized_copy,
    quantized_engine,
    round_trip,
    stored_kind,
)
from prunelib.families.mlp.models import ModelSpec, build_model
from prunelib.pruning.criteria import named_masks
from prunelib.pruning.params import linear_and_conv_weights
from prunelib.storage.compact import load_compact, save_compact
from prunelib.storage.modelfile import load_into, load_model_compact, model_tensors, save_model_compact
from tests.storage.test_compact import densities, shapes, sparse_tensor

torch.set_num_threads(1)


def pruned_lenet(density: float = 0.3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(ModelSpec("lenet300", 784, 10))
    prune.global_unstructured(linear_and_conv_weights(model), pruning_method=prune.L1Unstructured, amount=1 - density)
    return model


def test_check_precision_names_the_bad_value() -> None:
    assert [check_precision(p) for p in PRECISIONS] == list(PRECISIONS)
    with pytest.raises(ValueError, match="'int4'"):
        check_precision("int4")


@pytest.mark.parametrize(
    ("dtype", "shape", "precision", "kind"),
    [
        (torch.float32, (3, 4), "fp32", "exact"),
        (torch.float32, (3, 4), "fp16", "fp16"),
        (torch.float32, (3, 4), "int8", "int8"),
        (torch.float32, (4,), "int8", "exact"),  # biases keep their precision under int8
        (torch.bfloat16, (2, 2, 2), "int8", "int8"),
        (torch.int64, (3, 4), "fp16", "exact"),
        (torch.bool, (3, 4), "int8", "exact"),
    ],
)
def test_stored_kind_rule(dtype: torch.dtype, shape: tuple[int, ...], precision: str, kind: str) -> None:
    assert stored_kind(torch.zeros(shape, dtype=dtype), precision) == kind


rows = st.integers(1, 8)
cols = st.integers(1, 40)


@settings(max_examples=60, deadline=None)
@given(rows=rows, cols=cols, log_scale=st.floats(-20, 10), seed=st.integers(0, 2**31 - 1), zero_row=st.booleans())
def test_int8_error_is_at_most_half_a_step(rows: int, cols: int, log_scale: float, seed: int, zero_row: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * torch.exp2(torch.randn(rows, 1, generator=g) * 3 + log_scale)
    if zero_row:
        w[0] = 0.0
    scales = int8_scales(w)
    codes = quantize_int8(w, scales)
    assert codes.dtype == torch.int8 and int(codes.abs().max()) <= INT8_MAX
    back = dequantize_int8(codes, scales, torch.float32)
    err = (w.double() - back.double()).abs()
    limit = scales.double().unsqueeze(1) * (0.5 + 1e-5)
    assert bool((err <= limit).all())
    assert torch.equal(back, round_trip(w, "int8"))
    if zero_row:
        assert scales[0] == 0 and not codes[0].any()
    nonzero = scales > 0
    assert bool((codes[nonzero].abs().amax(dim=1) == INT8_MAX).all())  # the largest value maps to +-127


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-60000, 60000, width=32), min_size=1, max_size=50))
def test_fp16_error_is_half_an_ulp(values: list[float]) -> None:
    w = torch.tensor(values, dtype=torch.float32)
    back = round_trip(w, "fp16")
    err = (w.double() - back.double()).abs()
    limit = torch.maximum(w.double().abs() * 2.0**-11, torch.full_like(err, 2.0**-25))  # subnormals: half of 2^-24
    assert bool((err <= limit).all())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=shapes,
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int64]),
    density=densities,
    seed=st.integers(0, 2**31 - 1),
    precision=st.sampled_from(["fp16", "int8"]),
)
def test_any_stored_tensor_comes_back_as_its_round_trip(
    tmp_path: Path, shape: tuple[int, ...], dtype: torch.dtype, density: float, seed: int, precision: str
) -> None:
    t = sparse_tensor(shape, dtype, density, seed, specials=False)
    state = {"w": t, "w_mask": t != 0}
    save_compact(state, tmp_path / "p", precision=precision)
    back = load_compact(tmp_path / "p")
    assert back["w"].dtype == dtype and torch.equal(back["w"], round_trip(t, precision))
    assert torch.equal(back["w_mask"], state["w_mask"])


def test_int8_rejects_non_finite_values() -> None:
    with pytest.raises(ValueError, match="NaN or inf"):
        int8_scales(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="dims"):
        int8_scales(torch.ones(3))


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_stored_values_match_round_trip_and_positions_stay_exact(tmp_path: Path, precision: str) -> None:
    model = pruned_lenet(0.2)
    state = model_tensors(model)
    save_compact(state, tmp_path / "m", precision=precision)
    back = load_compact(tmp_path / "m")
    for name, t in state.items():
        assert back[name].dtype == t.dtype
        if name.endswith("_mask"):
            assert torch.equal(back[name], t)  # masks exact at every precision
        else:
            assert torch.equal(back[name], round_trip(t, precision))
            assert not bool((back[name] != 0)[t == 0].any())  # nothing appears where nothing was


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_quantized_copy_equals_the_model_restored_from_disk(tmp_path: Path, precision: str) -> None:
    model = pruned_lenet(0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = quantized_copy(model, precision)
    save_model_compact(model, tmp_path / "m", precision=precision)
    restored = load_model_compact(build_model(ModelSpec("lenet300", 784, 10)), tmp_path / "m")
    x = torch.randn(8, 784)
    assert torch.equal(copy(x), restored(x))
    masks, copy_masks = named_masks(model), named_masks(copy)
    assert all(torch.equal(masks[k], copy_masks[k]) for k in masks)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # source untouched
    if precision == "fp32":
        assert torch.equal(copy(x), model(x))
    else:
        assert not torch.equal(copy(x), model(x))
        assert torch.allclose(copy(x), model(x), atol=0.05, rtol=0.05)


def test_quantized_engine_is_supported() -> None:
    engine = quantized_engine()
    assert engine in torch.backends.quantized.supported_engines
    assert torch.backends.quantized.engine == engine


def test_dynamic_int8_output_is_close_and_keeps_pruned_zeros() -> None:
    model = pruned_lenet(0.3, seed=1).eval()
    q = dynamic_int8(model)
    assert isinstance(model.out, nn.Linear) and hasattr(model.out, "weight_mask")  # source untouched
    assert not any(type(m) is nn.Linear for m in q.modules())  # every Linear was quantized
    assert all("DynamicQuantizedLinear" in repr(m) for m in (q.layers[0], q.layers[2], q.out))
    x = torch.rand(64, 784)
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert (out - ref).abs().max() <= 0.05 * ref.abs().max()
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.9
    weight = q.layers[0].weight().dequantize()
    assert not bool(weight[model.layers[0].weight_mask == 0].any())


def test_quantized_copy_rejects_bad_precision() -> None:
    with pytest.raises(ValueError, match="'bf16'"):
        quantized_copy(pruned_lenet(), "bf16")


def test_load_into_accepts_quantized_state(tmp_path: Path) -> None:
    model = pruned_lenet(0.5)
    state = load_compact(save_compact(model_tensors(model), tmp_path / "q", precision="int8").path)
    fresh = load_into(build_model(ModelSpec("lenet300", 784, 10)), state)
    x = torch.randn(4, 784)
    assert torch.equal(fresh(x), quantized_copy(model, "int8")(x))
