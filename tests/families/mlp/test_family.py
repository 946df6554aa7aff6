"""The MLP family on the contract: hparams, structured units, shrink, forward, defaults."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from prunelib.families.contract import Family
from prunelib.families.mlp.family import MlpFamily, batch_of
from prunelib.families.mlp.models import MLP
from prunelib.families.registry import get_family
from prunelib.pruning.criteria import initial_state, magnitude_prune, rewind

FAMILY = MlpFamily()


def small(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(8, (12, 6), 3).eval()


def test_registered_and_described() -> None:
    assert isinstance(get_family("mlp"), MlpFamily) and FAMILY.structured
    assert FAMILY.metric.name == "accuracy" and FAMILY.metric.higher_is_better
    assert FAMILY.runtimes == ("torch", "onnxruntime", "torch-sparse", "executorch")
    assert "structured-imp-rewind" in FAMILY.describe()["methods"]


@pytest.mark.parametrize("dataset", ["mnist5k", "mnist", "fashion-mnist", "sst2"])
def test_quick_hparams_train_shorter_with_the_same_step(dataset: str) -> None:
    full, quick = FAMILY.hparams(dataset, False), FAMILY.hparams(dataset, True)
    assert 1 <= quick.epochs < full.epochs
    assert (quick.lr, quick.batch_size, quick.weight_decay) == (full.lr, full.batch_size, full.weight_decay)


def test_default_model_and_pairs() -> None:
    assert FAMILY.default_model("mnist5k") == "lenet300" and FAMILY.default_model("sst2") == "sst2-bow"
    assert FAMILY.default_pair == ("mnist5k", "lenet300") == FAMILY.smoke_pair
    with pytest.raises(ValueError, match=r"no model 'vgg'"):
        FAMILY.check_model("vgg")


def test_structured_units_are_the_hidden_neurons_and_the_seed_changes_nothing() -> None:
    model, twin = small(), small()
    assert FAMILY.units_remaining(model) == {"layers.0": 12, "layers.2": 6}
    assert FAMILY.unit_sparsity(model) == 0.0
    FAMILY.structured_step(model, 0.5, seed=3)
    FAMILY.structured_step(twin, 0.5, seed=4)  # L2 ranking: no randomness
    assert FAMILY.units_remaining(model) == FAMILY.units_remaining(twin) == {"layers.0": 6, "layers.2": 3}
    assert torch.equal(model.layers[0].weight_mask, twin.layers[0].weight_mask)
    assert FAMILY.unit_sparsity(model) == pytest.approx(1 - 9 / 18)
    assert not hasattr(model.out, "bias_mask")  # the output layer keeps its classes (its input columns go)
    assert FAMILY.shrink(model).out.out_features == model.out.out_features


def test_shrink_is_a_smaller_mlp_with_the_same_outputs() -> None:
    model = small()
    FAMILY.structured_step(model, 0.5, 0)
    x = torch.randn(4, 8)
    ours = FAMILY.shrink(model)
    assert type(ours) is type(model)  # Torch-Pruning rebuilds the layers in place: still an MLP
    assert [m.out_features for m in ours.layers if isinstance(m, nn.Linear)] == [6, 3]
    torch.testing.assert_close(ours(x), model(x), rtol=0, atol=1e-6)
    deployed = FAMILY.deploy(model, structured=True)
    torch.testing.assert_close(deployed(x), model(x), rtol=0, atol=1e-6)


def test_sensitivity_groups_are_every_linear() -> None:
    model = small()
    assert FAMILY.sensitivity_groups(model) == {
        "layers.0": [(model.layers[0], "weight")],
        "layers.2": [(model.layers[2], "weight")],
        "out": [(model.out, "weight")],
    }


def test_forward_matches_the_module_call() -> None:
    deployed = FAMILY.deploy(small(), structured=False)
    run = FAMILY.forward(deployed)
    for x in (torch.randn(1, 8), torch.randn(5, 8), torch.randn(2, 2, 4)):  # 2-D input flattened as the module does
        with torch.inference_mode():
            assert torch.equal(run(x), deployed(x))
    torch.manual_seed(0)
    tokens_model = MLP(0, (4,), 2, vocab_size=30, embed_dim=5).eval()
    tokens = torch.randint(0, 30, (3, 7))
    with torch.inference_mode():
        assert torch.equal(FAMILY.forward(tokens_model)(tokens), tokens_model(tokens))


def test_forward_falls_back_to_the_module_call_when_hooks_are_present() -> None:
    model = small()
    magnitude_prune(FAMILY.prunable(model), 0.5)
    init = initial_state(small(1))
    rewind(model, init)
    with torch.no_grad():  # a stale cached .weight: only the pruning hook would recompute it
        model.layers[0].weight_orig.add_(1.0)
    x = torch.randn(3, 8)
    with torch.inference_mode():
        expected = model(x)
    with torch.inference_mode():
        assert torch.equal(FAMILY.forward(model)(x), expected)
    seen: list[int] = []
    plain = FAMILY.deploy(small(), structured=False)
    plain.out.register_forward_hook(lambda m, i, o: seen.append(1))
    FAMILY.forward(plain)(x)
    assert seen == [1]  # a user hook still runs


def test_batch_of_cycles_rows() -> None:
    x = torch.arange(6.0).reshape(3, 2)
    assert batch_of(x, 2).tolist() == [[0, 1], [2, 3]]
    assert batch_of(x, 5).tolist() == [[0, 1], [2, 3], [4, 5], [0, 1], [2, 3]]


def test_unit_sparsity_without_hidden_layers_is_nan() -> None:
    assert math.isnan(FAMILY.unit_sparsity(MLP(4, (), 2)))

    class NoUnits(MlpFamily):
        structure = Family.structure

    assert math.isnan(NoUnits().unit_sparsity(small()))  # the contract's default without a structure


def test_prunable_are_the_linear_weights_and_optionally_the_embedding() -> None:
    model = MLP(0, (4,), 2, vocab_size=30, embed_dim=5)
    assert [m for m, _ in FAMILY.prunable(model)] == [model.layers[0], model.out]
    assert FAMILY.prunable(model, embeddings=True)[0] == (model.embedding.embedding, "weight")
    prune.identity(model.out, "weight")
    assert len(FAMILY.prunable(model)) == 2
