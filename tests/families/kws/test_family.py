"""The kws family on the contract: registration, hyper-parameters, seeded builds, subsets, and
structured (channel) pruning through the Torch-Pruning engine with outputs kept by the shrink."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunelib.families.contract import fingerprint
from prunelib.families.kws.family import QUICK_TRAIN, KwsFamily
from prunelib.families.kws.models import DsCnn
from prunelib.families.registry import get_family
from prunelib.pruning.criteria import initial_state, rewind
from prunelib.pruning.params import count_parameters
from tests.families.kws.fake import real_fsdd, synthetic

FAMILY = KwsFamily()
DATA = synthetic(40)


def test_registered_and_described() -> None:
    family = get_family("kws")
    assert isinstance(family, KwsFamily) and family.structured
    assert family.metric.name == "accuracy" and family.metric.higher_is_better
    assert family.default_pair == ("fsdd", "ds-cnn") and family.smoke_pair == ("fsdd", "ds-cnn-mini")
    assert "structured-imp-rewind" in family.describe()["methods"]
    assert family.int8 == "static" and family.supports(runtime="onnxruntime", precision="int8") == ""
    assert "statically in ONNX Runtime" in family.supports(runtime="torch", precision="int8")


def test_calibration_is_on_training_clips_and_sensitivity_is_per_block() -> None:
    assert torch.equal(FAMILY.calibration_inputs(DATA), DATA.train_x[: len(FAMILY.calibration_inputs(DATA))])
    model = FAMILY.build("ds-cnn-mini", DATA, 0)
    groups = FAMILY.sensitivity_groups(model)
    assert list(groups)[0] == "stem" and list(groups)[-1] == "classifier"
    blocks = [name for name in groups if name.startswith("blocks.")]
    assert blocks and all(len(groups[b]) == 2 for b in blocks)  # depthwise and pointwise together


def test_static_int8_runs_in_onnx_runtime_close_to_fp32() -> None:
    from prunelib.deploy.runtimes import make_runner

    model = FAMILY.build("ds-cnn-mini", DATA, 0)
    run = make_runner(FAMILY, model, DATA, "onnxruntime", precision="int8")  # parity-checked inside
    assert run(FAMILY.example_inputs(DATA, 4)).shape == (4, 10)


def test_hparams_quick_trains_shorter() -> None:
    full, quick = FAMILY.hparams("fsdd", False), FAMILY.hparams("fsdd", True)
    assert 1 <= quick.epochs < full.epochs and 1 <= quick.retrain_epochs <= full.retrain_epochs
    assert (quick.lr, quick.batch_size, quick.shift) == (full.lr, full.batch_size, full.shift)
    with pytest.raises(ValueError, match="fsdd"):
        FAMILY.hparams("mnist", False)


def test_build_is_seeded() -> None:
    a, b, c = (FAMILY.build("ds-cnn", DATA, s) for s in (0, 0, 1))
    assert not a.training
    assert fingerprint(a.state_dict()) == fingerprint(b.state_dict()) != fingerprint(c.state_dict())
    with pytest.raises(ValueError, match="ds-cnn"):
        FAMILY.build("lenet300", DATA, 0)


def test_subset_and_example_inputs() -> None:
    cut = FAMILY.subset(DATA, 8, 5, seed=0)
    assert (len(cut.train_y), len(cut.test_y)) == (8, 5)
    rows = FAMILY.example_inputs(cut, 12)
    assert rows.shape == (12, 1, 49, 10) and torch.equal(rows[5:10], cut.test_x)  # cycled


def test_train_phases_use_their_epochs_and_keep_masks() -> None:
    model = FAMILY.build("ds-cnn-mini", DATA, 0)
    hp = FAMILY.hparams("fsdd", True)
    FAMILY.structured_step(model, 0.5, 0)
    zeros = {n: b == 0 for n, b in model.named_buffers() if n.endswith("_mask")}
    FAMILY.train(model, DATA, hp, 0, "retrain")
    for name, dead in zeros.items():
        owner, _, mask = name.rpartition(".")
        weight = getattr(model.get_submodule(owner), mask.removesuffix("_mask"))
        assert torch.all(weight[dead] == 0), f"{name}: a pruned entry came back"
    assert 0.0 <= FAMILY.evaluate(model, DATA)["accuracy"] <= 1.0


# ---------------------------------------------------------------- structured pruning
def channels(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_structure_traces_channels_and_keeps_the_classes() -> None:
    model = FAMILY.build("ds-cnn", DATA, 0)
    structure = FAMILY.structure(model)
    assert structure.example.shape == (1, 1, 49, 10)
    assert structure.ignored == (model.classifier,)
    units = FAMILY.units_remaining(model)
    assert len(units) == 5 and set(units.values()) == {64}  # the stem's and each block's channels
    assert FAMILY.unit_sparsity(model) == 0.0


@pytest.mark.parametrize("model_name", ["ds-cnn", "ds-cnn-mini"])
def test_structured_prune_and_shrink_keep_outputs(model_name: str) -> None:
    model = FAMILY.build(model_name, DATA, 0)
    with torch.no_grad():  # trained-looking BatchNorm statistics, so every unit carries signal
        gen = torch.Generator().manual_seed(3)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    x = FAMILY.example_inputs(DATA, 16)
    width = channels(model)[0]
    FAMILY.structured_step(model, 0.5, 0)
    assert set(FAMILY.units_remaining(model).values()) == {width - round(0.5 * width)}
    assert FAMILY.unit_sparsity(model) == pytest.approx(round(0.5 * width) / width)
    masked = FAMILY.deploy(model, structured=False)
    shrunk = FAMILY.deploy(model, structured=True)
    assert isinstance(shrunk, DsCnn) and set(channels(shrunk)) == {width // 2}
    assert shrunk.classifier.out_features == 10 and shrunk.blocks[0].depthwise[0].groups == width // 2
    assert count_parameters(shrunk) < count_parameters(masked)
    with torch.inference_mode():
        torch.testing.assert_close(shrunk(x), masked(x), rtol=0, atol=1e-5)
    assert FAMILY.shrink(model) is not model and not any(n.endswith("_mask") for n, _ in shrunk.named_buffers())


def test_structured_steps_compose_with_rewinding() -> None:
    model = FAMILY.build("ds-cnn-mini", DATA, 0)
    init = initial_state(model)
    before = copy.deepcopy(model)
    for _ in range(2):
        FAMILY.structured_step(model, 0.5, 0)
        rewind(model, init)
    assert set(FAMILY.units_remaining(model).values()) == {2}  # 8 -> 4 -> 2 channels per group
    kept = dict(model.named_parameters())
    assert torch.equal(kept["stem.0.weight_orig"], before.stem[0].weight)  # survivors at their initial values


# ---------------------------------------------------------------- the real data
def test_loads_real_fsdd() -> None:
    data = FAMILY.load_data("fsdd", "ds-cnn", real_fsdd(), 0, quick=True)
    assert data.input_shape == (49, 10) and len(data.test_y) == 300
    assert len(data.train_y) == QUICK_TRAIN < len(FAMILY.load_data("fsdd", "ds-cnn", real_fsdd(), 0, False).train_y)
    model = FAMILY.build("ds-cnn", data, 0)
    assert FAMILY.example_inputs(data, 3).shape == (3, 1, 49, 10)
    assert 0.0 <= FAMILY.evaluate(model, data)["accuracy"] <= 1.0
