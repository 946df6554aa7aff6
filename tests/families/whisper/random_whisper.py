"""A small random Whisper (transformers' own classes) for fast structured-pruning and group tests."""

from __future__ import annotations

import torch


def random_whisper(seed: int = 0, heads: int = 4, layers: int = 2):
    """A random ``WhisperForConditionalGeneration``: d_model 64, ``layers`` + ``layers`` layers, ffn 128, vocab 200, random biases."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(
        vocab_size=200,
        num_mel_bins=16,
        d_model=64,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=20,
        max_target_positions=32,
        decoder_start_token_id=1,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # transformers initialises biases to zero: random ones, so tests see them masked
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_(0.0, 0.1)
    return model


def features(batch: int = 2, seed: int = 1) -> torch.Tensor:
    """Random log-mel features of the length :func:`random_whisper` expects (``2 × max_source_positions``)."""
    return torch.randn(batch, 16, 40, generator=torch.Generator().manual_seed(seed))
