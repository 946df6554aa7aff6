"""Models: presets and shapes, the ONNX-friendly mean embedding, prunable and effective parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from prunelib.families.mlp.models import BAG_OF_WORDS, MLP, PRESETS, BagOfWords, MeanEmbedding, ModelSpec, build_model
from prunelib.pruning.criteria import magnitude_prune
from prunelib.pruning.params import count_parameters, effective_parameters, linear_and_conv_weights


def linear_count(widths: list[int]) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_with_the_data_shapes(name: str) -> None:
    model = build_model(ModelSpec(name, in_features=20, num_classes=4))
    assert isinstance(model, MLP) and model.embedding is None
    assert model(torch.randn(3, 20)).shape == (3, 4)
    assert model(torch.randn(3, 4, 5)).shape == (3, 4)  # image input is flattened
    assert count_parameters(model) == linear_count([20, *PRESETS[name], 4])


def test_lenet300_on_mnist_has_the_papers_parameter_count() -> None:
    assert count_parameters(build_model(ModelSpec("lenet300", 784, 10))) == 266_610


def test_unknown_model_lists_the_presets() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet18'.*lenet300"):
        build_model(ModelSpec("resnet18", 784, 10))


def test_token_model_embeds_then_classifies() -> None:
    spec = ModelSpec("sst2-mlp", in_features=7, num_classes=2, vocab_size=50, embed_dim=8)
    model = build_model(spec)
    assert isinstance(model.embedding, MeanEmbedding)
    assert model.embedding.embedding.weight.shape == (50, 8)
    assert model(torch.randint(0, 50, (5, 7))).shape == (5, 2)
    assert count_parameters(model) == 50 * 8 + linear_count([8, *PRESETS["sst2-mlp"], 2])


@pytest.mark.parametrize("vocab_size, words", [(50, 48), (6000, 5000)], ids=["small-vocabulary", "capped"])
def test_bag_of_words_preset_counts_words_then_classifies(vocab_size: int, words: int) -> None:
    model = build_model(ModelSpec("sst2-bow", in_features=7, num_classes=2, vocab_size=vocab_size))
    assert isinstance(model.embedding, BagOfWords) and model.embedding.words == words <= BAG_OF_WORDS["sst2-bow"]
    assert model(torch.randint(0, vocab_size, (5, 7))).shape == (5, 2)
    assert count_parameters(model) == linear_count([words, *PRESETS["sst2-bow"], 2])  # no embedding table


def test_mean_embedding_matches_embedding_bag_and_ignores_padding() -> None:
    torch.manual_seed(0)
    emb = MeanEmbedding(30, 6).eval()  # training mode may drop tokens (word dropout)
    bag = nn.EmbeddingBag(30, 6, mode="mean", padding_idx=0)
    with torch.no_grad():
        bag.weight.copy_(emb.embedding.weight)
    tokens = torch.tensor([[3, 4, 0, 0], [5, 0, 0, 0], [7, 8, 9, 2], [0, 0, 0, 0]])
    out = emb(tokens)
    torch.testing.assert_close(out[:3], bag(tokens)[:3])
    assert torch.equal(out[3], torch.zeros(6))  # all padding: zeros, not NaN
    # padding never changes the mean
    torch.testing.assert_close(emb(torch.tensor([[3, 4]])), emb(torch.tensor([[3, 0, 4, 0, 0]])))


def test_prunable_parameters_are_linear_and_conv1d_weights_only() -> None:
    model = build_model(ModelSpec("sst2-mlp", 7, 2, vocab_size=40, embed_dim=8))
    pairs = linear_and_conv_weights(model)
    assert [m for m, _ in pairs] == [model.layers[0], model.layers[2], model.out]
    assert {n for _, n in pairs} == {"weight"}
    conv = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), nn.Linear(4, 2))
    assert [m for m, _ in linear_and_conv_weights(conv)] == [conv[0], conv[2]]


def test_effective_parameters_are_masked_and_keep_plain_names() -> None:
    model = build_model(ModelSpec("lenet300", 12, 3))
    before = [n for n, _ in effective_parameters(model)]
    assert before == [n for n, _ in model.named_parameters()]
    magnitude_prune(linear_and_conv_weights(model), 0.5)
    pruned = dict(effective_parameters(model))
    assert sorted(pruned) == sorted(before)  # torch re-registers weight_orig after bias
    for name, module in (
        ("layers.0.weight", model.layers[0]),
        ("layers.2.weight", model.layers[2]),
        ("out.weight", model.out),
    ):
        assert torch.equal(pruned[name], module.weight_orig * module.weight_mask)
        assert int((pruned[name] == 0).sum()) > 0
    assert not any(t.requires_grad for t in pruned.values())
    for module, name in linear_and_conv_weights(model):
        prune.remove(module, name)
    removed = dict(effective_parameters(model))
    assert list(removed) == list(pruned)
    assert all(torch.equal(removed[k], pruned[k]) for k in before)
    assert count_parameters(model) == linear_count([12, 300, 100, 3])
