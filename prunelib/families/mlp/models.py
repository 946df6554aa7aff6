"""The lab's MLP family and its presets; which parameters pruning may touch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: Hidden widths of each preset (input and output sizes come from the data set).
PRESETS: dict[str, tuple[int, ...]] = {
    "lenet300": (300, 100),  # LeNet-300-100, the lottery-ticket paper's MNIST model
    "mlp1m": (1024, 600),  # ~1.4M parameters on MNIST, the size of the lab's MLP
    "sst2-mlp": (256, 128),  # on top of a learned mean embedding, for SST-2
    "sst2-bow": (256, 256),  # the lab's SST-2 model: a bag of words, every weight prunable
}

#: Presets that read token ids as a :class:`BagOfWords` over this many most frequent training
#: words (the others read them through a :class:`MeanEmbedding`). 5000 x 256 + 256 x 256 + 256 x 2
#: = 1.35 M weights, all in Linear layers (the lab's model: 5.65 MB, ~1.4 M).
BAG_OF_WORDS: dict[str, int] = {"sst2-bow": 5000}


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a model: preset name plus the data set's shapes."""

    name: str
    in_features: int
    num_classes: int
    vocab_size: int = 0  # > 0: token input, through a mean embedding of ``embed_dim`` or a bag of words
    embed_dim: int = 64


class MeanEmbedding(nn.Module):
    """Mean of the token embeddings of each row, ignoring padding (id 0).

    Equivalent to ``nn.EmbeddingBag(mode="mean", padding_idx=0)``, which ONNX cannot export.
    In training mode each token is dropped with probability ``token_dropout`` (word dropout,
    the regulariser that keeps a bag-of-words model from memorising SST-2's phrases).
    """

    def __init__(self, vocab_size: int, embed_dim: int, token_dropout: float = 0.2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.token_dropout = token_dropout

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.training and self.token_dropout > 0:
            tokens = tokens.masked_fill(torch.rand(tokens.shape) < self.token_dropout, 0)
        keep = (tokens != 0).unsqueeze(-1).to(self.embedding.weight.dtype)
        total = (self.embedding(tokens) * keep).sum(1)
        return total / keep.sum(1).clamp(min=1.0)


class BagOfWords(nn.Module):
    """Word counts per row over the ``words`` most frequent training words: float ``[batch, words]``.

    Input: padded token ids of a vocabulary ordered by training frequency (0 = padding, 1 =
    unknown, 2... = words, most frequent first, :func:`~prunelib.families.mlp.data.build_vocab`),
    so feature ``j`` counts id ``j + 2``. Padding, unknown and rarer words (ids past the cap)
    count nowhere. A fixed transform without parameters: every weight of a model behind it is
    in its Linear layers, hence prunable. Raw counts, not TF-IDF: nothing is fitted to a split
    (no IDF vector to carry in the model), and every input feature has the same scale, so a
    global magnitude threshold weighs frequent and rare words' weights alike. ONNX: one
    ``ScatterElements`` (reduction ``add``, opset >= 16) with a dynamic batch. In training mode
    each token is dropped with probability ``token_dropout``, as in :class:`MeanEmbedding`.
    """

    def __init__(self, words: int, token_dropout: float = 0.2) -> None:
        super().__init__()
        if words < 1:
            raise ValueError(f"a bag of words needs at least one word, got {words}")
        self.words = words
        self.token_dropout = token_dropout

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.training and self.token_dropout > 0:
            tokens = tokens.masked_fill(torch.rand(tokens.shape) < self.token_dropout, 0)
        width = self.words + 2  # ids 0 (padding) and 1 (unknown) get columns that are dropped
        ids = torch.where(tokens < width, tokens, torch.zeros_like(tokens))  # rarer words: as padding
        ones = torch.ones(ids.shape, dtype=torch.float32)
        counts = torch.zeros(ids.shape[0], width, dtype=torch.float32).scatter_add(1, ids, ones)
        return counts[:, 2:]

    def extra_repr(self) -> str:
        return f"words={self.words}"


class MLP(nn.Module):
    """The lab's shape: ``layers`` (Linear + ReLU pairs) then an ``out`` Linear.

    With ``vocab_size > 0`` the input is a padded batch of token ids (0 = padding), turned
    into features by ``embedding``: a :class:`MeanEmbedding` of ``embed_dim`` features, or,
    with ``bag_of_words > 0``, a :class:`BagOfWords` over the ``bag_of_words`` most frequent
    words (fewer when the vocabulary has fewer).
    """

    def __init__(
        self,
        in_features: int,
        hidden: tuple[int, ...],
        num_classes: int,
        vocab_size: int = 0,
        embed_dim: int = 64,
        bag_of_words: int = 0,
    ) -> None:
        super().__init__()
        self.embedding: MeanEmbedding | BagOfWords | None = None
        if vocab_size > 0 and bag_of_words > 0:
            in_features = min(bag_of_words, vocab_size - 2)  # the vocabulary's words, past <pad> and <unk>
            self.embedding = BagOfWords(in_features)
        elif vocab_size > 0:
            self.embedding = MeanEmbedding(vocab_size, embed_dim)
            in_features = embed_dim
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.layers = nn.ModuleList(layers)
        self.out = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            x = self.embedding(x)
        else:
            x = x.flatten(1)
        for layer in self.layers:
            x = layer(x)
        return self.out(x)


def build_model(spec: ModelSpec) -> MLP:
    """Build the preset ``spec.name`` for the shapes in ``spec``.

    Token data (``vocab_size > 0``) goes through the preset's :class:`BagOfWords` when it is in
    :data:`BAG_OF_WORDS`, else a :class:`MeanEmbedding`; other data is flattened into the MLP.

    Raises:
        ValueError: unknown preset name (the message lists the known ones).
    """
    if spec.name not in PRESETS:
        raise ValueError(f"unknown model {spec.name!r}; choose one of {sorted(PRESETS)}")
    return MLP(
        spec.in_features,
        PRESETS[spec.name],
        spec.num_classes,
        spec.vocab_size,
        spec.embed_dim,
        BAG_OF_WORDS.get(spec.name, 0),
    )
