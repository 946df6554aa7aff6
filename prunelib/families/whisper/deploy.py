"""A Whisper model as prunelib prunes and ships it: one output projection for both ends, and a transcriber.

* **One tensor for the tied embedding.** Whisper ties its output projection (``proj_out``) to the
  decoder's token embedding. Pruning reparametrizes a weight (``weight_orig`` times ``weight_mask``),
  which would silently untie them: the projection pruned, the embedding not. :func:`tie_to_proj_out`
  therefore makes ``proj_out.weight`` the one tensor and the embedding a view of it
  (:class:`TiedEmbedding`): when embeddings are pruned (``--prune-embeddings``), both ends see the
  same zeros; otherwise neither does. The model's state holds the tensor once.
* **What a deployment runs.** :class:`Transcriber` wraps the model with its :class:`Decoding`:
  log-mel features ``[N, 80, 3000]`` in, greedy token ids ``[N, L]`` out (each utterance decoded
  alone, batch 1, as a device transcribes; padded with :data:`PAD`). Timing it times a whole
  transcription, encoder and every decoder step, and its multiply-adds are those of that transcription.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunelib.families.whisper.decoding import Decoding, torch_greedy

#: Padding of the token-id rows a :class:`Transcriber` returns (no token id is negative).
PAD = -1


class TiedEmbedding(nn.Module):
    """Token embedding that reads the output projection's weight (whatever pruning made of it)."""

    _head: nn.Linear

    def __init__(self, head: nn.Linear, padding_idx: int | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_head", head)  # not a submodule: the weight is stored once, under proj_out
        self.padding_idx = padding_idx

    @property
    def weight(self) -> torch.Tensor:
        """The projection's weight as its forward uses it: masked when pruning reparametrizes it (never stale)."""
        head: Any = self._head
        if hasattr(head, "weight_orig") and hasattr(head, "weight_mask"):
            return head.weight_orig * head.weight_mask
        return head.weight

    @property
    def num_embeddings(self) -> int:
        return int(self.weight.shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.weight.shape[1])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight, self.padding_idx)


def tie_to_proj_out(model: nn.Module) -> nn.Module:
    """Make ``proj_out.weight`` the only copy of the token embedding (in place); a no-op when already done.

    Raises:
        ValueError: ``model`` is not a Whisper with tied embeddings (the message says what differs).
    """
    whisper: Any = model
    embed = whisper.model.decoder.embed_tokens
    if isinstance(embed, TiedEmbedding):
        return model
    head = whisper.proj_out
    if embed.weight.shape != head.weight.shape or not torch.equal(embed.weight, head.weight):
        raise ValueError("this Whisper's output projection is not tied to its token embedding")
    whisper.model.decoder.embed_tokens = TiedEmbedding(head, embed.padding_idx)
    return model


class Transcriber(nn.Module):
    """Greedy transcription by a Whisper model: features ``[N, 80, 3000]`` -> token ids ``[N, L]`` (:data:`PAD`)."""

    def __init__(self, model: nn.Module, decoding: Decoding) -> None:
        super().__init__()
        self.model = model
        self.decoding = decoding

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        rows = [torch_greedy(self.model, features[i : i + 1], self.decoding) for i in range(features.shape[0])]
        return pad_rows(rows)


def at_equal_work(transcriber: Transcriber, tokens: int) -> Transcriber:
    """A copy of ``transcriber`` that writes exactly ``tokens`` tokens and one more step (end of text suppressed),
    whatever the audio: the work of a transcript of that length, for timing and multiply-adds at equal work."""
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    d = transcriber.decoding
    forced = dataclasses.replace(d, suppress=tuple(dict.fromkeys((*d.suppress, d.eos))), max_new_tokens=tokens + 1)
    return Transcriber(transcriber.model, forced).eval()


def pad_rows(rows: list[list[int]]) -> torch.Tensor:
    """Token-id rows as one int64 tensor, padded with :data:`PAD` to the longest (at least one column)."""
    width = max([len(r) for r in rows] + [1])
    out = torch.full((len(rows), width), PAD, dtype=torch.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
    return out


def unpad(ids: Any) -> list[list[int]]:
    """The token-id rows of a padded array (a :class:`Transcriber`'s output, torch or numpy)."""
    return [[int(t) for t in row if int(t) != PAD] for row in ids.tolist()]
