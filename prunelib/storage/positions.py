"""Where the nonzeros of a sparse tensor sit, stored compactly: plain indices or Golomb-Rice coded gaps.

Part of the compact format (:mod:`prunelib.storage.compact`).
"""

from __future__ import annotations

import numpy as np

#: Unsigned little-endian index types, smallest first.
INDEX_TYPES = ("<u1", "<u2", "<u4", "<u8")


def index_type(n: int) -> str:
    for code in INDEX_TYPES:
        if n - 1 <= np.iinfo(np.dtype(code)).max:
            return code
    raise ValueError(f"tensor of {n} elements is too large to index")


def gaps(positions: np.ndarray) -> np.ndarray:
    return np.diff(positions, prepend=-1) - 1


def rice_k(gaps: np.ndarray) -> tuple[int, int]:
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


def rice_encode(gaps: np.ndarray, k: int) -> tuple[bytes, int]:
    """Unary quotients then k-bit remainders, as two byte-aligned little-endian bit streams."""
    q = gaps >> k
    ubits = int(q.sum()) + gaps.size
    unary = np.ones(ubits, dtype=np.uint8)
    unary[np.cumsum(q + 1) - 1] = 0
    rem = ((gaps[:, None] >> np.arange(k, dtype=np.int64)) & 1).astype(np.uint8)
    return np.packbits(unary, bitorder="little").tobytes() + np.packbits(
        rem.reshape(-1), bitorder="little"
    ).tobytes(), ubits


def rice_decode(data: bytes, m: int, k: int, ubits: int) -> np.ndarray:
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


def plan_positions(support: np.ndarray) -> tuple[str, dict, int]:
    """Cheapest way to code ``support`` (bitmask, index or rice) and its byte count."""
    n = support.size
    nnz = int(np.count_nonzero(support))
    invert = n - nnz < nnz
    m = n - nnz if invert else nnz
    plans: list[tuple[int, str, dict]] = [(-(-n // 8), "bitmask", {})]
    code = index_type(n)
    plans.append((m * np.dtype(code).itemsize, "index", {"inv": invert, "idx": code}))
    if m:
        positions = np.flatnonzero(~support if invert else support)
        k, size = rice_k(gaps(positions))
        plans.append((size, "rice", {"inv": invert, "k": k}))
    else:
        plans.append((0, "rice", {"inv": invert, "k": 0}))
    size, enc, params = min(plans, key=lambda p: p[0])  # ties keep the simpler, earlier one
    return enc, params, size


def encode_positions(support: np.ndarray, enc: str, params: dict) -> bytes:
    if enc == "bitmask":
        return np.packbits(support, bitorder="little").tobytes()
    positions = np.flatnonzero(~support if params["inv"] else support)
    if enc == "index":
        return positions.astype(params["idx"]).tobytes()
    data, ubits = rice_encode(gaps(positions), params["k"])
    params["ubits"] = ubits
    return data


def decode_positions(data: bytes, spec: dict, n: int, nnz: int) -> np.ndarray:
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
            if code not in INDEX_TYPES or len(data) != m * np.dtype(code).itemsize:
                raise ValueError(f"index list ({code!r}, {len(data)} bytes) does not hold {m} positions")
            positions = np.frombuffer(data, code).astype(np.int64)
            if m and (np.any(np.diff(positions) <= 0)):
                raise ValueError("index list is not strictly increasing")
        else:
            positions = rice_decode(data, m, int(spec["k"]), int(spec["ubits"]))
        if m and (positions[0] < 0 or positions[-1] >= n):
            raise ValueError(f"position {int(positions[-1])} outside a tensor of {n} elements")
        support = np.zeros(n, dtype=bool)
        support[positions] = True
        if invert:
            support = ~support
    if int(np.count_nonzero(support)) != nnz:
        raise ValueError(f"positions give {int(np.count_nonzero(support))} nonzeros, header says {nnz}")
    return support
