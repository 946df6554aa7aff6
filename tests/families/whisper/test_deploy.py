"""The tied embedding stays tied through pruning, and a Transcriber turns features into padded token ids."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch.nn.utils import prune

from prunelib.families.whisper.deploy import (
    PAD,
    TiedEmbedding,
    Transcriber,
    at_equal_work,
    pad_rows,
    tie_to_proj_out,
    unpad,
)
from prunelib.pruning.criteria import remove_reparametrization
from tests.families.whisper.tiny_decoding import DECODING, features, tiny_whisper


def test_tying_keeps_outputs_and_stores_the_embedding_once() -> None:
    model = tiny_whisper()
    ids = torch.tensor([[1, 2, 3]])
    feats = features(0)
    before = model(input_features=feats, decoder_input_ids=ids).logits
    tied = tie_to_proj_out(copy.deepcopy(model))
    assert isinstance(tied.model.decoder.embed_tokens, TiedEmbedding)
    assert torch.allclose(tied(input_features=feats, decoder_input_ids=ids).logits, before, atol=1e-6)
    keys = list(tied.state_dict())
    assert "proj_out.weight" in keys and not any("embed_tokens" in k for k in keys)
    assert tie_to_proj_out(tied) is tied  # idempotent


def test_pruning_the_projection_prunes_the_embedding_too() -> None:
    model = tie_to_proj_out(tiny_whisper())
    prune.l1_unstructured(model.proj_out, "weight", amount=0.5)
    embed = model.model.decoder.embed_tokens
    assert torch.equal(embed.weight, model.proj_out.weight_orig * model.proj_out.weight_mask)
    assert float((embed(torch.arange(embed.num_embeddings)) == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    plain = remove_reparametrization(model)
    assert torch.equal(plain.model.decoder.embed_tokens.weight, plain.proj_out.weight)
    assert plain.model.decoder.embed_tokens._head is plain.proj_out  # the copy points at its own projection


def test_an_untied_model_is_refused() -> None:
    model = tiny_whisper()
    model.proj_out.weight = torch.nn.Parameter(model.proj_out.weight.detach() + 1)
    with pytest.raises(ValueError, match="not tied"):
        tie_to_proj_out(model)


def test_a_transcriber_decodes_each_row_and_pads() -> None:
    model = tie_to_proj_out(tiny_whisper())
    decoding = dataclasses.replace(DECODING, max_new_tokens=6)
    feats = torch.cat([features(1), features(2)])
    out = Transcriber(model, decoding)(feats)
    assert out.dtype == torch.int64 and out.shape[0] == 2
    rows = unpad(out)
    assert [len(r) for r in rows] == [6, 6] and rows[0] != rows[1]  # eos is never this model's arg-max
    forced = at_equal_work(Transcriber(model, decoding), 9)
    assert [len(r) for r in unpad(forced(feats))] == [10, 10]  # end of text suppressed: exactly 9 + 1 steps
    with pytest.raises(ValueError, match="tokens must be >= 0"):
        at_equal_work(forced, -1)


def test_pad_rows_round_trips() -> None:
    rows = [[5, 6, 7], [], [1]]
    padded = pad_rows(rows)
    assert padded.tolist() == [[5, 6, 7], [PAD, PAD, PAD], [1, PAD, PAD]]
    assert unpad(padded) == rows and unpad(padded.numpy()) == rows
    assert pad_rows([[]]).shape == (1, 1)
