"""One tensor of the compact format: raw bytes, support, value kinds, and bit-exact round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from prunelib.deploy.precision import PRECISIONS, round_trip
from prunelib.storage.codec import (
    DTYPE_NAMES,
    DTYPES,
    crc32,
    decode_tensor,
    decode_values,
    encode_tensor,
    encode_values,
    from_raw,
    is_indicator,
    raw_view,
    support_of,
    value_bytes,
    value_kind,
)
from prunelib.storage.positions import plan_positions
from tests.storage.test_compact import raw_bytes

FLOATS = [d for d in DTYPES.values() if d.is_floating_point]


def assert_bit_exact(a: torch.Tensor, b: torch.Tensor) -> None:
    assert b.dtype == a.dtype
    assert tuple(b.shape) == tuple(a.shape)
    assert raw_bytes(b) == raw_bytes(a)


def sparse_tensor(
    shape: tuple[int, ...], dtype: torch.dtype, density: float, seed: int, specials: bool
) -> torch.Tensor:
    """Random values of ``dtype`` with about ``density`` nonzeros; -0.0, NaN, inf and ties on request."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(shape, generator=g) < density
    if dtype == torch.bool:
        return keep
    if dtype.is_floating_point:
        values = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        if specials and values.numel():
            flat = values.reshape(-1)
            flat[::3] = 0.5
            flat[1::7] = -0.0
            flat[2::11] = float("nan")
            flat[3::13] = float("-inf")
    else:
        info = torch.iinfo(dtype)
        values = torch.randint(info.min, info.max, shape, generator=g, dtype=torch.int64).to(dtype)
    return torch.where(keep, values, torch.zeros((), dtype=dtype))


shapes = st.one_of(
    st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple),  # 0-D..4-D, empty, single element
    st.tuples(st.integers(1, 120), st.integers(1, 90)),  # big enough for position coding to pay
)
densities = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))
dtype_names = st.sampled_from(sorted(DTYPES))


# ---------------------------------------------------------------- tables and raw bytes
def test_dtype_names_are_a_bijection() -> None:
    assert len(DTYPE_NAMES) == len(DTYPES)
    assert all(DTYPES[DTYPE_NAMES[d]] is d for d in DTYPES.values())
    assert all(str(d) == f"torch.{name}" for name, d in DTYPES.items())


@settings(max_examples=80, deadline=None)
@given(shape=shapes, name=dtype_names, density=densities, seed=st.integers(0, 2**31 - 1), specials=st.booleans())
def test_raw_view_and_from_raw_are_inverse(shape, name, density, seed, specials) -> None:
    t = sparse_tensor(shape, DTYPES[name], density, seed, specials)
    raw = raw_view(t)
    assert raw.dtype == np.uint8 and raw.shape == (t.numel(), t.element_size())
    assert raw.tobytes() == raw_bytes(t)
    assert_bit_exact(t, from_raw(raw, t.dtype, tuple(t.shape)))
    support = support_of(raw)
    assert support.shape == (t.numel(),)
    if t.dtype == torch.bool:
        assert np.array_equal(support, t.reshape(-1).numpy())
    elif not t.dtype.is_floating_point:
        assert np.array_equal(support, (t != 0).reshape(-1).numpy())


def test_support_counts_negative_zero_and_nan_as_nonzero() -> None:
    t = torch.tensor([0.0, -0.0, float("nan"), 1.0, 0.0])
    assert support_of(raw_view(t)).tolist() == [False, True, True, True, False]
    assert support_of(raw_view(t.to(torch.bfloat16))).tolist() == [False, True, True, True, False]


def test_raw_view_of_a_non_contiguous_tensor_is_in_logical_order() -> None:
    t = torch.arange(6, dtype=torch.int16).reshape(2, 3).t()
    assert_bit_exact(t.contiguous(), from_raw(raw_view(t), torch.int16, (3, 2)))


def test_crc32_of_bytes_and_arrays_agree() -> None:
    a = np.arange(10, dtype=np.uint8).reshape(2, 5)
    assert crc32(a) == crc32(a.tobytes()) == crc32(np.asfortranarray(a))
    assert crc32(b"") == 0 and 0 <= crc32(b"x" * 100) < 2**32


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_is_indicator(name: str) -> None:
    dtype = DTYPES[name]
    mask = torch.tensor([0, 1, 1, 0]).to(dtype)
    assert is_indicator(raw_view(mask), dtype)
    if dtype != torch.bool:
        assert not is_indicator(raw_view(torch.tensor([0, 2, 1]).to(dtype)), dtype)
    if dtype.is_floating_point:
        assert not is_indicator(raw_view(torch.tensor([0.0, -0.0, 1.0], dtype=dtype)), dtype)  # -0.0 is not 0


# ---------------------------------------------------------------- value kinds
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", sorted(DTYPES))
def test_value_kind(name: str, precision: str) -> None:
    dtype = DTYPES[name]
    matrix, vector = torch.zeros(3, 2, dtype=dtype), torch.zeros(3, dtype=dtype)
    if dtype == torch.bool:
        expected = ("none", "none")
    elif not dtype.is_floating_point or precision == "fp32":
        expected = ("exact", "exact")
    elif precision == "fp16":
        expected = ("fp16", "fp16")
    else:
        expected = ("int8", "exact")  # int8 only for >= 2 dims; biases stay exact
    assert (value_kind(matrix, precision), value_kind(vector, precision)) == expected


def test_value_bytes() -> None:
    t = torch.zeros(5, 4, dtype=torch.float64)
    assert value_bytes("none", t, 7) == 0
    assert value_bytes("exact", t, 7) == 56
    assert value_bytes("fp16", t, 7) == 14
    assert value_bytes("int8", t, 7) == 7 + 4 * 5


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    name=st.sampled_from([n for n in sorted(DTYPES) if DTYPES[n] != torch.bool]),
    precision=st.sampled_from(PRECISIONS),
    density=densities,
    seed=st.integers(0, 2**31 - 1),
)
def test_values_alone_round_trip_at_their_size(shape, name, precision, density, seed) -> None:
    t = sparse_tensor(shape, DTYPES[name], density, seed, specials=False)
    kind = value_kind(t, precision)
    support = support_of(raw_view(t))
    index = np.flatnonzero(support)
    data = encode_values(t, kind, index)
    assert len(data) == value_bytes(kind, t, index.size)
    back = decode_values(data, kind, t.dtype, tuple(t.shape), support)
    assert_bit_exact(round_trip(t, precision), back)
    dense = encode_values(t, kind, None)
    assert len(dense) == value_bytes(kind, t, t.numel())
    assert_bit_exact(round_trip(t, precision), decode_values(dense, kind, t.dtype, tuple(t.shape), None))


def test_decode_values_rejects_wrong_lengths() -> None:
    t = torch.randn(3, 4)
    data = encode_values(t, "exact", None)
    with pytest.raises(ValueError, match="value bytes"):
        decode_values(data[:-1], "exact", t.dtype, (3, 4), None)
    with pytest.raises(ValueError, match="value bytes"):
        decode_values(encode_values(t, "int8", None)[4:], "int8", t.dtype, (3, 4), None)  # a scale lost
    with pytest.raises(ValueError, match="bool"):
        decode_values(b"\1", "none", torch.bool, (3,), np.array([True, False, True]))


# ---------------------------------------------------------------- whole tensors
def assume_int8_finite(t: torch.Tensor, precision: str) -> bool:
    """int8 storage refuses NaN/inf; True when this case is expected to raise."""
    return value_kind(t, precision) == "int8" and t.numel() > 0 and not bool(torch.isfinite(t).all())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=shapes,
    name=dtype_names,
    precision=st.sampled_from(PRECISIONS),
    density=densities,
    seed=st.integers(0, 2**31 - 1),
    specials=st.booleans(),
)
@example(shape=(), name="float32", precision="fp32", density=1.0, seed=0, specials=True)
@example(shape=(0, 3), name="float32", precision="int8", density=0.5, seed=0, specials=False)
@example(shape=(3, 0), name="bfloat16", precision="int8", density=0.5, seed=0, specials=False)
@example(shape=(300, 1), name="bool", precision="fp32", density=0.01, seed=0, specials=False)
def test_encode_decode_tensor(shape, name, precision, density, seed, specials) -> None:
    """fp32 is bit-exact for every dtype; fp16/int8 give exactly what round_trip promises; the
    payload is the cheaper of dense and sparse as planned; positions are what a loader derives."""
    t = sparse_tensor(shape, DTYPES[name], density, seed, specials)
    if assume_int8_finite(t, precision):
        with pytest.raises(ValueError, match="finite"):
            encode_tensor(t, precision)
        return
    enc = encode_tensor(t, precision)
    event(f"{enc.spec['enc']} / {enc.spec['values']}")
    spec = enc.spec
    assert spec["shape"] == list(t.shape) and spec["dtype"] == name
    support = support_of(raw_view(t))
    assert spec["nnz"] == int(support.sum())
    back, positions = decode_tensor(spec, enc.payload)
    expected = t if precision == "fp32" or t.dtype == torch.bool else round_trip(t, precision)
    assert_bit_exact(expected, back)
    assert np.array_equal(positions, enc.positions)
    # size: the cheaper of dense and sparse (ties go dense), as planned
    kind = value_kind(t, precision)
    dense_size = t.numel() * t.element_size() if kind == "none" else value_bytes(kind, t, t.numel())
    sparse_size = plan_positions(support)[2] + value_bytes(kind, t, spec["nnz"]) if t.numel() else math.inf
    assert len(enc.payload) == min(dense_size, sparse_size)
    assert (spec["enc"] == "dense") == (dense_size <= sparse_size)
    if spec["enc"] != "dense":
        assert np.array_equal(enc.positions, support)


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_fp32_round_trip_is_bit_exact_for_each_dtype_sparse_and_dense(name: str) -> None:
    is_bool = DTYPES[name] == torch.bool
    for density, enc in [(0.02, "rice"), (1.0, "index" if is_bool else "dense")]:
        t = sparse_tensor((200, 150), DTYPES[name], density, 3, specials=True)
        encoded = encode_tensor(t, "fp32")
        assert encoded.spec["enc"] == enc
        if is_bool and density == 1.0:  # all True: no zero to point at, no values to store
            assert encoded.payload == b"" and encoded.spec["inv"] is True
        assert_bit_exact(t, decode_tensor(encoded.spec, encoded.payload)[0])


def test_negative_zero_and_nan_survive_sparse_storage() -> None:
    t = torch.zeros(400)
    t[3], t[77], t[200] = -0.0, float("nan"), 1.5
    encoded = encode_tensor(t, "fp32")
    assert encoded.spec["enc"] != "dense" and encoded.spec["nnz"] == 3
    assert_bit_exact(t, decode_tensor(encoded.spec, encoded.payload)[0])


def test_lossy_dense_positions_are_the_stored_support() -> None:
    """A value that fp16 flushes to zero leaves the support a loader sees."""
    t = torch.full((4, 4), 1e-9)
    t[0, 0] = 1.0
    encoded = encode_tensor(t, "fp16")
    assert encoded.spec["enc"] == "dense"
    back, positions = decode_tensor(encoded.spec, encoded.payload)
    assert positions.sum() == 1 and np.array_equal(encoded.positions, positions)
    assert np.array_equal(positions, support_of(raw_view(back)))


def test_decode_tensor_rejects_positions_longer_than_the_payload() -> None:
    t = torch.zeros(1000)
    t[5] = 1.0
    encoded = encode_tensor(t, "fp32")
    assert encoded.spec["enc"] != "dense"
    with pytest.raises(ValueError, match="positions of"):
        decode_tensor({**encoded.spec, "pos_bytes": len(encoded.payload) + 1}, encoded.payload)
    with pytest.raises(ValueError):
        decode_tensor(encoded.spec, encoded.payload[:-1])
