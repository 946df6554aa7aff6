"""What the whisper decoding tests share: a random few-hundred-kB Whisper whose greedy ids vary, head shrinking."""

from __future__ import annotations

import torch
from torch import nn
from transformers import WhisperConfig, WhisperForConditionalGeneration

from prunelib.families.whisper.decoding import Decoding

VOCAB = 120
SOT, EOS, NO_TIMESTAMPS = 100, 101, 102

#: The random model's decode: eos 101 is never its arg-max on :func:`features` (checked in the tests).
DECODING = Decoding(prompt=(SOT, NO_TIMESTAMPS), eos=EOS, suppress=(5, 6), begin_suppress=(7,), max_new_tokens=20)


def tiny_whisper(seed: int = 0) -> WhisperForConditionalGeneration:
    """d_model 64, 2 + 2 layers of 4 heads, vocabulary 120; weights of std 0.5 so greedy ids vary (at 0.02 they repeat)."""
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=VOCAB, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=SOT, eos_token_id=EOS,
        pad_token_id=EOS, bos_token_id=EOS, init_std=0.5, suppress_tokens=None, begin_suppress_tokens=None,
    )  # fmt: skip
    return WhisperForConditionalGeneration(config).eval()


def features(seed: int) -> torch.Tensor:
    """Random log-mel features ``[1, 80, 3000]``."""
    return torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(seed))


def _rows(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    out = nn.Linear(linear.in_features, len(keep), bias=linear.bias is not None)
    out.weight.data = linear.weight.data[keep].clone()
    if linear.bias is not None:
        out.bias.data = linear.bias.data[keep].clone()
    return out


def keep_heads(attn: nn.Module, heads: list[int]) -> None:
    """Remove every head of HF ``WhisperAttention`` ``attn`` but ``heads``, as structured pruning does."""
    hd = attn.head_dim
    keep = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in heads])
    attn.q_proj, attn.k_proj, attn.v_proj = (
        _rows(attn.q_proj, keep),
        _rows(attn.k_proj, keep),
        _rows(attn.v_proj, keep),
    )  # type: ignore[assignment]
    out = nn.Linear(len(keep), attn.out_proj.out_features, bias=attn.out_proj.bias is not None)
    out.weight.data = attn.out_proj.weight.data[:, keep].clone()
    if attn.out_proj.bias is not None:
        out.bias.data = attn.out_proj.bias.data.clone()
    attn.out_proj = out
    attn.num_heads = len(heads)


def keep_neurons(layer: nn.Module, neurons: int) -> None:
    """Keep the first ``neurons`` FFN neurons of a decoder layer (``fc1`` rows, ``fc2`` columns)."""
    keep = torch.arange(neurons)
    layer.fc1 = _rows(layer.fc1, keep)
    fc2 = nn.Linear(neurons, layer.fc2.out_features)
    fc2.weight.data = layer.fc2.weight.data[:, keep].clone()
    fc2.bias.data = layer.fc2.bias.data.clone()
    layer.fc2 = fc2
