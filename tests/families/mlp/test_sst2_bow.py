"""The SST-2 presets of the MLP family: the bag-of-words model (every weight prunable) and pruned embeddings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from prunelib.deploy.runtimes import make_runner
from prunelib.families.mlp.data import PAD, UNK, Split, Splits
from prunelib.families.mlp.family import MlpFamily
from prunelib.families.mlp.models import BAG_OF_WORDS, PRESETS, BagOfWords, MeanEmbedding
from prunelib.pruning.criteria import magnitude_prune

FAMILY = MlpFamily()

# Train words by count: good 4, film 3, bad 2, dull 2, fine 1, plot 1 (ties alphabetical).
BOW_TRAIN = [
    "good good film\t1",
    "good film\t1",
    "bad film\t0",
    "dull bad\t0",
    "good fine\t1",
    "dull plot\t0",
]
BOW_DEV = ["good film film zzz\t1", "onlyindev bad\t0", "plot plot plot\t0"]


def load_toy(root: Path, model: str) -> Splits:
    """The toy SST-2 under ``root`` as the family loads it for ``model`` (no dev share: 6 rows)."""
    return FAMILY.load_data("sst2", model, root, seed=0, quick=False)


def weight_count(params: list[tuple[nn.Module, str]]) -> int:
    return sum(getattr(m, name).numel() for m, name in params)


def onnx_outputs(model: nn.Module, example: torch.Tensor, inputs: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(FAMILY.export_onnx(model, example), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": inputs.numpy()})[0]


@pytest.fixture
def bow_root(tmp_path: Path, write_sst2: Callable[..., Path]) -> Path:
    return write_sst2(tmp_path / "data", BOW_TRAIN, BOW_DEV)


# ---------------------------------------------------------------- defaults
def test_sst2_runs_the_bag_of_words_model_by_default() -> None:
    assert FAMILY.default_model("sst2") == "sst2-bow"
    assert FAMILY.default_model("mnist5k") == FAMILY.models[0] == "lenet300"
    assert {"sst2-bow", "sst2-mlp"} <= set(FAMILY.models)
    assert ("sst2", "sst2-bow") in FAMILY.floors and ("sst2", "sst2-mlp") in FAMILY.floors
    with pytest.raises(ValueError, match="no dataset 'imdb'"):
        FAMILY.default_model("imdb")


# ---------------------------------------------------------------- sst2-bow on a tiny SST-2
def test_sst2_bow_builds_from_a_tiny_sst2_folder(bow_root: Path) -> None:
    data = load_toy(bow_root, "sst2-bow")
    assert data.vocab == ("<pad>", "<unk>", "good", "film", "bad", "dull", "fine", "plot")
    model = FAMILY.build("sst2-bow", data, seed=0)
    assert isinstance(model.embedding, BagOfWords) and model.embedding.words == 6  # vocabulary < cap
    assert [m.in_features for m in model.modules() if isinstance(m, nn.Linear)] == [6, *PRESETS["sst2-bow"]]
    out = model(data.test.x)
    assert out.shape == (3, 2) and torch.isfinite(out).all()
    accuracy = FAMILY.evaluate(model, data)["accuracy"]
    assert FAMILY.metric.in_range(accuracy) and round(accuracy * 3) == pytest.approx(accuracy * 3, abs=1e-6)


def test_bag_of_words_features_are_word_counts_over_the_training_vocabulary(bow_root: Path) -> None:
    data = load_toy(bow_root, "sst2-bow")
    # test = GLUE dev.tsv in file order; columns: good film bad dull fine plot (ids 2..7)
    expected = torch.tensor(
        [
            [1.0, 2.0, 0.0, 0.0, 0.0, 0.0],  # good film film zzz: the unknown word counts nowhere
            [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],  # onlyindev bad: a dev-only word is <unk>, not a column
            [0.0, 0.0, 0.0, 0.0, 0.0, 3.0],  # plot plot plot
        ]
    )
    assert torch.equal(FAMILY.build("sst2-bow", data, seed=0).embedding(data.test.x), expected)


def test_bag_of_words_cap_keeps_the_most_frequent_words(bow_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BAG_OF_WORDS, "sst2-bow", 3)  # good, film, bad; dull, fine, plot dropped
    data = load_toy(bow_root, "sst2-bow")
    model = FAMILY.build("sst2-bow", data, seed=0)
    assert model.layers[0].in_features == 3
    assert model.embedding(data.test.x).tolist() == [[1, 2, 0], [0, 0, 1], [0, 0, 0]]


def test_bag_of_words_by_hand() -> None:
    bow = BagOfWords(3).eval()  # columns count ids 2, 3, 4
    tokens = torch.tensor([[2, 2, 3, PAD], [4, 9, UNK, PAD], [PAD, PAD, PAD, PAD], [3, 4, 2, 4]])
    assert bow(tokens).tolist() == [[2, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 2]]
    assert bow(tokens).dtype == torch.float32 and not list(bow.parameters())
    assert torch.equal(BagOfWords(3, token_dropout=0.0).train()(tokens), bow(tokens))
    with pytest.raises(ValueError, match="at least one word"):
        BagOfWords(0)


def test_bag_of_words_drops_tokens_only_in_training() -> None:
    bow = BagOfWords(50, token_dropout=0.5)
    tokens = torch.randint(2, 52, (64, 20), generator=torch.Generator().manual_seed(0))
    full = bow.eval()(tokens)
    torch.manual_seed(0)
    dropped = bow.train()(tokens)
    assert (dropped <= full).all() and 0.3 < float(dropped.sum() / full.sum()) < 0.7


def test_vocabulary_comes_from_the_train_split_only(bow_root: Path) -> None:
    data = load_toy(bow_root, "sst2-bow")
    assert "zzz" not in data.vocab and "onlyindev" not in data.vocab
    assert load_toy(bow_root, "sst2-mlp").vocab == data.vocab  # the same token data for either model
    train_words = {data.vocab[i] for i in data.train.x.unique().tolist() if i != PAD}
    assert set(data.vocab[2:]) == train_words


def test_every_sst2_bow_weight_is_prunable(bow_root: Path) -> None:
    model = FAMILY.build("sst2-bow", load_toy(bow_root, "sst2-bow"), seed=0)
    prunable = FAMILY.prunable(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [m for m, _ in prunable] == linears and all(name == "weight" for _, name in prunable)
    assert FAMILY.prunable(model, embeddings=True) == prunable  # nothing else to prune
    biases = sum(m.bias.numel() for m in linears)
    assert weight_count(prunable) + biases == sum(p.numel() for p in model.parameters())


def test_sst2_bow_at_full_size_is_the_labs_1_4m_weights() -> None:
    vocab = ("<pad>", "<unk>", *(f"w{i}" for i in range(14_000)))
    tokens = Split(torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    data = Splits("sst2", tokens, tokens, tokens, num_classes=2, in_features=5, vocab=vocab)
    model = FAMILY.build("sst2-bow", data, seed=0)
    weights = weight_count(FAMILY.prunable(model))
    assert weights == 5000 * 256 + 256 * 256 + 256 * 2 == 1_346_048
    assert weights / sum(p.numel() for p in model.parameters()) > 0.999


def test_sst2_bow_onnx_matches_pytorch_pruned_and_at_any_batch(bow_root: Path) -> None:
    data = load_toy(bow_root, "sst2-bow")
    model = FAMILY.build("sst2-bow", data, seed=0)
    magnitude_prune(FAMILY.prunable(model), 0.9)
    deployed = FAMILY.deploy(model, structured=False)
    example = FAMILY.example_inputs(data, 2)
    inputs = torch.cat([data.test.x, data.train.x, data.test.x])  # another batch size than exported
    got = onnx_outputs(deployed, example, inputs)
    expected = FAMILY.forward(deployed)(inputs).numpy()
    assert FAMILY.check_outputs(expected, got, data, "sst2-bow onnxruntime") <= FAMILY.parity_atol


# ---------------------------------------------------------------- --prune-embeddings on sst2-mlp
def test_embeddings_flag_adds_the_sst2_mlp_embedding(toy_sst2_root: Path) -> None:
    model = FAMILY.build("sst2-mlp", load_toy(toy_sst2_root, "sst2-mlp"), seed=0)
    assert isinstance(model.embedding, MeanEmbedding)
    table = model.embedding.embedding
    without, with_emb = FAMILY.prunable(model), FAMILY.prunable(model, embeddings=True)
    assert (table, "weight") not in without
    assert with_emb == [(table, "weight"), *without]
    assert weight_count(with_emb) == weight_count(without) + table.weight.numel()


def test_pruned_embedding_keeps_the_mean_over_real_tokens(toy_sst2_root: Path) -> None:
    data = load_toy(toy_sst2_root, "sst2-mlp")
    model = FAMILY.build("sst2-mlp", data, seed=0)
    table = model.embedding.embedding
    # global magnitude pruning reaches the N(0, 1) table last: prune the table on its own
    magnitude_prune([(table, "weight")], 0.6)
    assert hasattr(table, "weight_mask") and table.padding_idx == PAD
    effective = (table.weight_orig * table.weight_mask).detach()
    assert float((effective == 0).float().mean()) > 0.3  # the table did lose weights
    bag = nn.EmbeddingBag(table.num_embeddings, table.embedding_dim, mode="mean", padding_idx=PAD)
    with torch.no_grad():
        bag.weight.copy_(effective)
    tokens = data.test.x
    torch.testing.assert_close(model.embedding(tokens), bag(tokens))
    # training keeps pruned entries at zero; the padding row takes no gradient
    hparams = FAMILY.hparams("sst2", quick=True)
    FAMILY.train(model, data, type(hparams)(epochs=2, batch_size=4, lr=1e-2), seed=0, phase="retrain")
    after = (table.weight_orig * table.weight_mask).detach()
    assert not torch.equal(after, effective)  # it did train
    assert bool((after[table.weight_mask == 0] == 0).all())
    assert torch.equal(table.weight_orig[PAD].detach(), torch.zeros(table.embedding_dim))


def test_sst2_mlp_with_a_pruned_embedding_exports_to_matching_onnx(toy_sst2_root: Path) -> None:
    data = load_toy(toy_sst2_root, "sst2-mlp")
    model = FAMILY.build("sst2-mlp", data, seed=0)
    magnitude_prune([(model.embedding.embedding, "weight")], 0.7)
    magnitude_prune(FAMILY.prunable(model), 0.7)
    deployed = FAMILY.deploy(model, structured=False)
    assert not hasattr(deployed.embedding.embedding, "weight_mask")
    assert float((deployed.embedding.embedding.weight == 0).float().mean()) > 0.5
    inputs = torch.cat([data.test.x, data.train.x])
    got = onnx_outputs(deployed, FAMILY.example_inputs(data, 2), inputs)
    expected = FAMILY.forward(deployed)(inputs).numpy()
    assert FAMILY.check_outputs(expected, got, data, "sst2-mlp onnxruntime") <= FAMILY.parity_atol


# ---------------------------------------------------------------- the real SST-2
def test_real_sst2_bow_reads_the_5000_most_frequent_training_words(sst2_small: Splits) -> None:
    model = FAMILY.build("sst2-bow", sst2_small, seed=0)
    assert model.embedding.words == BAG_OF_WORDS["sst2-bow"] == 5000 < sst2_small.vocab_size - 2
    features = model.embedding(sst2_small.test.x[:50])
    assert features.shape == (50, 5000)
    ids = sst2_small.test.x[:50]
    in_cap = ((ids >= 2) & (ids < 5002)).sum(1).float()
    assert torch.equal(features.sum(1), in_cap)  # every capped word counted once per occurrence
    assert weight_count(FAMILY.prunable(model)) == 1_346_048


@pytest.mark.parametrize("structured", [False, True], ids=["unstructured", "structured"])
@pytest.mark.parametrize("runtime, precision", [(r, p) for r in FAMILY.runtimes for p in FAMILY.precisions])
def test_sst2_bow_deploys_on_every_runtime_and_precision(
    bow_root: Path, runtime: str, precision: str, structured: bool
) -> None:
    if runtime == "torch-sparse" and precision == "int8":
        pytest.skip("torch-sparse has no int8 kernels (rejected by check_deployable)")
    if runtime == "executorch" and precision == "fp16":
        pytest.skip("ExecuTorch runs fp32 or int8 (rejected by check_deployable)")
    data = load_toy(bow_root, "sst2-bow")
    model = FAMILY.build("sst2-bow", data, seed=0)
    if structured:
        FAMILY.structured_step(model, 0.5, seed=0)
    else:
        magnitude_prune(FAMILY.prunable(model), 0.9)
    run = make_runner(FAMILY, model, data, runtime, structured=structured, precision=precision, batch_size=3)
    assert tuple(run(FAMILY.example_inputs(data, 3)).shape) == (3, 2)  # make_runner checked parity
