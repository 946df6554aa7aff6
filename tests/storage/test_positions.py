"""Positions of nonzeros: index types, gaps, Golomb-Rice coding, and the cheapest plan, all round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from prunelib.storage.positions import (
    INDEX_TYPES,
    decode_positions,
    encode_positions,
    gaps,
    index_type,
    plan_positions,
    rice_decode,
    rice_encode,
    rice_k,
)


def make_support(n: int, density: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < density


supports = st.builds(
    make_support,
    n=st.one_of(st.integers(0, 70), st.integers(70, 5000)),
    density=st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0)),
    seed=st.integers(0, 2**32 - 1),
)
sorted_positions = st.lists(st.integers(0, 100_000), max_size=200, unique=True).map(
    lambda xs: np.array(sorted(xs), dtype=np.int64)
)


# ---------------------------------------------------------------- index types
@pytest.mark.parametrize(
    ("n", "code"),
    [(0, "<u1"), (1, "<u1"), (256, "<u1"), (257, "<u2"), (65536, "<u2"), (65537, "<u4"), (2**32, "<u4")]
    + [(2**32 + 1, "<u8"), (2**64, "<u8")],
)
def test_index_type_examples(n: int, code: str) -> None:
    assert index_type(n) == code


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 2**64))
def test_index_type_is_the_smallest_that_holds_the_last_index(n: int) -> None:
    code = index_type(n)
    assert n - 1 <= np.iinfo(np.dtype(code)).max
    smaller = INDEX_TYPES[: INDEX_TYPES.index(code)]
    assert all(n - 1 > np.iinfo(np.dtype(c)).max for c in smaller)


def test_index_type_rejects_what_no_type_indexes() -> None:
    with pytest.raises(ValueError, match="too large"):
        index_type(2**64 + 1)


def test_index_types_are_unsigned_little_endian_smallest_first() -> None:
    sizes = [np.dtype(c).itemsize for c in INDEX_TYPES]
    assert sizes == sorted(sizes) == [1, 2, 4, 8]
    assert all(np.dtype(c).kind == "u" and np.dtype(c).byteorder in ("<", "=", "|") for c in INDEX_TYPES)


# ---------------------------------------------------------------- gaps
def test_gaps_example() -> None:
    assert gaps(np.array([0, 1, 5, 6, 10])).tolist() == [0, 0, 3, 0, 3]
    assert gaps(np.array([3])).tolist() == [3]
    assert gaps(np.array([], dtype=np.int64)).tolist() == []


@settings(max_examples=100, deadline=None)
@given(positions=sorted_positions)
def test_gaps_are_nonnegative_and_invert_by_cumsum(positions: np.ndarray) -> None:
    g = gaps(positions)
    assert g.shape == positions.shape
    assert (g >= 0).all()
    assert np.array_equal(np.cumsum(g + 1) - 1, positions)


# ---------------------------------------------------------------- rice
def brute_size(g: np.ndarray, k: int) -> int:
    m = g.size
    return -(-(int((g >> k).sum()) + m) // 8) + -(-(m * k) // 8)


@settings(max_examples=100, deadline=None)
@given(positions=sorted_positions)
def test_rice_k_is_the_cheapest_and_its_size_is_exact(positions: np.ndarray) -> None:
    g = gaps(positions)
    k, size = rice_k(g)
    if g.size == 0:
        assert (k, size) == (0, 0)
        return
    best = min(brute_size(g, j) for j in range(40))
    assert size == best == brute_size(g, k)
    data, _ = rice_encode(g, k)
    assert len(data) == size
    assert all(brute_size(g, j) > size for j in range(k))  # the smallest k among ties


@settings(max_examples=150, deadline=None)
@given(positions=sorted_positions, k=st.integers(0, 20))
@example(positions=np.array([0, 1, 2, 3], dtype=np.int64), k=0)  # all gaps zero
@example(positions=np.array([100_000], dtype=np.int64), k=0)  # one long unary run
@example(positions=np.array([], dtype=np.int64), k=3)
def test_rice_round_trip_for_any_k(positions: np.ndarray, k: int) -> None:
    g = gaps(positions)
    data, ubits = rice_encode(g, k)
    assert ubits == int((g >> k).sum()) + g.size
    assert len(data) == brute_size(g, k)
    back = rice_decode(data, g.size, k, ubits)
    assert np.array_equal(back, positions)


def test_rice_decode_rejects_bad_streams() -> None:
    g = gaps(np.array([2, 9, 40]))
    data, ubits = rice_encode(g, 2)
    with pytest.raises(ValueError, match="does not fit"):
        rice_decode(data + b"\0", 3, 2, ubits)
    with pytest.raises(ValueError, match="does not fit"):
        rice_decode(data, 3, 3, ubits)
    with pytest.raises(ValueError, match="codes"):
        rice_decode(data, 2, 2, ubits)  # header claims fewer codes (remainder bytes still fit)
    flipped = bytes([data[0] ^ 0xFF]) + data[1:]
    with pytest.raises(ValueError):
        rice_decode(flipped, 3, 2, ubits)


# ---------------------------------------------------------------- plans
def sizes_by_hand(support: np.ndarray) -> dict[str, int]:
    n, nnz = support.size, int(support.sum())
    m = min(nnz, n - nnz)
    positions = np.flatnonzero(~support if n - nnz < nnz else support)
    return {
        "bitmask": -(-n // 8),
        "index": m * np.dtype(index_type(n)).itemsize,
        "rice": rice_k(gaps(positions))[1] if m else 0,
    }


@settings(max_examples=150, deadline=None)
@given(support=supports)
@example(support=np.zeros(0, dtype=bool))
@example(support=np.ones(1, dtype=bool))
@example(support=np.zeros(1000, dtype=bool))
@example(support=np.ones(1000, dtype=bool))
def test_plan_round_trip_at_its_predicted_size(support: np.ndarray) -> None:
    enc, params, size = plan_positions(support)
    event(f"{enc}{' inverted' if params.get('inv') else ''}")
    spec = {"enc": enc, **params}
    data = encode_positions(support, enc, spec)
    assert len(data) == size
    assert size == min(sizes_by_hand(support).values())
    nnz = int(support.sum())
    assert np.array_equal(decode_positions(data, spec, support.size, nnz), support)
    if enc != "bitmask":
        assert params["inv"] == (support.size - nnz < nnz)  # codes the rarer of zeros and nonzeros


@settings(max_examples=100, deadline=None)
@given(support=supports, enc=st.sampled_from(["bitmask", "index", "rice"]), invert=st.booleans())
def test_every_encoding_round_trips_whether_chosen_or_not(support: np.ndarray, enc: str, invert: bool) -> None:
    n, nnz = support.size, int(support.sum())
    positions = np.flatnonzero(~support if invert else support)
    spec: dict = {"enc": enc, "inv": invert, "idx": index_type(n), "k": rice_k(gaps(positions))[0]}
    data = encode_positions(support, enc, spec)
    assert np.array_equal(decode_positions(data, spec, n, nnz), support)


@pytest.mark.parametrize(
    ("n", "density", "expected", "inverted"),
    [
        (60_000, 0.5, "bitmask", None),
        (60_000, 0.02, "rice", False),
        (60_000, 0.995, "rice", True),
        (200, 0.01, "index", False),
        (200, 0.995, "index", True),
        (1000, 0.0, "index", False),  # nothing to code: 0 bytes, index wins the tie with rice
    ],
)
def test_each_encoding_is_chosen_where_it_is_cheapest(n: int, density: float, expected: str, inverted) -> None:
    support = make_support(n, density, 7)
    enc, params, _ = plan_positions(support)
    assert enc == expected
    if inverted is not None:
        assert params["inv"] is inverted


def test_all_nonzero_codes_nothing() -> None:
    enc, params, size = plan_positions(np.ones(500, dtype=bool))
    assert size == 0 and params["inv"] is True and enc == "index"


def test_plan_keeps_the_earlier_encoding_on_a_tie() -> None:
    # 8 elements, 1 nonzero at 0: bitmask 1 byte, index 1 byte, rice 1 byte -> bitmask
    support = np.zeros(8, dtype=bool)
    support[0] = True
    assert plan_positions(support)[0] == "bitmask"
    assert plan_positions(np.zeros(0, dtype=bool)) == ("bitmask", {}, 0)


# ---------------------------------------------------------------- damaged positions
def test_decode_rejects_a_bitmask_of_the_wrong_length() -> None:
    support = make_support(20, 0.5, 1)
    data = encode_positions(support, "bitmask", {})
    with pytest.raises(ValueError, match="bitmask"):
        decode_positions(data + b"\0", {"enc": "bitmask"}, 20, int(support.sum()))


def test_decode_rejects_a_wrong_nonzero_count() -> None:
    support = make_support(20, 0.5, 1)
    nnz = int(support.sum())
    with pytest.raises(ValueError, match="header says"):
        decode_positions(encode_positions(support, "bitmask", {}), {"enc": "bitmask"}, 20, nnz + 1)


def test_decode_rejects_bad_index_lists() -> None:
    spec = {"enc": "index", "inv": False, "idx": "<u1"}
    with pytest.raises(ValueError, match="strictly increasing"):
        decode_positions(np.array([3, 3], "<u1").tobytes(), spec, 10, 2)
    with pytest.raises(ValueError, match="strictly increasing"):
        decode_positions(np.array([5, 2], "<u1").tobytes(), spec, 10, 2)
    with pytest.raises(ValueError, match="outside"):
        decode_positions(np.array([2, 10], "<u1").tobytes(), spec, 10, 2)
    with pytest.raises(ValueError, match="does not hold"):
        decode_positions(np.array([2], "<u1").tobytes(), spec, 10, 2)
    with pytest.raises(ValueError, match="does not hold"):
        decode_positions(b"\0\1", {**spec, "idx": "<i2"}, 10, 1)


def test_decode_rejects_rice_positions_past_the_end() -> None:
    positions = np.array([1, 4, 30])
    data, ubits = rice_encode(gaps(positions), 2)
    with pytest.raises(ValueError, match="outside"):
        decode_positions(data, {"enc": "rice", "inv": False, "k": 2, "ubits": ubits}, 20, 3)
