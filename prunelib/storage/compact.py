"""Compact lossless storage of pruned models: each tensor in its smallest sparse encoding.

A file is a safetensors container (loading never unpickles) holding one ``uint8`` payload per
tensor; the header metadata holds, as JSON, the format version and per tensor its encoding,
shape, dtype, number of nonzeros and CRC-32 of the payload and of the decoded bytes, and the
table itself carries a CRC-32 (so a flipped name is caught too). Per tensor
the writer keeps the smallest of:

* ``dense``   – the raw values;
* ``bitmask`` – one bit per element, then the nonzero values;
* ``index``   – flat positions in the narrowest unsigned type that holds them, then the values;
* ``rice``    – gaps between positions, Golomb–Rice coded, then the values;
* ``support`` – a 0/1 tensor equal to another tensor's support (a pruning mask and its weight)
  is stored as a reference: no payload at all.

``index`` and ``rice`` code the positions of whichever is rarer, nonzeros or zeros, so a
95 %-dense tensor pays for its 5 % holes. "Nonzero" means "some bit set", so ``-0.0`` and NaN
payloads survive bit-exactly.

Why Golomb–Rice and not an arithmetic coder (e.g. ``constriction``): positions of the rarer
symbol in a tensor of density ``d`` have near-geometric gaps, for which Golomb codes are the
optimal prefix codes; restricting the divisor to a power of two (Rice) costs at most ~3 % over
the binary entropy ``n·H(d)`` at every density (computed for geometric gaps: 0.3 %–3 %), well
inside the 10 % budget, and the values, not the positions, dominate the file. Storing the
unary quotients and the fixed-width remainders as two separate bit streams makes both encoding
and decoding vectorised numpy (no Python loop, no compiled dependency to build for the
Raspberry Pi). Values are stored raw (float bits are close to incompressible).

Value precision (``"fp32"`` exact, ``"fp16"``, ``"int8"``) follows :mod:`prunelib.deploy.precision`;
positions and masks stay exact at every precision. Byte order is little-endian (x86, ARM).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save
from safetensors.torch import save as st_torch_save
from torch import nn
from torch.nn.utils import prune

from prunelib.deploy.precision import (
    PRECISIONS,
    check_precision,
    dequantize_int8,
    int8_scales,
    quantize_int8,
    stored_kind,
)
from prunelib.fileio import write_bytes_atomic
from prunelib.pruning.criteria import refresh_masked

FORMAT_NAME = "prunelib.storage.compact"
FORMAT_VERSION = 1

#: Encodings a file may name; anything else is rejected on load.
ENCODINGS: tuple[str, ...] = ("dense", "bitmask", "index", "rice", "support")

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
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
_INDEX_TYPES = ("<u1", "<u2", "<u4", "<u8")
_VALUE_KINDS = ("exact", "fp16", "int8", "none")


# ---------------------------------------------------------------- public results


@dataclass(frozen=True)
class TensorEntry:
    """How one tensor was stored: encoding, value kind, shape, nonzeros and payload size."""

    name: str
    encoding: str
    values: str  # "exact" | "fp16" | "int8" | "none" (bool: the support is the whole content)
    shape: tuple[int, ...]
    dtype: str
    nnz: int
    payload_bytes: int


@dataclass(frozen=True)
class CompactStats:
    """Sizes of one compact file and how each tensor went in."""

    precision: str
    disk_compact_bytes: int  # the whole file
    disk_dense_bytes: int  # the same tensors as a plain safetensors file
    disk_bound_bytes: int  # :func:`entropy_bound_bytes` of the tensors at this precision
    entries: tuple[TensorEntry, ...]
    path: str | None = None

    @property
    def encodings(self) -> dict[str, str]:
        """Tensor name -> encoding chosen."""
        return {e.name: e.encoding for e in self.entries}

    @property
    def ratio_to_bound(self) -> float:
        """``disk_compact_bytes / disk_bound_bytes`` (inf when the bound is 0)."""
        return self.disk_compact_bytes / self.disk_bound_bytes if self.disk_bound_bytes else math.inf


# ---------------------------------------------------------------- tensor bytes


def _check_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping name -> Tensor, got {type(tensors).__name__}")
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"tensor names must be non-empty strings other than '__metadata__', got {name!r}")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name!r}: expected a torch.Tensor, got {type(t).__name__}")
        if t.layout != torch.strided:
            raise TypeError(f"{name!r}: only dense (strided) tensors are stored, got layout {t.layout}")
        if t.dtype not in _DTYPE_NAMES:
            raise TypeError(f"{name!r}: dtype {t.dtype} not supported; use one of {sorted(DTYPES)}")
        out[name] = t.detach().cpu().contiguous()
    return out


def _raw(t: torch.Tensor) -> np.ndarray:
    """The bytes of ``t`` as an ``(numel, element_size)`` uint8 array (a view where possible)."""
    if t.numel() == 0:
        return np.zeros((0, t.element_size()), dtype=np.uint8)
    flat = t.reshape(-1).contiguous()
    if flat.dtype == torch.bool:
        flat = flat.view(torch.uint8)
    return flat.view(torch.uint8).numpy().reshape(t.numel(), t.element_size())


def _support(raw: np.ndarray) -> np.ndarray:
    """Which elements have any bit set (so ``-0.0`` and NaN count as nonzero)."""
    if raw.shape[1] == 1:
        return raw[:, 0] != 0
    return raw.any(axis=1)


def _from_raw(raw: np.ndarray, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    if raw.size == 0:
        return torch.zeros(shape, dtype=dtype)
    flat = torch.from_numpy(np.ascontiguousarray(raw).reshape(-1).copy())
    if dtype == torch.bool:
        return flat.view(torch.bool).reshape(shape)
    return flat.view(dtype).reshape(shape)


def _crc(data: bytes | np.ndarray) -> int:
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).tobytes()
    return zlib.crc32(data) & 0xFFFFFFFF


def _is_indicator(raw: np.ndarray, dtype: torch.dtype) -> bool:
    """Every element is 0 or this dtype's 1 (bit patterns): the tensor could be a mask."""
    one = _raw(torch.ones(1, dtype=dtype))[0]
    return bool(((raw == one).all(axis=1) | ~_support(raw)).all())


# ---------------------------------------------------------------- position codecs


def _index_type(n: int) -> str:
    for code in _INDEX_TYPES:
        if n - 1 <= np.iinfo(np.dtype(code)).max:
            return code
    raise ValueError(f"tensor of {n} elements is too large to index")


def _gaps(positions: np.ndarray) -> np.ndarray:
    return np.diff(positions, prepend=-1) - 1


def _rice_k(gaps: np.ndarray) -> tuple[int, int]:
    """The Rice parameter giving the fewest bytes, and that byte count."""
    m = gaps.size
    best = (0, 0) if m == 0 else (-1, -1)
    if m == 0:
        return best
    top = max(int(gaps.max()).bit_length(), 1)
    for k in range(top + 1):
        ubits = int((gaps >> k).sum()) + m
        size = -(-ubits // 8) + -(-(m * k) // 8)
        if best[1] < 0 or size < best[1]:
            best = (k, size)
    return best


def _rice_encode(gaps: np.ndarray, k: int) -> tuple[bytes, int]:
    """Unary quotients then k-bit remainders, as two byte-aligned little-endian bit streams."""
    q = gaps >> k
    ubits = int(q.sum()) + gaps.size
    unary = np.ones(ubits, dtype=np.uint8)
    unary[np.cumsum(q + 1) - 1] = 0
    rem = ((gaps[:, None] >> np.arange(k, dtype=np.int64)) & 1).astype(np.uint8)
    return np.packbits(unary, bitorder="little").tobytes() + np.packbits(
        rem.reshape(-1), bitorder="little"
    ).tobytes(), ubits


def _rice_decode(data: bytes, m: int, k: int, ubits: int) -> np.ndarray:
    ubytes = -(-ubits // 8)
    if len(data) != ubytes + -(-(m * k) // 8):
        raise ValueError(f"rice stream of {len(data)} bytes does not fit {m} gaps (k={k}, {ubits} unary bits)")
    unary = np.unpackbits(np.frombuffer(data[:ubytes], np.uint8), count=ubits, bitorder="little")
    ends = np.flatnonzero(unary == 0)
    if ends.size != m or (m and ends[-1] != ubits - 1):
        raise ValueError(f"rice stream holds {ends.size} codes, header says {m}")
    q = np.diff(ends, prepend=-1) - 1
    rem = np.unpackbits(np.frombuffer(data[ubytes:], np.uint8), count=m * k, bitorder="little")
    r = (rem.reshape(m, k).astype(np.int64) << np.arange(k, dtype=np.int64)).sum(axis=1) if k else 0
    return np.cumsum(((q.astype(np.int64) << k) | r) + 1) - 1


def _plan_positions(support: np.ndarray) -> tuple[str, dict, int]:
    """Cheapest way to code ``support`` (bitmask, index or rice) and its byte count."""
    n = support.size
    nnz = int(np.count_nonzero(support))
    invert = n - nnz < nnz
    m = n - nnz if invert else nnz
    plans: list[tuple[int, str, dict]] = [(-(-n // 8), "bitmask", {})]
    code = _index_type(n)
    plans.append((m * np.dtype(code).itemsize, "index", {"inv": invert, "idx": code}))
    if m:
        positions = np.flatnonzero(~support if invert else support)
        k, size = _rice_k(_gaps(positions))
        plans.append((size, "rice", {"inv": invert, "k": k}))
    else:
        plans.append((0, "rice", {"inv": invert, "k": 0}))
    size, enc, params = min(plans, key=lambda p: p[0])  # ties keep the simpler, earlier one
    return enc, params, size


def _encode_positions(support: np.ndarray, enc: str, params: dict) -> bytes:
    if enc == "bitmask":
        return np.packbits(support, bitorder="little").tobytes()
    positions = np.flatnonzero(~support if params["inv"] else support)
    if enc == "index":
        return positions.astype(params["idx"]).tobytes()
    data, ubits = _rice_encode(_gaps(positions), params["k"])
    params["ubits"] = ubits
    return data


def _decode_positions(data: bytes, spec: dict, n: int, nnz: int) -> np.ndarray:
    enc = spec["enc"]
    if enc == "bitmask":
        if len(data) != -(-n // 8):
            raise ValueError(f"bitmask of {len(data)} bytes for {n} elements")
        support = np.unpackbits(np.frombuffer(data, np.uint8), count=n, bitorder="little").astype(bool)
    else:
        invert = bool(spec["inv"])
        m = n - nnz if invert else nnz
        if enc == "index":
            code = spec["idx"]
            if code not in _INDEX_TYPES or len(data) != m * np.dtype(code).itemsize:
                raise ValueError(f"index list ({code!r}, {len(data)} bytes) does not hold {m} positions")
            positions = np.frombuffer(data, code).astype(np.int64)
            if m and (np.any(np.diff(positions) <= 0)):
                raise ValueError("index list is not strictly increasing")
        else:
            positions = _rice_decode(data, m, int(spec["k"]), int(spec["ubits"]))
        if m and (positions[0] < 0 or positions[-1] >= n):
            raise ValueError(f"position {int(positions[-1])} outside a tensor of {n} elements")
        support = np.zeros(n, dtype=bool)
        support[positions] = True
        if invert:
            support = ~support
    if int(np.count_nonzero(support)) != nnz:
        raise ValueError(f"positions give {int(np.count_nonzero(support))} nonzeros, header says {nnz}")
    return support


# ---------------------------------------------------------------- value codecs


def _value_kind(t: torch.Tensor, precision: str) -> str:
    return "none" if t.dtype == torch.bool else stored_kind(t, precision)


def _value_bytes(kind: str, t: torch.Tensor, count: int) -> int:
    """Bytes of ``count`` stored values of ``t`` (plus int8 scales)."""
    if kind == "none":
        return 0
    if kind == "exact":
        return count * t.element_size()
    if kind == "fp16":
        return count * 2
    return count + 4 * t.shape[0]


def _encode_values(t: torch.Tensor, kind: str, index: np.ndarray | None) -> bytes:
    """The stored values of ``t`` at flat ``index`` (all elements when ``None``)."""
    if kind == "none":
        return b""
    if kind == "int8":
        scales = int8_scales(t)
        codes = _raw(quantize_int8(t, scales))[:, 0]
        return _raw(scales).tobytes() + (codes if index is None else codes[index]).tobytes()
    stored = t.to(torch.float16) if kind == "fp16" else t
    raw = _raw(stored)
    return (raw if index is None else raw[index]).tobytes()


def _decode_values(
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
    stored = _from_raw(raw, store_dtype, shape)
    if kind == "int8":
        scales = _from_raw(np.frombuffer(data[:scale_bytes], np.uint8).reshape(-1, 4), torch.float32, (shape[0],))
        return dequantize_int8(stored, scales, dtype)
    return stored.to(dtype)


# ---------------------------------------------------------------- per-tensor encoding


@dataclass
class _Encoded:
    spec: dict
    payload: bytes
    positions: np.ndarray  # the support a loader derives from this tensor (for mask references)


def _encode(t: torch.Tensor, precision: str) -> _Encoded:
    raw = _raw(t)
    support = _support(raw)
    n, nnz = t.numel(), int(np.count_nonzero(support))
    kind = _value_kind(t, precision)
    dense_size = n * t.element_size() if kind == "none" else _value_bytes(kind, t, n)
    enc, params, pos_size = _plan_positions(support) if n else ("dense", {}, 0)
    spec = {"shape": list(t.shape), "dtype": _DTYPE_NAMES[t.dtype], "values": kind, "nnz": nnz}
    if n == 0 or dense_size <= pos_size + _value_bytes(kind, t, nnz):
        payload = raw.tobytes() if kind == "none" else _encode_values(t, kind, None)
        spec.update(enc="dense", values="exact" if kind == "none" else kind)
        positions = (
            support
            if kind in ("exact", "none")
            else _support(_raw(_decode_values(payload, kind, t.dtype, tuple(t.shape), None)))
        )
        return _Encoded(spec, payload, positions)
    pos = _encode_positions(support, enc, params)
    spec.update(enc=enc, pos_bytes=len(pos), **params)
    return _Encoded(spec, pos + _encode_values(t, kind, np.flatnonzero(support)), support)


def _decode(spec: dict, payload: bytes) -> tuple[torch.Tensor, np.ndarray]:
    shape, dtype, kind, nnz = tuple(spec["shape"]), DTYPES[spec["dtype"]], spec["values"], spec["nnz"]
    if spec["enc"] == "dense":
        t = _decode_values(payload, kind, dtype, shape, None)
        return t, _support(_raw(t))
    pos_bytes = spec["pos_bytes"]
    if not 0 <= pos_bytes <= len(payload):
        raise ValueError(f"positions of {pos_bytes} bytes in a payload of {len(payload)}")
    support = _decode_positions(payload[:pos_bytes], spec, math.prod(shape), nnz)
    return _decode_values(payload[pos_bytes:], kind, dtype, shape, support), support


def _reference_target(name: str, t: torch.Tensor, encoded: Mapping[str, _Encoded], candidates: set[str]) -> str | None:
    """The tensor whose stored support ``t`` (a 0/1 tensor) equals, preferring ``x`` for ``x_mask``."""
    support = _support(_raw(t))
    base = name[: -len("_mask")] if name.endswith("_mask") else None
    order = ([base] if base in encoded else []) + [k for k in encoded if k != base]
    for other in order:
        if other == name or other in candidates:
            continue
        if tuple(encoded[other].spec["shape"]) == tuple(t.shape) and np.array_equal(encoded[other].positions, support):
            return other
    return None


def _encode_all(tensors: dict[str, torch.Tensor], precision: str) -> dict[str, _Encoded]:
    candidates = {k for k, t in tensors.items() if t.numel() and _is_indicator(_raw(t), t.dtype)}
    encoded = {k: _encode(t, precision) for k, t in tensors.items()}
    for name in tensors:
        if name not in candidates:
            continue
        target = _reference_target(name, tensors[name], encoded, candidates)
        if target is not None:
            t = tensors[name]
            spec = {
                "shape": list(t.shape),
                "dtype": _DTYPE_NAMES[t.dtype],
                "values": "none",
                "nnz": int(np.count_nonzero(encoded[target].positions)),
                "enc": "support",
                "ref": target,
            }
            encoded[name] = _Encoded(spec, b"", encoded[target].positions)
    return encoded


# ---------------------------------------------------------------- bound


def _binary_entropy(d: float) -> float:
    return 0.0 if d <= 0.0 or d >= 1.0 else -(d * math.log2(d) + (1 - d) * math.log2(1 - d))


def entropy_bound_bytes(tensors: Mapping[str, torch.Tensor], precision: str = "fp32") -> int:
    """The size target ``sum(nnz * value_bytes + n * H(d) / 8)`` over tensors, rounded up.

    ``d`` is a tensor's density (elements with any bit set), ``H`` the binary entropy in
    bits, ``value_bytes`` the bytes per stored value at ``precision`` (int8 adds its fp32
    per-channel scales; bool tensors store no values). A 0/1 tensor equal to another
    tensor's support (a pruning mask) carries no information of its own and counts 0.

    Raises:
        ValueError / TypeError: bad precision, names or tensors.
    """
    check_precision(precision)
    tensors = _check_tensors(tensors)
    candidates = {k for k, t in tensors.items() if t.numel() and _is_indicator(_raw(t), t.dtype)}
    supports = {k: _support(_raw(t)) for k, t in tensors.items()}
    total = 0.0
    for name, t in tensors.items():
        if name in candidates and any(
            o != name
            and o not in candidates
            and supports[o].shape == supports[name].shape
            and tuple(tensors[o].shape) == tuple(t.shape)
            and np.array_equal(supports[o], supports[name])
            for o in tensors
        ):
            continue
        n, nnz = t.numel(), int(np.count_nonzero(supports[name]))
        total += _value_bytes(_value_kind(t, precision), t, nnz) + (n * _binary_entropy(nnz / n) / 8 if n else 0.0)
    return math.ceil(total)


# ---------------------------------------------------------------- files


def _serialize(tensors: Mapping[str, torch.Tensor], precision: str) -> tuple[bytes, CompactStats]:
    check_precision(precision)
    tensors = _check_tensors(tensors)
    encoded = _encode_all(tensors, precision)
    blobs: dict[str, np.ndarray] = {}
    specs: list[list] = []
    entries: list[TensorEntry] = []
    for name, t in tensors.items():
        item = encoded[name]
        spec = dict(item.spec, bytes=len(item.payload), crc=_crc(item.payload))
        decoded, _ = _decode(spec, item.payload) if spec["enc"] != "support" else (None, None)
        if decoded is None:
            decoded = _decode_values(b"", "none", torch.bool, tuple(t.shape), item.positions).to(t.dtype)
        spec["raw_crc"] = _crc(_raw(decoded))
        if item.payload:
            blobs[name] = np.frombuffer(item.payload, np.uint8)
        specs.append([name, spec])
        entries.append(
            TensorEntry(
                name, spec["enc"], spec["values"], tuple(t.shape), spec["dtype"], spec["nnz"], len(item.payload)
            )
        )
    table = json.dumps(specs, separators=(",", ":"))
    metadata = {
        "format": FORMAT_NAME,
        "version": str(FORMAT_VERSION),
        "precision": precision,
        "tensors": table,
        "tensors_crc": str(_crc(table.encode("utf-8"))),  # names and specs are covered too
    }
    data = st_save(blobs, metadata=metadata)
    dense = len(st_torch_save({k: v.clone() for k, v in tensors.items()})) if tensors else len(st_save({}))
    stats = CompactStats(precision, len(data), dense, entropy_bound_bytes(tensors, precision), tuple(entries))
    return data, stats


def compact_stats(tensors: Mapping[str, torch.Tensor], precision: str = "fp32") -> CompactStats:
    """Sizes and encodings :func:`save_compact` would produce, without writing a file."""
    return _serialize(tensors, precision)[1]


def compact_bytes(tensors: Mapping[str, torch.Tensor], precision: str = "fp32") -> int:
    """Size in bytes of the compact file of ``tensors`` at ``precision`` (nothing is written)."""
    return _serialize(tensors, precision)[1].disk_compact_bytes


def save_compact(tensors: Mapping[str, torch.Tensor], path: Path | str, precision: str = "fp32") -> CompactStats:
    """Write ``tensors`` to ``path`` (atomically) in the smallest encoding per tensor.

    Lossless at ``"fp32"`` (every dtype, bit for bit); at ``"fp16"``/``"int8"`` values are
    rounded as :func:`prunelib.deploy.precision.round_trip` does, positions and masks stay exact.

    Raises:
        ValueError: unknown precision, bad tensor name, int8 with NaN/inf values.
        TypeError: a value that is not a dense tensor of a supported dtype.
    """
    data, stats = _serialize(tensors, precision)
    write_bytes_atomic(path, data)
    return replace(stats, path=str(path))


def _bad(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: not a valid compact file: {what}")


def _header(data: bytes, path: Path) -> dict:
    """The safetensors header JSON, checked for shape before anything trusts it."""
    if len(data) < 8:
        raise _bad(path, f"bad header: file of {len(data)} bytes is too short for a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise _bad(path, f"bad header: header length {size} exceeds the file ({len(data)} bytes; truncated?)")
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"bad header: not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _bad(path, "bad header: not a JSON object")
    end = 8 + size
    for key, info in header.items():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise _bad(path, f"bad header: entry {key!r} has no valid data_offsets")
        if end + offsets[1] > len(data):
            raise _bad(path, f"truncated payload: {key!r} ends at byte {end + offsets[1]}, file has {len(data)}")
    return header


def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _positional_fields_ok(spec: dict) -> bool:
    """The fields each encoding's decoder reads are present and in range."""
    enc = spec["enc"]
    if enc == "support":
        return isinstance(spec.get("ref"), str)
    if enc == "dense":
        return True
    if not _is_int(spec.get("pos_bytes"), 0, spec["bytes"]):
        return False
    if enc == "bitmask":
        return True
    if not isinstance(spec.get("inv"), bool):
        return False
    if enc == "index":
        return spec.get("idx") in _INDEX_TYPES
    return _is_int(spec.get("k"), 0, 63) and _is_int(spec.get("ubits"), 0, 8 * spec["bytes"])


def _specs(header: dict, path: Path) -> list[tuple[str, dict]]:
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise _bad(path, f"bad header: no {FORMAT_NAME!r} metadata (a plain safetensors file?)")
    if meta.get("version") != str(FORMAT_VERSION):
        raise _bad(path, f"unsupported format version {meta.get('version')!r} (this reader knows {FORMAT_VERSION})")
    if meta.get("precision") not in PRECISIONS:
        raise _bad(path, f"bad header: unknown precision {meta.get('precision')!r}")
    table = meta.get("tensors", "")
    if not isinstance(table, str) or meta.get("tensors_crc") != str(_crc(table.encode("utf-8"))):
        raise _bad(path, "checksum mismatch in the tensor table (header corrupted)")
    try:
        specs = json.loads(table)
    except json.JSONDecodeError as exc:
        raise _bad(path, f"bad header: tensor table is not JSON ({exc})") from None
    if not isinstance(specs, list) or not all(
        isinstance(s, list) and len(s) == 2 and isinstance(s[0], str) and isinstance(s[1], dict) for s in specs
    ):
        raise _bad(path, "bad header: tensor table is not a list of [name, spec]")
    out = []
    for name, spec in specs:
        enc = spec.get("enc")
        if enc not in ENCODINGS:
            raise _bad(path, f"unknown encoding {enc!r} for tensor {name!r}")
        if spec.get("dtype") not in DTYPES:
            raise _bad(path, f"unknown dtype {spec.get('dtype')!r} for tensor {name!r}")
        if spec.get("values") not in _VALUE_KINDS:
            raise _bad(path, f"unknown value kind {spec.get('values')!r} for tensor {name!r}")
        shape = spec.get("shape")
        if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise _bad(path, f"bad shape {shape!r} for tensor {name!r}")
        for key in ("nnz", "bytes", "crc", "raw_crc"):
            if not isinstance(spec.get(key), int) or spec[key] < 0:
                raise _bad(path, f"bad field {key}={spec.get(key)!r} for tensor {name!r}")
        if math.prod(shape) >= 2**48 or spec["nnz"] > math.prod(shape):
            raise _bad(path, f"tensor {name!r}: shape {shape} with {spec['nnz']} nonzeros is not plausible")
        if not _positional_fields_ok(spec):
            raise _bad(path, f"bad position fields for tensor {name!r} ({enc}): {spec}")
        if spec["values"] == "int8" and len(shape) < 2:
            raise _bad(path, f"int8 values need >= 2 dims, tensor {name!r} has shape {shape}")
        out.append((name, spec))
    return out


def load_compact(path: Path | str) -> dict[str, torch.Tensor]:
    """Read a file written by :func:`save_compact`; tensors come back in the order saved.

    Every payload's CRC-32 is checked before it is decoded and every decoded tensor's after.
    Nothing is unpickled.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a compact file or is damaged; the message names the file
            and the problem (bad header, truncated payload, checksum mismatch, unknown encoding).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"compact file {path} does not exist")
    data = path.read_bytes()
    specs = _specs(_header(data, path), path)
    try:
        blobs = st_load(data)
    except Exception as exc:  # safetensors raises its own error types; report them uniformly
        raise _bad(path, f"bad header: safetensors cannot read it ({exc})") from None
    decoded: dict[str, tuple[torch.Tensor, np.ndarray]] = {}
    for name, spec in specs:
        if spec["enc"] == "support":
            continue
        payload = blobs[name].tobytes() if name in blobs else b""
        if len(payload) != spec["bytes"]:
            raise _bad(
                path, f"truncated payload: tensor {name!r} has {len(payload)} bytes, header says {spec['bytes']}"
            )
        if _crc(payload) != spec["crc"]:
            raise _bad(path, f"checksum mismatch in tensor {name!r} (payload corrupted)")
        try:
            decoded[name] = _decode(spec, payload)
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError, OverflowError) as exc:
            raise _bad(path, f"tensor {name!r} does not decode: {exc}") from None
    out: dict[str, torch.Tensor] = {}
    for name, spec in specs:
        if spec["enc"] == "support":
            target = decoded.get(spec.get("ref"))
            shape = tuple(spec["shape"])
            if target is None or target[1].size != math.prod(shape):
                raise _bad(
                    path, f"tensor {name!r} references {spec.get('ref')!r}, which is not a stored tensor of its size"
                )
            t = torch.from_numpy(target[1].copy()).reshape(shape).to(DTYPES[spec["dtype"]])
        else:
            t = decoded[name][0]
        if _crc(_raw(t)) != spec["raw_crc"]:
            raise _bad(path, f"checksum mismatch in decoded tensor {name!r}")
        out[name] = t
    return out


# ---------------------------------------------------------------- models


def _pruned(module: nn.Module) -> list[str]:
    return [n[: -len("_orig")] for n, _ in module.named_parameters(recurse=False) if n.endswith("_orig")]


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a pruned model's file holds: effective parameters, bool masks, other buffers.

    Names follow ``state_dict`` after ``prune.remove`` (``layers.0.weight``), plus
    ``layers.0.weight_mask`` for each pruned parameter. Pruned entries are stored as +0.0
    (``orig * mask`` would give -0.0 for negative ``orig``, breaking the shared support).
    ``model`` is not mutated.

    Note:
        The values of ``*_orig`` at pruned positions never reach the forward pass and are
        not kept; save with :mod:`prunelib.storage.checkpoint` where rewinding needs them.

    Raises:
        ValueError: a mask holding values other than 0 and 1.
    """
    out: dict[str, torch.Tensor] = {}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        pruned = _pruned(module)
        masks: dict[str, torch.Tensor] = {}
        for p_name, param in module.named_parameters(recurse=False):
            if p_name.endswith("_orig"):
                base = p_name[: -len("_orig")]
                mask = getattr(module, f"{base}_mask").detach()
                if not bool(((mask == 0) | (mask == 1)).all()):
                    raise ValueError(f"{prefix}{base}_mask holds values other than 0/1: {mask.unique()[:5].tolist()}")
                keep = mask != 0
                out[prefix + base] = torch.where(keep, param.detach(), torch.zeros_like(param)).contiguous()
                masks[f"{prefix}{base}_mask"] = keep.contiguous()
            else:
                out[prefix + p_name] = param.detach().contiguous()
        out.update(masks)
        for b_name, buf in module.named_buffers(recurse=False):
            if b_name.endswith("_mask") and b_name[: -len("_mask")] in pruned:
                continue
            out[prefix + b_name] = buf.detach().contiguous()
    return out


@torch.no_grad()
def load_into(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> nn.Module:
    """Restore :func:`model_tensors` output into ``model`` (mutated, returned).

    A ``*_mask`` entry re-applies pruning with ``prune.custom_from_mask`` (or overwrites the
    mask of a parameter already pruned); the effective values go to ``*_orig``.

    Raises:
        ValueError: names missing or unexpected, shapes differ, a mask is not 0/1, or the model
            is pruned where ``tensors`` has no mask.
    """
    modules = dict(model.named_modules())
    remaining = dict(tensors)

    def split(key: str) -> tuple[nn.Module | None, str]:
        mod_name, _, attr = key.rpartition(".")
        return modules.get(mod_name), attr

    def check_shape(key: str, have: torch.Tensor, want: torch.Tensor) -> None:
        if tuple(have.shape) != tuple(want.shape):
            raise ValueError(f"{key!r}: tensor has shape {tuple(have.shape)}, model expects {tuple(want.shape)}")

    for key in [k for k in tensors if k.endswith("_mask")]:
        module, attr = split(key)
        base = attr[: -len("_mask")]
        if (
            module is None
            or not hasattr(module, base)
            or (base not in dict(module.named_parameters(recurse=False)) and base not in _pruned(module))
        ):
            continue  # not a pruning mask: handled as a buffer below
        mask = remaining.pop(key)
        check_shape(key, mask, getattr(module, base))
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{key!r} holds values other than 0/1")
        if base in _pruned(module):
            buf = getattr(module, f"{base}_mask")
            buf.copy_(mask.to(buf.dtype))
        else:
            prune.custom_from_mask(module, base, mask.to(device=getattr(module, base).device))

    missing: list[str] = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        pruned = _pruned(module)
        for p_name, param in module.named_parameters(recurse=False):
            base = p_name[: -len("_orig")] if p_name.endswith("_orig") else p_name
            key = prefix + base
            if key not in remaining:
                missing.append(key)
                continue
            value = remaining.pop(key)
            check_shape(key, value, param)
            param.copy_(value)
        for b_name, buf in module.named_buffers(recurse=False):
            if b_name.endswith("_mask") and b_name[: -len("_mask")] in pruned:
                if prefix + b_name not in tensors:
                    raise ValueError(f"model is pruned at {prefix + b_name[:-5]!r} but tensors hold no mask for it")
                continue
            key = prefix + b_name
            if key not in remaining:
                missing.append(key)
                continue
            value = remaining.pop(key)
            check_shape(key, value, buf)
            buf.copy_(value)
    if missing or remaining:
        raise ValueError(f"tensors do not fit the model: missing {missing[:10]}, unexpected {sorted(remaining)[:10]}")
    refresh_masked(model)
    return model


def save_model_compact(model: nn.Module, path: Path | str, precision: str = "fp32") -> CompactStats:
    """``save_compact(model_tensors(model), path, precision)``: a pruned model in one call."""
    return save_compact(model_tensors(model), path, precision)


def load_model_compact(model: nn.Module, path: Path | str) -> nn.Module:
    """``load_into(model, load_compact(path))``: restore a saved pruned model into a fresh one."""
    return load_into(model, load_compact(path))
