"""One tensor of the compact format: raw bytes, support, value encodings, and their inverse."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from prunelib.deploy.precision import (
    dequantize_int8,
    int8_scales,
    quantize_int8,
    stored_kind,
)
from prunelib.storage.positions import decode_positions, encode_positions, plan_positions

#: Tensor dtypes the container stores (by their names in the metadata).
DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def raw_view(t: torch.Tensor) -> np.ndarray:
    """The bytes of ``t`` as an ``(numel, element_size)`` uint8 array (a view where possible)."""
    if t.numel() == 0:
        return np.zeros((0, t.element_size()), dtype=np.uint8)
    flat = t.reshape(-1).contiguous()
    if flat.dtype == torch.bool:
        flat = flat.view(torch.uint8)
    return flat.view(torch.uint8).numpy().reshape(t.numel(), t.element_size())


def support_of(raw: np.ndarray) -> np.ndarray:
    """Which elements have any bit set (so ``-0.0`` and NaN count as nonzero)."""
    if raw.shape[1] == 1:
        return np.asarray(raw[:, 0] != 0)
    return np.asarray(raw.any(axis=1))


def from_raw(raw: np.ndarray, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    if raw.size == 0:
        return torch.zeros(shape, dtype=dtype)
    flat = torch.from_numpy(np.ascontiguousarray(raw).reshape(-1).copy())
    if dtype == torch.bool:
        return flat.view(torch.bool).reshape(shape)
    return flat.view(dtype).reshape(shape)


def crc32(data: bytes | np.ndarray) -> int:
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).tobytes()
    return zlib.crc32(data) & 0xFFFFFFFF


def is_indicator(raw: np.ndarray, dtype: torch.dtype) -> bool:
    """Every element is 0 or this dtype's 1 (bit patterns): the tensor could be a mask."""
    one = raw_view(torch.ones(1, dtype=dtype))[0]
    return bool(((raw == one).all(axis=1) | ~support_of(raw)).all())


def value_kind(t: torch.Tensor, precision: str) -> str:
    return "none" if t.dtype == torch.bool else stored_kind(t, precision)


def value_bytes(kind: str, t: torch.Tensor, count: int) -> int:
    """Bytes of ``count`` stored values of ``t`` (plus int8 scales)."""
    if kind == "none":
        return 0
    if kind == "exact":
        return count * t.element_size()
    if kind == "fp16":
        return count * 2
    return count + 4 * t.shape[0]


def encode_values(t: torch.Tensor, kind: str, index: np.ndarray | None) -> bytes:
    """The stored values of ``t`` at flat ``index`` (all elements when ``None``)."""
    if kind == "none":
        return b""
    if kind == "int8":
        scales = int8_scales(t)
        codes = raw_view(quantize_int8(t, scales))[:, 0]
        return raw_view(scales).tobytes() + (codes if index is None else codes[index]).tobytes()
    stored = t.to(torch.float16) if kind == "fp16" else t
    raw = raw_view(stored)
    return (raw if index is None else raw[index]).tobytes()


def decode_values(
    data: bytes, kind: str, dtype: torch.dtype, shape: tuple[int, ...], support: np.ndarray | None
) -> torch.Tensor:
    """Rebuild the tensor from stored values scattered at ``support`` (everywhere when ``None``)."""
    n = math.prod(shape)
    count = n if support is None else int(np.count_nonzero(support))
    if kind == "none":
        if data:
            raise ValueError(f"bool tensor carries {len(data)} value bytes, expected none")
        return (
            torch.from_numpy(support.copy()).reshape(shape)
            if support is not None
            else torch.zeros(shape, dtype=torch.bool)
        )
    store_dtype = {"exact": dtype, "fp16": torch.float16, "int8": torch.int8}[kind]
    size = torch.empty((), dtype=store_dtype).element_size()
    scale_bytes = 4 * shape[0] if kind == "int8" else 0
    if len(data) != scale_bytes + count * size:
        raise ValueError(f"{len(data)} value bytes for {count} values of {size} bytes (+{scale_bytes} scale bytes)")
    values = np.frombuffer(data[scale_bytes:], np.uint8).reshape(count, size)
    if support is None:
        raw = values
    else:
        raw = np.zeros((n, size), dtype=np.uint8)
        raw[support] = values
    stored = from_raw(raw, store_dtype, shape)
    if kind == "int8":
        scales = from_raw(np.frombuffer(data[:scale_bytes], np.uint8).reshape(-1, 4), torch.float32, (shape[0],))
        return dequantize_int8(stored, scales, dtype)
    return stored.to(dtype)


@dataclass
class Encoded:
    spec: dict
    payload: bytes
    positions: np.ndarray  # the support a loader derives from this tensor (for mask references)


def encode_tensor(t: torch.Tensor, precision: str) -> Encoded:
    raw = raw_view(t)
    support = support_of(raw)
    n, nnz = t.numel(), int(np.count_nonzero(support))
    kind = value_kind(t, precision)
    dense_size = n * t.element_size() if kind == "none" else value_bytes(kind, t, n)
    enc, params, pos_size = plan_positions(support) if n else ("dense", {}, 0)
    spec = {"shape": list(t.shape), "dtype": DTYPE_NAMES[t.dtype], "values": kind, "nnz": nnz}
    if n == 0 or dense_size <= pos_size + value_bytes(kind, t, nnz):
        payload = raw.tobytes() if kind == "none" else encode_values(t, kind, None)
        spec.update(enc="dense", values="exact" if kind == "none" else kind)
        positions = (
            support
            if kind in ("exact", "none")
            else support_of(raw_view(decode_values(payload, kind, t.dtype, tuple(t.shape), None)))
        )
        return Encoded(spec, payload, positions)
    pos = encode_positions(support, enc, params)
    spec.update(enc=enc, pos_bytes=len(pos), **params)
    return Encoded(spec, pos + encode_values(t, kind, np.flatnonzero(support)), support)


def decode_tensor(spec: dict, payload: bytes) -> tuple[torch.Tensor, np.ndarray]:
    shape, dtype, kind, nnz = tuple(spec["shape"]), DTYPES[spec["dtype"]], spec["values"], spec["nnz"]
    if spec["enc"] == "dense":
        t = decode_values(payload, kind, dtype, shape, None)
        return t, support_of(raw_view(t))
    pos_bytes = spec["pos_bytes"]
    if not 0 <= pos_bytes <= len(payload):
        raise ValueError(f"positions of {pos_bytes} bytes in a payload of {len(payload)}")
    support = decode_positions(payload[:pos_bytes], spec, math.prod(shape), nnz)
    return decode_values(payload[pos_bytes:], kind, dtype, shape, support), support
