"""Static metrics of a checkpoint: the family's metric at a precision, sizes, FLOPs; the model is never changed."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunelib.deploy.runtimes import deploy
from prunelib.families.contract import Metric
from prunelib.families.mlp.config import TrainConfig
from prunelib.families.mlp.data import Split, Splits, subset
from prunelib.families.mlp.family import MlpFamily
from prunelib.families.mlp.train import evaluate
from prunelib.pruning.criteria import magnitude_prune, named_masks
from prunelib.pruning.params import effective_parameters
from prunelib.results.schema import sweep_columns
from prunelib.storage.compact import compact_stats
from prunelib.storage.modelfile import model_tensors
from prunelib.sweep.metrics import size_metrics, static_metrics

FAMILY = MlpFamily()
STATIC_KEYS = set(sweep_columns("accuracy")) - {
    "iteration",
    "latency_mean_s",
    "latency_std_s",
    "latency_median_s",
    "latency_iqr_s",
}


@pytest.fixture(scope="module")
def small(mnist5k: Splits) -> Splits:
    return subset(mnist5k, 1000, 500, 0)


@pytest.fixture(scope="module")
def _lenet(small: Splits) -> nn.Module:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = FAMILY.build("lenet300", small, 0)
        FAMILY.train(model, small, TrainConfig(epochs=2, batch_size=64), 0, "dense")
    finally:
        torch.set_num_threads(before)
    return model.eval()


@pytest.fixture
def lenet(_lenet: nn.Module) -> nn.Module:
    return copy.deepcopy(_lenet)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.clone() for n, t in effective_parameters(model)}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("structured", [False, True], ids=["weights", "neurons"])
def test_static_metrics_keys_and_deployed_values(lenet: nn.Module, small: Splits, precision: str, structured: bool):
    model = lenet
    if structured:
        FAMILY.structured_step(model, 0.5, 0)
    else:
        magnitude_prune(FAMILY.prunable(model), 0.5)
    masks, before = named_masks(model), weights(model)
    row = static_metrics(FAMILY, model, small, structured=structured, precision=precision)
    assert set(row) == STATIC_KEYS and row["precision"] == precision
    stored = FAMILY.shrink(model) if structured else model
    stats = compact_stats(model_tensors(stored), precision)
    assert (row["disk_compact_bytes"], row["disk_bound_bytes"]) == (stats.disk_compact_bytes, stats.disk_bound_bytes)
    assert row["accuracy"] == evaluate(deploy(FAMILY, model, structured, precision), small.test)
    assert abs(row["accuracy"] - evaluate(model, small.test)) <= 0.02  # fp16/int8 cost little here
    assert row["params_total"] == 266_610
    if structured:  # 150 and 50 hidden neurons left: a smaller model does less work, and ships smaller
        assert row["flops"] == 784 * 150 + 150 * 50 + 50 * 10 and row["neuron_sparsity"] == 0.5
        assert row["params_deployed"] == 784 * 150 + 150 + 150 * 50 + 50 + 50 * 10 + 10
    else:
        assert row["flops"] == 784 * 300 + 300 * 100 + 100 * 10 and row["neuron_sparsity"] < 0.5
        assert row["params_deployed"] == 266_610
        assert row["sparsity"] == pytest.approx(0.5, abs=1e-5)
        assert row["params_nonzero"] == 266_610 - 133_100
    assert row["disk_compact_bytes"] < row["disk_dense_bytes"]
    assert sorted(named_masks(model)) == sorted(masks)  # the model is still the pruned one
    assert all(torch.equal(t, before[n]) for n, t in weights(model).items())


def test_fp32_metric_is_the_pruned_models_own(lenet: nn.Module, small: Splits) -> None:
    magnitude_prune(FAMILY.prunable(lenet), 0.7)
    row = static_metrics(FAMILY, lenet, small)
    assert row["accuracy"] == evaluate(lenet, small.test) and 0.5 < row["accuracy"] <= 1.0
    assert row["sparsity_model"] < row["sparsity"]  # biases stay dense


def test_embeddings_flag_counts_the_embedding_as_prunable(make_splits) -> None:
    toy = make_splits(features=6)
    as_tokens = [Split((s.x.abs() * 5).long() % 20, s.y) for s in (toy.train, toy.dev, toy.test)]
    tokens = Splits("toy-tokens", *as_tokens, 3, 6, tuple(f"w{i}" for i in range(20)))
    model = FAMILY.build("sst2-mlp", tokens, 0)
    magnitude_prune(FAMILY.prunable(model, embeddings=True), 0.5)
    with_emb = static_metrics(FAMILY, model, tokens, embeddings=True)
    without = static_metrics(FAMILY, model, tokens, embeddings=False)
    assert with_emb["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert without["sparsity"] != with_emb["sparsity"]
    assert with_emb["sparsity_model"] == without["sparsity_model"]


def test_size_metrics_of_the_stored_model(make_splits) -> None:
    model = FAMILY.build("lenet300", make_splits(n=4, features=784, classes=10), 0)
    magnitude_prune(FAMILY.prunable(model), 0.5)
    row = size_metrics(model, model, "fp32")
    assert row["params_total"] == 266_610 and row["params_nonzero"] == 266_610 - 133_100
    assert list(row) == [
        "sparsity",
        "sparsity_model",
        "params_total",
        "params_nonzero",
        "disk_dense_bytes",
        "disk_sparse_bytes",
        "disk_compact_bytes",
        "disk_bound_bytes",
    ]
    assert size_metrics(model, model, "int8")["disk_compact_bytes"] < row["disk_compact_bytes"]


class Broken(MlpFamily):
    """An MLP family whose evaluate() answers with ``scores``."""

    name = "broken"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def evaluate(self, model: nn.Module, data: Splits) -> dict[str, float]:
        return dict(self.scores)


@pytest.mark.parametrize(
    "scores, message",
    [
        ({"acc": 0.9}, r"family 'broken': evaluate\(\) returned \['acc'\], not its metric 'accuracy'"),
        ({}, r"family 'broken': evaluate\(\) returned \[\], not its metric 'accuracy'"),
        ({"accuracy": 1.5}, r"family 'broken': accuracy = 1\.5 outside \[0\.0, 1\.0\]"),
        ({"accuracy": -0.1}, r"family 'broken': accuracy = -0\.1 outside"),
        ({"accuracy": float("nan")}, r"family 'broken': accuracy = nan outside"),
    ],
)
def test_a_bad_evaluation_names_the_family(make_splits, scores: dict, message: str) -> None:
    toy = make_splits(features=6)
    model = FAMILY.build("lenet300", toy, 0)
    with pytest.raises(ValueError, match=message):
        static_metrics(Broken(scores), model, toy)


def test_extra_metrics_of_a_family_are_kept(make_splits) -> None:
    class Extra(Broken):
        metric = Metric("error", higher_is_better=False)

    toy = make_splits(features=6)
    row = static_metrics(Extra({"error": 0.25, "latency_budget": 3}), FAMILY.build("lenet300", toy, 0), toy)
    assert row["error"] == 0.25 and row["latency_budget"] == 3.0 and "accuracy" not in row
