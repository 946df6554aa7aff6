"""Writing CTranslate2 ``model.bin`` files for tests: the layout of prunelib.families.whisper.convert, by hand."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

TYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(
    path: Path,
    variables: dict[str, np.ndarray],
    aliases: dict[str, str] | None = None,
    spec: str = "WhisperSpec",
    version: int = 6,
) -> Path:
    """Serialise ``variables`` (and ``aliases``) as CTranslate2 does; returns ``path``."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, value in variables.items():
        value = np.ascontiguousarray(value)
        out += [_string(name), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape)]
        out += [struct.pack("<B", TYPE_IDS[value.dtype.name]), struct.pack("<I", value.nbytes), value.tobytes()]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))
    return path


def tiny_whisper_variables(d: int = 8, ffn: int = 16, vocab: int = 51864, heads: int = 2, seed: int = 0) -> dict:
    """The variables of a one-layer-each Whisper in CTranslate2's names, fp16, seeded (key biases zero)."""
    rng = np.random.default_rng(seed)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float16)

    v: dict[str, np.ndarray] = {
        "decoder/activation": np.array(3, np.int8),
        "decoder/num_heads": np.array(heads, np.int16),
        "encoder/num_heads": np.array(heads, np.int16),
        "decoder/embeddings/weight": r(vocab, d),
        "decoder/position_encodings/encodings": r(448, d),
        "encoder/position_encodings/encodings": r(1500, d),
        "encoder/conv1/weight": r(d, 80, 3),
        "encoder/conv1/bias": r(d),
        "encoder/conv2/weight": r(d, d, 3),
        "encoder/conv2/bias": r(d),
    }
    for side in ("encoder", "decoder"):
        v[f"{side}/layer_norm/gamma"], v[f"{side}/layer_norm/beta"] = r(d), r(d)
        p = f"{side}/layer_0"
        qkv_bias = r(3 * d)
        qkv_bias[d : 2 * d] = 0
        v[f"{p}/self_attention/linear_0/weight"], v[f"{p}/self_attention/linear_0/bias"] = r(3 * d, d), qkv_bias
        v[f"{p}/self_attention/linear_1/weight"], v[f"{p}/self_attention/linear_1/bias"] = r(d, d), r(d)
        v[f"{p}/self_attention/layer_norm/gamma"], v[f"{p}/self_attention/layer_norm/beta"] = r(d), r(d)
        if side == "decoder":
            kv_bias = r(2 * d)
            kv_bias[:d] = 0
            v[f"{p}/attention/linear_0/weight"], v[f"{p}/attention/linear_0/bias"] = r(d, d), r(d)
            v[f"{p}/attention/linear_1/weight"], v[f"{p}/attention/linear_1/bias"] = r(2 * d, d), kv_bias
            v[f"{p}/attention/linear_2/weight"], v[f"{p}/attention/linear_2/bias"] = r(d, d), r(d)
            v[f"{p}/attention/layer_norm/gamma"], v[f"{p}/attention/layer_norm/beta"] = r(d), r(d)
        v[f"{p}/ffn/linear_0/weight"], v[f"{p}/ffn/linear_0/bias"] = r(ffn, d), r(ffn)
        v[f"{p}/ffn/linear_1/weight"], v[f"{p}/ffn/linear_1/bias"] = r(d, ffn), r(d)
        v[f"{p}/ffn/layer_norm/gamma"], v[f"{p}/ffn/layer_norm/beta"] = r(d), r(d)
    return v
