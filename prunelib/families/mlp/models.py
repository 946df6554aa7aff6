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
}


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a model: preset name plus the data set's shapes."""

    name: str
    in_features: int
    num_classes: int
    vocab_size: int = 0  # > 0: token input through a mean embedding of ``embed_dim``
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


class MLP(nn.Module):
    """The lab's shape: ``layers`` (Linear + ReLU pairs) then an ``out`` Linear.

    With ``vocab_size > 0`` the input is a padded batch of token ids (0 = padding), averaged
    by a :class:`MeanEmbedding` into ``embed_dim`` features before the MLP.
    """

    def __init__(
        self,
        in_features: int,
        hidden: tuple[int, ...],
        num_classes: int,
        vocab_size: int = 0,
        embed_dim: int = 64,
    ) -> None:
        super().__init__()
        self.embedding: MeanEmbedding | None = None
        if vocab_size > 0:
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

    Raises:
        ValueError: unknown preset name (the message lists the known ones).
    """
    if spec.name not in PRESETS:
        raise ValueError(f"unknown model {spec.name!r}; choose one of {sorted(PRESETS)}")
    return MLP(spec.in_features, PRESETS[spec.name], spec.num_classes, spec.vocab_size, spec.embed_dim)
