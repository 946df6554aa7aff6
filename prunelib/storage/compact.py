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
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save
from safetensors.torch import save as st_torch_save

from prunelib.deploy.precision import (
    PRECISIONS,
    check_precision,
)
from prunelib.fileio import write_bytes_atomic
from prunelib.storage.codec import (
    DTYPE_NAMES,
    DTYPES,
    Encoded,
    crc32,
    decode_tensor,
    decode_values,
    encode_tensor,
    is_indicator,
    raw_view,
    support_of,
    value_bytes,
    value_kind,
)
from prunelib.storage.positions import INDEX_TYPES

FORMAT_NAME = "prunelib.storage.compact"
FORMAT_VERSION = 1

#: Encodings a file may name; anything else is rejected on load.
ENCODINGS: tuple[str, ...] = ("dense", "bitmask", "index", "rice", "support")

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
        if t.dtype not in DTYPE_NAMES:
            raise TypeError(f"{name!r}: dtype {t.dtype} not supported; use one of {sorted(DTYPES)}")
        out[name] = t.detach().cpu().contiguous()
    return out


# ---------------------------------------------------------------- position codecs


# ---------------------------------------------------------------- value codecs


# ---------------------------------------------------------------- per-tensor encoding


def _reference_target(name: str, t: torch.Tensor, encoded: Mapping[str, Encoded], candidates: set[str]) -> str | None:
    """The tensor whose stored support ``t`` (a 0/1 tensor) equals, preferring ``x`` for ``x_mask``."""
    support = support_of(raw_view(t))
    base = name[: -len("_mask")] if name.endswith("_mask") else None
    order = ([base] if base is not None and base in encoded else []) + [k for k in encoded if k != base]
    for other in order:
        if other == name or other in candidates:
            continue
        if tuple(encoded[other].spec["shape"]) == tuple(t.shape) and np.array_equal(encoded[other].positions, support):
            return other
    return None


def _encode_all(tensors: dict[str, torch.Tensor], precision: str) -> dict[str, Encoded]:
    candidates = {k for k, t in tensors.items() if t.numel() and is_indicator(raw_view(t), t.dtype)}
    encoded = {k: encode_tensor(t, precision) for k, t in tensors.items()}
    for name in tensors:
        if name not in candidates:
            continue
        target = _reference_target(name, tensors[name], encoded, candidates)
        if target is not None:
            t = tensors[name]
            spec = {
                "shape": list(t.shape),
                "dtype": DTYPE_NAMES[t.dtype],
                "values": "none",
                "nnz": int(np.count_nonzero(encoded[target].positions)),
                "enc": "support",
                "ref": target,
            }
            encoded[name] = Encoded(spec, b"", encoded[target].positions)
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
    candidates = {k for k, t in tensors.items() if t.numel() and is_indicator(raw_view(t), t.dtype)}
    supports = {k: support_of(raw_view(t)) for k, t in tensors.items()}
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
        total += value_bytes(value_kind(t, precision), t, nnz) + (n * _binary_entropy(nnz / n) / 8 if n else 0.0)
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
        spec = dict(item.spec, bytes=len(item.payload), crc=crc32(item.payload))
        decoded, _ = decode_tensor(spec, item.payload) if spec["enc"] != "support" else (None, None)
        if decoded is None:
            decoded = decode_values(b"", "none", torch.bool, tuple(t.shape), item.positions).to(t.dtype)
        spec["raw_crc"] = crc32(raw_view(decoded))
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
        "tensors_crc": str(crc32(table.encode("utf-8"))),  # names and specs are covered too
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
        return isinstance(spec.get("idx"), str) and spec["idx"] in INDEX_TYPES
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
    if not isinstance(table, str) or meta.get("tensors_crc") != str(crc32(table.encode("utf-8"))):
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
        if not isinstance(spec.get("dtype"), str) or spec["dtype"] not in DTYPES:
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
        if crc32(payload) != spec["crc"]:
            raise _bad(path, f"checksum mismatch in tensor {name!r} (payload corrupted)")
        try:
            decoded[name] = decode_tensor(spec, payload)
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError, OverflowError) as exc:
            raise _bad(path, f"tensor {name!r} does not decode: {exc}") from None
    out: dict[str, torch.Tensor] = {}
    for name, spec in specs:
        if spec["enc"] == "support":
            target = decoded.get(str(spec.get("ref")))
            shape = tuple(spec["shape"])
            if target is None or target[1].size != math.prod(shape):
                raise _bad(
                    path, f"tensor {name!r} references {spec.get('ref')!r}, which is not a stored tensor of its size"
                )
            t = torch.from_numpy(target[1].copy()).reshape(shape).to(DTYPES[spec["dtype"]])
        else:
            t = decoded[name][0]
        if crc32(raw_view(t)) != spec["raw_crc"]:
            raise _bad(path, f"checksum mismatch in decoded tensor {name!r}")
        out[name] = t
    return out


# ---------------------------------------------------------------- models
