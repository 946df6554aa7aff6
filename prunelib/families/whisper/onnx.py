"""Whisper in ONNX Runtime: an encoder graph, a decoder step graph with a self-attention KV cache, greedy decoding.

The **encoder graph** maps ``input_features [1, mels, 3000]`` to the cross-attention keys and
values of every decoder layer (the encoder output through each layer's ``encoder_attn.k_proj`` /
``v_proj``): ``cross_key_{i}``, ``cross_value_{i}`` ``[1, heads_i, 1500, head_dim]``, computed once.

The **decoder step graph** maps ``input_ids [1, new]``, ``offset [1]`` (position of the first
new id), ``past_key_{i}`` / ``past_value_{i}`` ``[1, heads_i, past, head_dim]`` (``past`` may be
0) and the cross keys and values to ``logits [1, vocab]`` of the last new position and
``present_key_{i}`` / ``present_value_{i}`` ``[1, heads_i, past + new, head_dim]``.

Both are traced from modules that call the HF model's own submodules (:class:`CrossKV`,
:class:`DecoderStep`), so pruned and physically shrunk weights are what is exported. Shapes are
read from the modules, never from the config: a layer's head count is ``q_proj.out_features //
head_dim`` (structured pruning removes whole heads per layer; ``head_dim`` stays), FFN width
whatever ``fc1`` has.

Cost: exporting Whisper tiny.en takes about EXPORT_COST (encoder and decoder, 2 cores).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prunelib.deploy.onnx import ort_session, quantize_onnx_int8
from prunelib.families.whisper.decoding import Decoding, greedy_loop
from prunelib.pruning.criteria import remove_reparametrization


def _split(x: torch.Tensor, proj: nn.Linear, head_dim: int) -> torch.Tensor:
    """``[1, T, heads * head_dim] -> [1, heads, T, head_dim]`` with ``heads`` from ``proj``'s width."""
    heads = proj.out_features // head_dim
    return x.reshape(1, -1, heads, head_dim).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention of pre-scaled ``q`` (as HF Whisper scales it) over ``k``/``v``; heads merged: ``[1, T, heads * head_dim]``."""
    scores = torch.matmul(q, k.transpose(2, 3))
    if mask is not None:
        scores = scores + mask
    out = torch.matmul(torch.softmax(scores, dim=-1), v)
    return out.transpose(1, 2).reshape(1, q.shape[2], -1)


class CrossKV(nn.Module):
    """``input_features -> (cross_key_0, cross_value_0, ...)``: the HF encoder, then each decoder layer's cross K/V."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.encoder = model.model.encoder
        self.layers = model.model.decoder.layers

    def forward(self, input_features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.encoder(input_features).last_hidden_state
        out: list[torch.Tensor] = []
        for layer in self.layers:
            attn = layer.encoder_attn
            out += [_split(attn.k_proj(hidden), attn.k_proj, attn.head_dim)]
            out += [_split(attn.v_proj(hidden), attn.v_proj, attn.head_dim)]
        return tuple(out)


class DecoderStep(nn.Module):
    """One decoder step with a self-attention KV cache, from the HF decoder's submodules.

    ``forward(input_ids, offset, *past, *cross)`` with ``past = (key_0, value_0, key_1, ...)``
    and ``cross`` likewise; returns ``(logits of the last position, *present)``. Computes what
    ``WhisperDecoder`` does (pre-norm layers: self-attention, cross-attention, FFN; final norm;
    ``proj_out``), dropout off; positions ``offset, offset + 1, ...``; new id ``j`` attends to the
    cache and to new ids ``<= j``.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        decoder = model.model.decoder
        self.embed_tokens = decoder.embed_tokens
        self.embed_positions = decoder.embed_positions
        self.layers = decoder.layers
        self.layer_norm = decoder.layer_norm
        self.proj_out = model.proj_out

    def forward(self, input_ids: torch.Tensor, offset: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n_layers = len(self.layers)
        past, cross = caches[: 2 * n_layers], caches[2 * n_layers :]
        new = input_ids.shape[1]
        steps = torch.arange(new, dtype=torch.int64)
        x = self.embed_tokens(input_ids) + self.embed_positions.weight[offset + steps]
        present: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.self_attn_layer_norm(x)
            q = _split(attn.q_proj(h) * attn.scaling, attn.q_proj, attn.head_dim)
            k = torch.cat([past[2 * i], _split(attn.k_proj(h), attn.k_proj, attn.head_dim)], dim=2)
            v = torch.cat([past[2 * i + 1], _split(attn.v_proj(h), attn.v_proj, attn.head_dim)], dim=2)
            present += [k, v]
            seen = torch.arange(k.shape[2], dtype=torch.int64).unsqueeze(0)
            last = (steps + (k.shape[2] - new)).unsqueeze(1)
            mask = torch.where(seen > last, torch.finfo(torch.float32).min, 0.0).to(x.dtype)
            x = x + attn.out_proj(_attend(q, k, v, mask))
            cross_attn = layer.encoder_attn
            h = layer.encoder_attn_layer_norm(x)
            q = _split(cross_attn.q_proj(h) * cross_attn.scaling, cross_attn.q_proj, cross_attn.head_dim)
            x = x + cross_attn.out_proj(_attend(q, cross[2 * i], cross[2 * i + 1], None))
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
        return (self.proj_out(self.layer_norm(x[:, -1])), *present)


def _names(prefix: str, n_layers: int) -> list[str]:
    return [f"{prefix}_{kind}_{i}" for i in range(n_layers) for kind in ("key", "value")]


@dataclass(frozen=True)
class WhisperOnnx:
    """The two ONNX graphs of a Whisper model and what decoding needs to know about it.

    Attributes:
        encoder: bytes of the encoder graph (``input_features`` -> cross keys and values).
        decoder: bytes of the decoder step graph.
        vocab_size: width of the logits.
        max_target_positions: decoder positions (prompt plus new ids must fit).
    """

    encoder: bytes
    decoder: bytes
    vocab_size: int
    max_target_positions: int

    @property
    def size_bytes(self) -> int:
        """Size on disk of both graphs, in bytes."""
        return len(self.encoder) + len(self.decoder)


def _export(
    module: nn.Module, args: tuple[torch.Tensor, ...], names: tuple[list[str], list[str]], axes: dict, opset: int
) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings on Python-side shape checks of the HF encoder
        torch.onnx.export(
            module,
            args,
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
            input_names=names[0],
            output_names=names[1],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    return buf.getvalue()


def export_whisper_onnx(model: nn.Module, opset: int = 17) -> WhisperOnnx:
    """Both ONNX graphs of ``model`` (a ``WhisperForConditionalGeneration``, possibly pruned or shrunk).

    Exported with the TorchScript exporter (``dynamo=False``) from a copy with the pruning
    reparametrization removed (zeros where pruned), in eval mode and eager attention; ``model`` is
    not changed. The encoder graph has fixed shapes (one 30 s window); the decoder graph has
    dynamic ``new``, ``past`` and ``frames`` axes.
    """
    dense: Any = remove_reparametrization(model).eval()
    dense.config._attn_implementation = "eager"
    config = dense.config
    n_layers = len(dense.model.decoder.layers)
    frames = config.max_source_positions * dense.model.encoder.conv1.stride[0] * dense.model.encoder.conv2.stride[0]
    features = torch.randn(1, config.num_mel_bins, frames, generator=torch.Generator().manual_seed(0))
    cross_names = _names("cross", n_layers)
    encoder = _export(CrossKV(dense), (features,), (["input_features"], cross_names), {}, opset)
    with torch.no_grad():
        cross = CrossKV(dense)(features)
    past: list[torch.Tensor] = []
    for layer in dense.model.decoder.layers:
        attn = layer.self_attn
        for proj in (attn.k_proj, attn.v_proj):
            past.append(torch.zeros(1, proj.out_features // attn.head_dim, 3, attn.head_dim))
    ids = torch.tensor([[0, 0]], dtype=torch.int64)  # 2 new ids after 3 cached: neither axis is traced as 1
    offset = torch.tensor([3], dtype=torch.int64)
    past_names, present_names = _names("past", n_layers), _names("present", n_layers)
    axes: dict[str, dict[int, str]] = {"input_ids": {1: "new"}}
    axes |= {name: {2: "past"} for name in past_names} | {name: {2: "total"} for name in present_names}
    axes |= {name: {2: "frames"} for name in cross_names}
    decoder = _export(
        DecoderStep(dense), (ids, offset, *past, *cross),
        (["input_ids", "offset", *past_names, *cross_names], ["logits", *present_names]), axes, opset,
    )  # fmt: skip
    return WhisperOnnx(encoder, decoder, int(config.vocab_size), int(config.max_target_positions))


def quantize_whisper_int8(graphs: WhisperOnnx) -> WhisperOnnx:
    """Both graphs through ONNX Runtime dynamic int8 (:func:`prunelib.deploy.onnx.quantize_onnx_int8`: MatMul weights, QInt8).

    Convolutions, embeddings, layer norms and attention products between activations stay fp32.

    Raises:
        ValueError: a graph has no MatMul of a constant weight to quantize.
    """
    return WhisperOnnx(
        quantize_onnx_int8(graphs.encoder), quantize_onnx_int8(graphs.decoder),
        graphs.vocab_size, graphs.max_target_positions,
    )  # fmt: skip


class OrtWhisper:
    """ONNX Runtime sessions of both graphs (CPU, ``threads`` intra-op, 1 inter-op) and greedy decoding.

    ``OrtWhisper(graphs, threads)(features, decoding)`` returns the same ids as
    :func:`prunelib.families.whisper.decoding.torch_greedy` on the exported model: the prompt is
    fed in one call with an empty cache, then one id per call
    (:func:`prunelib.families.whisper.decoding.greedy_loop`).
    """

    def __init__(self, graphs: WhisperOnnx, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.graphs = graphs
        self.encoder = ort_session(graphs.encoder, threads)
        self.decoder = ort_session(graphs.decoder, threads)
        self._cross = [o.name for o in self.encoder.get_outputs()]
        self._present = [o.name for o in self.decoder.get_outputs()][1:]
        self._empty = {
            i.name: np.zeros((1, int(i.shape[1]), 0, int(i.shape[3])), dtype=np.float32)
            for i in self.decoder.get_inputs()
            if i.name.startswith("past_")
        }

    @property
    def size_bytes(self) -> int:
        """Size on disk of both graphs, in bytes."""
        return self.graphs.size_bytes

    def __call__(self, features: Any, decoding: Decoding) -> list[int]:
        """Greedy ids for log-mel ``features`` ``[1, mels, 3000]`` (torch or numpy), prompt and eos left out.

        Raises:
            ValueError: ``decoding`` does not fit the model (:meth:`Decoding.check_fits`).
        """
        decoding.check_fits(self.graphs.vocab_size, self.graphs.max_target_positions)
        x = features.numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        cross = dict(zip(self._cross, self.encoder.run(None, {"input_features": x.astype(np.float32, copy=False)})))
        cache = dict(self._empty)
        offset = 0

        def step(ids: Any) -> np.ndarray:
            nonlocal cache, offset
            feed = {"input_ids": np.asarray([ids], dtype=np.int64), "offset": np.asarray([offset], dtype=np.int64)}
            logits, *present = self.decoder.run(None, {**feed, **cache, **cross})
            cache = {name.replace("present_", "past_"): value for name, value in zip(self._present, present)}
            offset += len(ids)
            return logits[0]

        return greedy_loop(step, decoding)
