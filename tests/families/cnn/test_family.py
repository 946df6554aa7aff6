"""The CNN family on the contract: registration, data per mode, structured units through the residual adds, shrink."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunelib.deploy.runtimes import make_runner
from prunelib.families.cnn.config import Hparams
from prunelib.families.cnn.data import Splits, load_images, subset
from prunelib.families.cnn.family import QUICK_SUBSETS, CnnFamily
from prunelib.families.cnn.models import PRESETS, build_model
from prunelib.families.registry import family_for, get_family
from prunelib.pruning.criteria import magnitude_prune
from prunelib.pruning.params import count_parameters

FAMILY = CnnFamily()


@pytest.fixture(scope="module")
def images() -> Splits:
    return subset(load_images("mnist5k", None, 0), 64, 64, seed=0)


def randomised(name: str, seed: int = 0) -> nn.Module:
    """A built model whose BatchNorm layers have non-trivial statistics, scales and shifts."""
    model = build_model(name, 10, seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t, (lo, hi) in ((m.running_mean, (-0.5, 0.5)), (m.running_var, (0.5, 2.0)), (m.weight, (0.5, 1.5)), (m.bias, (-0.3, 0.3))):  # fmt: skip
                    t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)
    return model


def test_registered_and_described() -> None:
    assert isinstance(get_family("cnn"), CnnFamily) and FAMILY.structured
    assert FAMILY.metric.name == "accuracy" and FAMILY.metric.higher_is_better
    assert FAMILY.default_pair == ("mnist5k", "lenet5") and FAMILY.smoke_pair == ("mnist5k", "resnet8")
    assert family_for("mnist5k", "resnet8") == "cnn" and family_for("fashion-mnist", "lenet5") == "cnn"
    assert "structured-imp-rewind" in FAMILY.describe()["methods"]


def test_floors_and_lottery_name_pairs_the_family_has() -> None:
    pairs = {(d, m) for d in FAMILY.datasets for m in FAMILY.models}
    assert set(FAMILY.floors) <= pairs and set(FAMILY.lottery) <= set(FAMILY.floors)
    assert all(0 < quick <= full < 1 for full, quick in FAMILY.floors.values())
    assert FAMILY.smoke_pair in pairs and {k for k in QUICK_SUBSETS} <= pairs


def test_quick_data_is_cut_per_model() -> None:
    lenet = FAMILY.load_data("mnist5k", "lenet5", None, 0, quick=True)
    resnet = FAMILY.load_data("mnist5k", "resnet8", None, 0, quick=True)
    assert (len(lenet.train), len(lenet.test)) == (3500, 1000)
    assert (len(resnet.train), len(resnet.test)) == QUICK_SUBSETS[("mnist5k", "resnet8")]
    with pytest.raises(ValueError, match="no dataset 'sst2'"):
        FAMILY.load_data("sst2", "lenet5", None, 0, quick=False)


def test_example_inputs_are_test_images_cycled(images: Splits) -> None:
    for batch in (1, 64, 100):
        x = FAMILY.example_inputs(images, batch)
        assert x.shape == (batch, 1, 28, 28) and torch.equal(x[0], images.test.x[0])


def test_evaluate_and_train_through_the_family(images: Splits) -> None:
    model = FAMILY.build("lenet5", images, 0)
    FAMILY.train(model, images, Hparams(epochs=1, batch_size=32), 0, "retrain")
    assert 0.0 <= FAMILY.evaluate(model, images)["accuracy"] <= 1.0


@pytest.mark.parametrize("name", PRESETS)
def test_structure_traces_one_image_and_keeps_the_classifier(name: str) -> None:
    model = build_model(name, 10, 0)
    structure = FAMILY.structure(model)
    assert structure.example.shape == (1, 1, 28, 28) and structure.ignored == (model.classifier,)


def test_units_are_channels_and_neurons() -> None:
    assert FAMILY.units_remaining(build_model("lenet5", 10, 0)) == {
        "features.0": 6, "features.4": 16, "hidden.1": 120, "hidden.3": 84,
    }  # fmt: skip
    assert FAMILY.units_remaining(build_model("resnet8", 10, 0)) == {
        "stem.0": 16, "layer1.conv1": 16, "layer2.conv1": 32, "layer2.shortcut.0": 32,
        "layer3.conv1": 64, "layer3.shortcut.0": 64,
    }  # fmt: skip


def test_resnet_prune_and_shrink_cut_both_sides_of_every_add_and_keep_outputs() -> None:
    model = randomised("resnet8")
    FAMILY.structured_step(model, 0.5, 0)
    assert FAMILY.unit_sparsity(model) == pytest.approx(0.5)
    shrunk = FAMILY.shrink(model)
    # identity add (layer1): the stem's channels are layer1.conv2's; downsample adds: conv2's are the 1x1's
    assert shrunk.stem[0].out_channels == shrunk.layer1.conv2.out_channels == shrunk.layer1.conv1.in_channels == 8
    for block, width in ((shrunk.layer2, 16), (shrunk.layer3, 32)):
        assert block.conv2.out_channels == block.shortcut[0].out_channels == block.bn2.num_features == width
        assert block.shortcut[1].num_features == width
    assert shrunk.layer2.shortcut[0].in_channels == shrunk.layer2.conv1.in_channels == 8
    assert (shrunk.classifier.in_features, shrunk.classifier.out_features) == (32, 10)
    assert count_parameters(shrunk) < count_parameters(model) / 3
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    deployed = FAMILY.deploy(model, structured=True)  # Torch-Pruning traces with autograd: not under no_grad
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(shrunk(x), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(deployed(x), expected, rtol=0, atol=1e-5)
    mask = model.classifier.weight_mask.bool()  # the classifier loses input columns, never a class
    assert hasattr(model.layer1.conv2, "weight_mask") and mask.any(1).all() and int((~mask.any(0)).sum()) == 32


def test_lenet_prune_and_shrink_keep_outputs() -> None:
    model = randomised("lenet5")
    FAMILY.structured_step(model, 0.5, 0)
    FAMILY.structured_step(model, 0.5, 0)
    assert FAMILY.units_remaining(model) == {"features.0": 1, "features.4": 4, "hidden.1": 30, "hidden.3": 21}
    shrunk = FAMILY.shrink(model)
    assert [m.out_channels for m in shrunk.features if isinstance(m, nn.Conv2d)] == [1, 4]
    assert shrunk.hidden[1].in_features == 4 * 5 * 5
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(shrunk(x), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch-sparse"])
def test_lenet_runs_on_every_declared_runtime(images: Splits, runtime: str) -> None:
    """The smoke pair (resnet8) covers ONNX parity in the contract tests; LeNet-5 here (the runner checks parity)."""
    model = copy.deepcopy(randomised("lenet5"))
    magnitude_prune(FAMILY.prunable(model), 0.7, 0)
    run = make_runner(FAMILY, model, images, runtime, threads=1, batch_size=4)
    x = FAMILY.example_inputs(images, 4)
    with torch.no_grad():
        torch.testing.assert_close(torch.as_tensor(run(x)), FAMILY.deploy(model, False)(x), rtol=0, atol=1e-4)


def test_int8_is_static_in_onnx_runtime_calibrated_on_training_images(images: Splits) -> None:
    assert FAMILY.int8 == "static" and "statically" in FAMILY.supports(runtime="torch", precision="int8")
    assert torch.equal(FAMILY.calibration_inputs(images), images.train.x[:256])
    model = randomised("resnet8")
    run = make_runner(FAMILY, model, images, "onnxruntime", precision="int8")  # parity-checked inside
    assert run(FAMILY.example_inputs(images, 2)).shape == (2, 10)


def test_sensitivity_groups_are_blocks() -> None:
    groups = FAMILY.sensitivity_groups(randomised("resnet8"))
    assert list(groups) == ["stem", "layer1", "layer2", "layer3", "classifier"]
    assert len(groups["layer2"]) == 3  # two convs and the 1x1 shortcut
