"""Compact sparse files: bit-exact round trips, the size bound over the sweep, damaged files rejected."""

from __future__ import annotations

import copy
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save
from torch.nn.utils import prune

from prunelib.families.mlp.models import ModelSpec, build_model
from prunelib.pruning.params import linear_and_conv_weights
from prunelib.storage.compact import compact_bytes, compact_stats, entropy_bound_bytes, load_compact, save_compact
from prunelib.storage.lab import disk_dense_bytes
from prunelib.storage.modelfile import model_tensors

torch.set_num_threads(1)

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.bool]
#: The lab's sweep: density 0.67**k for k = 0..10, and a few sparser points beyond it.
SWEEP_K = list(range(11)) + [13, 16]


def raw_bytes(t: torch.Tensor) -> bytes:
    """The tensor's bytes: equal bytes means bit-exact (NaN payloads and -0.0 included)."""
    if t.numel() == 0:
        return b""
    flat = t.contiguous().reshape(-1)
    return (flat.view(torch.uint8) if t.dtype != torch.bool else flat.to(torch.uint8)).numpy().tobytes()


def assert_bit_exact(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert b[name].dtype == a[name].dtype, name
        assert tuple(b[name].shape) == tuple(a[name].shape), name
        assert raw_bytes(b[name]) == raw_bytes(a[name]), name


def sparse_tensor(
    shape: tuple[int, ...], dtype: torch.dtype, density: float, seed: int, specials: bool
) -> torch.Tensor:
    """Random values of ``dtype`` with about ``density`` nonzeros; ties, -0.0 and NaN on request."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(shape, generator=g) < density
    if dtype == torch.bool:
        return keep
    if dtype.is_floating_point:
        values = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
        if specials and values.numel():
            flat = values.reshape(-1)
            flat[::3] = 0.5  # ties
            flat[1::7] = -0.0
            flat[2::11] = float("nan")
    else:
        values = torch.randint(-(2**40), 2**40, shape, generator=g, dtype=torch.int64).to(dtype)
    return torch.where(keep, values, torch.zeros((), dtype=dtype))


shapes = st.one_of(
    st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple),  # 0-D..4-D, empty, single element
    st.tuples(st.integers(1, 300), st.integers(1, 200)),  # big enough for gap coding to pay
)
densities = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.001, 0.999))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tensors=st.lists(
        st.tuples(shapes, st.sampled_from(DTYPES), densities, st.integers(0, 2**31 - 1), st.booleans()),
        min_size=0,
        max_size=4,
    ),
    with_masks=st.booleans(),
)
@example(tensors=[((), torch.float32, 1.0, 0, False), ((0,), torch.float16, 0.5, 0, False)], with_masks=True)
@example(tensors=[((1,), torch.bfloat16, 1.0, 3, True), ((5, 0, 2), torch.bool, 0.5, 0, False)], with_masks=False)
def test_round_trip_is_bit_exact(tmp_path: Path, tensors: list, with_masks: bool) -> None:
    state: dict[str, torch.Tensor] = {}
    for i, (shape, dtype, density, seed, specials) in enumerate(tensors):
        t = sparse_tensor(shape, dtype, density, seed, specials)
        state[f"t{i}"] = t
        if with_masks:
            state[f"t{i}_mask"] = raw_support(t).to(torch.float32)
    path = tmp_path / "state.compact"
    stats = save_compact(state, path)
    for entry in stats.entries:
        event(f"encoding {entry.encoding}")
    assert_bit_exact(state, load_compact(path))
    assert stats.disk_compact_bytes == path.stat().st_size == compact_bytes(state)


def raw_support(t: torch.Tensor) -> torch.Tensor:
    """Elements with any bit set (the container's notion of nonzero)."""
    if t.dtype == torch.bool:
        return t.clone()
    if t.numel() == 0:
        return torch.zeros(t.shape, dtype=torch.bool)
    return torch.from_numpy(
        np.frombuffer(raw_bytes(t), np.uint8).reshape(t.numel(), t.element_size()).any(1).copy()
    ).reshape(t.shape)


@pytest.mark.parametrize(
    ("shape", "density", "encoding"),
    [
        ((300, 200), 1.0, "dense"),
        ((300, 200), 0.0, "index"),
        ((300, 200), 0.45, "bitmask"),
        ((300, 200), 0.05, "rice"),
        ((300, 200), 0.995, "rice"),  # codes the positions of the zeros
        ((10, 20), 0.02, "index"),
    ],
)
def test_each_encoding_is_chosen_and_exact(
    tmp_path: Path, shape: tuple[int, int], density: float, encoding: str
) -> None:
    weight = sparse_tensor(shape, torch.float32, density, 1, specials=False)
    state = {"w": weight, "w_mask": raw_support(weight), "other_mask": ~raw_support(weight)}
    stats = save_compact(state, tmp_path / "x")
    assert stats.encodings["w"] == encoding
    if weight.any():  # an all-zero weight is itself a 0/1 tensor, so it is never a reference target
        assert stats.encodings["w_mask"] == "support"
    assert stats.encodings["other_mask"] != "support"  # a mask that differs is stored on its own
    assert_bit_exact(state, load_compact(tmp_path / "x"))


def test_float_mask_equal_to_support_costs_no_payload(tmp_path: Path) -> None:
    weight = sparse_tensor((64, 32), torch.float32, 0.3, 2, specials=False)
    state = {"w": weight, "w_mask": raw_support(weight).to(torch.float32)}
    entry = {e.name: e for e in save_compact(state, tmp_path / "x").entries}["w_mask"]
    assert (entry.encoding, entry.payload_bytes) == ("support", 0)
    assert_bit_exact(state, load_compact(tmp_path / "x"))


def binary_entropy(d: float) -> float:
    return 0.0 if d in (0.0, 1.0) else -(d * math.log2(d) + (1 - d) * math.log2(1 - d))


@pytest.fixture(scope="module")
def mlp1m_base() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelSpec("mlp1m", 784, 10))


@pytest.mark.parametrize("k", SWEEP_K, ids=[f"k{k}" for k in SWEEP_K])
def test_size_within_entropy_bound_over_the_sweep(mlp1m_base: torch.nn.Module, k: int) -> None:
    model = copy.deepcopy(mlp1m_base)
    params = linear_and_conv_weights(model)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=1.0 - 0.67**k)
    state = model_tensors(model)
    stats = compact_stats(state)
    # The bound by hand, over weights and biases only: masks duplicate their weight's support.
    by_hand = 0.0
    for name, t in state.items():
        if name.endswith("_mask"):
            continue
        n, nnz = t.numel(), int(t.count_nonzero())
        by_hand += nnz * 4 + n * binary_entropy(nnz / n) / 8
    assert stats.disk_bound_bytes == math.ceil(by_hand) == entropy_bound_bytes(state)
    assert stats.disk_compact_bytes <= 1.10 * stats.disk_bound_bytes + 4096
    assert stats.disk_compact_bytes <= stats.disk_dense_bytes
    assert stats.disk_compact_bytes <= disk_dense_bytes(model)
    assert all(stats.encodings[n] == "support" for n in state if n.endswith("_mask") and state[n].any())


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_lower_precision_is_within_its_bound(mlp1m_base: torch.nn.Module, precision: str) -> None:
    model = copy.deepcopy(mlp1m_base)
    prune.global_unstructured(linear_and_conv_weights(model), pruning_method=prune.L1Unstructured, amount=0.8)
    state = model_tensors(model)
    stats, fp32 = compact_stats(state, precision), compact_stats(state, "fp32")
    assert stats.disk_compact_bytes <= 1.10 * stats.disk_bound_bytes + 4096
    assert stats.disk_compact_bytes < fp32.disk_compact_bytes


@pytest.mark.parametrize(
    ("tensors", "error"),
    [
        ({"w": [1.0]}, TypeError),
        ({"w": torch.zeros(2, 2).to_sparse()}, TypeError),
        ({"w": torch.zeros(2, dtype=torch.complex64)}, TypeError),
        ({"__metadata__": torch.zeros(2)}, ValueError),
        ({"": torch.zeros(2)}, ValueError),
    ],
)
def test_bad_inputs_are_rejected(tmp_path: Path, tensors: dict, error: type) -> None:
    with pytest.raises(error):
        save_compact(tensors, tmp_path / "x")


def test_bad_precision_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'fp8'"):
        save_compact({"w": torch.zeros(2)}, tmp_path / "x", precision="fp8")


# ---------------------------------------------------------------- damaged files


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    w = sparse_tensor((40, 30), torch.float32, 0.1, 4, specials=False)
    state = {
        "w": w,
        "w_mask": raw_support(w),
        "b": torch.randn(40),
        "d": sparse_tensor((50,), torch.float32, 0.6, 5, False),
    }
    path = tmp_path / "good.compact"
    save_compact(state, path)
    return path, state


def header_end(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


def test_payload_corruption_is_a_checksum_mismatch(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[header_end(bytes(data)) + 5] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{path.name}.*checksum mismatch"):
        load_compact(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0.0, 1.0, exclude_max=True), bit=st.integers(0, 7))
def test_any_flipped_bit_is_rejected_or_harmless(
    saved: tuple[Path, dict], tmp_path: Path, where: float, bit: int
) -> None:
    path, state = saved
    data = bytearray(path.read_bytes())
    data[int(where * len(data))] ^= 1 << bit
    bad = tmp_path / "flipped.compact"
    bad.write_bytes(bytes(data))
    try:
        back = load_compact(bad)
    except ValueError as exc:
        assert str(bad) in str(exc)
    else:  # only header whitespace can change without meaning anything
        assert_bit_exact(state, back)


@pytest.mark.parametrize("keep", [0, 4, 8, 20, -1, -8, -200])
def test_truncated_files_are_rejected(saved: tuple[Path, dict], keep: int) -> None:
    path, _ = saved
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(ValueError, match=str(path.name)):
        load_compact(path)


def test_truncated_payload_is_named(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated payload"):
        load_compact(path)


def rewrite_table(path: Path, change, fix_checksum: bool = True) -> None:
    """Rewrite the file's tensor table through ``change(specs, meta)`` (payloads kept).

    With ``fix_checksum`` the table's CRC is recomputed, as a writer of a (buggy or newer)
    format would, so the checks behind the checksum are reached.
    """
    data = path.read_bytes()
    meta = json.loads(data[8 : header_end(data)])["__metadata__"]
    specs = json.loads(meta["tensors"])
    change(specs, meta)
    meta["tensors"] = json.dumps(specs)
    if fix_checksum:
        meta["tensors_crc"] = str(zlib.crc32(meta["tensors"].encode("utf-8")))
    path.write_bytes(st_save(st_load(data), metadata=meta))


def test_edited_tensor_table_is_a_checksum_mismatch(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    rewrite_table(path, lambda specs, meta: specs[0].__setitem__(0, "renamed"), fix_checksum=False)
    with pytest.raises(ValueError, match="checksum mismatch in the tensor table"):
        load_compact(path)


def test_unknown_encoding_is_named(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    rewrite_table(path, lambda specs, meta: specs[0][1].update(enc="zstd"))
    with pytest.raises(ValueError, match="unknown encoding 'zstd'"):
        load_compact(path)


def test_other_format_version_is_rejected(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    rewrite_table(path, lambda specs, meta: meta.update(version="99"))
    with pytest.raises(ValueError, match="version '99'"):
        load_compact(path)


def test_dangling_reference_is_rejected(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    rewrite_table(path, lambda specs, meta: [s[1].update(ref="nowhere") for s in specs if s[1]["enc"] == "support"])
    with pytest.raises(ValueError, match="references 'nowhere'"):
        load_compact(path)


def test_bad_header_json_is_rejected(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[8] = ord("[")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad header"):
        load_compact(path)


@pytest.mark.parametrize("kind", ["plain-safetensors", "pickle", "text", "empty"])
def test_wrong_file_types_are_rejected(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.bin"
    if kind == "plain-safetensors":
        path.write_bytes(st_save({"w": np.zeros(3, np.float32)}))
    elif kind == "pickle":
        torch.save({"w": torch.zeros(3)}, path)
    elif kind == "text":
        path.write_text("hello, this is not a model\n" * 10)
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError, match=path.name):
        load_compact(path)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_compact(tmp_path / "nope.compact")


# ---------------------------------------------------------------- fuzzing past the checksums
SPEC_FIELDS = ("enc", "shape", "dtype", "values", "nnz", "bytes", "pos_bytes", "inv", "idx", "k", "ubits", "ref")
FIELD_VALUES = st.one_of(
    st.integers(-3, 70),
    st.integers(0, 2**40),
    st.sampled_from(["dense", "bitmask", "index", "rice", "support", "float32", "int8", "fp16", "exact", "w"]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(-1, 50), max_size=4),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, 3),
    edits=st.lists(st.tuples(st.sampled_from(SPEC_FIELDS), FIELD_VALUES), max_size=3),
    payload=st.one_of(st.none(), st.binary(max_size=300)),
)
def test_fuzz_checksum_valid_but_malformed_tables_are_refused_by_name(
    saved: tuple[Path, dict], tmp_path: Path, which: int, edits: list, payload: bytes | None
) -> None:
    """A writer of a buggy or newer format: any spec field, any payload, consistent checksums.

    The decoders behind the checksums see every such file; each is read bit-exactly or refused
    with a ValueError naming the file, never another exception.
    """
    path, state = saved
    data = path.read_bytes()
    meta = json.loads(data[8 : header_end(data)])["__metadata__"]
    specs = json.loads(meta["tensors"])
    blobs = st_load(data)
    name, spec = specs[which % len(specs)]
    if payload is not None and name in blobs:
        blobs[name] = np.frombuffer(payload, np.uint8).copy() if payload else np.zeros(0, np.uint8)
        spec.update(bytes=len(payload), crc=zlib.crc32(payload))
    for field, value in edits:
        spec[field] = value
    meta["tensors"] = json.dumps(specs)
    meta["tensors_crc"] = str(zlib.crc32(meta["tensors"].encode("utf-8")))
    bad = tmp_path / "fuzzed.compact"
    bad.write_bytes(st_save(blobs, metadata=meta))
    try:
        back = load_compact(bad)
    except ValueError as exc:
        assert str(bad) in str(exc)
    else:
        assert_bit_exact(state, back)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_fuzz_arbitrary_bytes_are_refused_by_name(tmp_path: Path, raw: bytes) -> None:
    bad = tmp_path / "noise.compact"
    bad.write_bytes(raw)
    with pytest.raises(ValueError, match=str(bad.name)):
        load_compact(bad)
