"""Layer sensitivity: one group pruned at a time on a copy, exact sparsity per group, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from prunelib.families.contract import Family, Metric
from prunelib.families.mlp.config import TrainConfig
from prunelib.families.mlp.family import MlpFamily
from prunelib.families.mlp.models import MLP
from prunelib.families.mlp.train import evaluate
from prunelib.pruning.criteria import magnitude_prune
from prunelib.report.plots import figure_texts, sensitivity_figure
from prunelib.sweep.sensitivity import (
    DEFAULT_LEVELS,
    family_sensitivity,
    group_sparsity,
    prune_group_to,
    sensitivity,
)


def mlp_groups(model: nn.Module):
    return MlpFamily().sensitivity_groups(model)


def tiny_mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(in_features=6, hidden=(8, 5), num_classes=3)


def zero_fraction(model: nn.Module):
    """An 'evaluate' that reports the fraction of zero weights over all Linear layers."""

    def evaluate(m: nn.Module) -> float:
        ws = [mod.weight.detach() for mod in m.modules() if isinstance(mod, nn.Linear)]
        return float(sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws))

    return evaluate


def test_mlp_groups_name_every_linear() -> None:
    model = tiny_mlp()
    groups = mlp_groups(model)
    assert list(groups) == ["layers.0", "layers.2", "out"]
    assert groups["out"] == [(model.out, "weight")]
    assert mlp_groups(nn.Sequential(nn.ReLU())) == {}
    with pytest.raises(ValueError, match="at least one group"):  # a model without Linears has nothing to analyse
        sensitivity(nn.Sequential(nn.ReLU()), mlp_groups(nn.Sequential(nn.ReLU())), lambda m: 0.0)


def test_default_groups_of_the_contract_are_the_prunable_layers() -> None:
    conv = nn.Sequential(nn.Conv1d(2, 3, 2), nn.ReLU(), nn.Linear(3, 2))
    groups = Family.sensitivity_groups(MlpFamily(), conv)  # the contract's default, not the MLP's override
    assert groups == {"0": [(conv[0], "weight")], "2": [(conv[2], "weight")]}


def test_sensitivity_rows_levels_and_exact_group_sparsity() -> None:
    model = tiny_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    levels = (0.0, 0.25, 0.5, 0.9)
    frame = sensitivity(model, mlp_groups(model), zero_fraction(model), levels, metric="zeros")
    assert list(frame.columns) == ["group", "sparsity", "group_sparsity", "model_sparsity", "zeros"]
    assert len(frame) == 3 * len(levels)
    assert frame["group"].tolist() == [g for g in ("layers.0", "layers.2", "out") for _ in levels]
    sizes = {"layers.0": 48, "layers.2": 40, "out": 15}
    for row in frame.itertuples():
        assert row.group_sparsity == round(row.sparsity * sizes[row.group]) / sizes[row.group]
        # only this group was pruned: the model's zeros are exactly the group's
        assert row.zeros == pytest.approx(row.group_sparsity * sizes[row.group] / sum(sizes.values()))
        assert row.model_sparsity == pytest.approx(row.zeros)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # model untouched
    assert not any(name.endswith("_mask") for name, _ in model.named_buffers())


def test_dense_level_is_evaluated_once() -> None:
    model, calls = tiny_mlp(), []

    def evaluate(m: nn.Module) -> float:
        calls.append(1)
        return 0.5

    frame = sensitivity(model, mlp_groups(model), evaluate, levels=(0.0, 0.5))
    assert len(calls) == 1 + 3  # one dense evaluation shared by the three groups
    assert (frame.loc[frame["sparsity"] == 0.0, "accuracy"] == 0.5).all()


def test_the_dense_level_is_added_when_missing_so_losses_have_a_reference() -> None:
    model, calls = tiny_mlp(), []

    def evaluate(m: nn.Module) -> float:
        calls.append(1)
        return 0.5 if len(calls) == 1 else 0.25

    frame = sensitivity(model, mlp_groups(model), evaluate, levels=(0.5,))
    assert len(calls) == 1 + 3 and sorted(set(frame["sparsity"])) == [0.0, 0.5]
    assert (frame.loc[frame["sparsity"] == 0.0, "accuracy"] == 0.5).all()


def test_magnitude_removes_the_smallest_weights_of_the_group() -> None:
    model = tiny_mlp()
    with torch.no_grad():
        model.out.weight.copy_(torch.arange(1, 16, dtype=torch.float32).reshape(3, 5))
    prune_group_to([(model.out, "weight")], 0.4)
    assert model.out.weight.flatten().tolist()[:6] == [0.0] * 6
    assert model.out.weight.flatten().tolist()[6:] == list(range(7, 16))


def test_already_pruned_weights_count_towards_the_level() -> None:
    model = tiny_mlp()
    params = [(model.layers[0], "weight")]
    magnitude_prune(params, 0.25)  # 12 of 48
    prune_group_to(params, 0.5)
    assert group_sparsity(params) == 0.5
    prune_group_to(params, 0.25)  # lower than present: nothing to do
    assert group_sparsity(params) == 0.5


def test_default_levels_and_validation() -> None:
    model = tiny_mlp()
    groups = mlp_groups(model)
    assert DEFAULT_LEVELS[0] == 0.0 and DEFAULT_LEVELS[-1] == 0.9 and len(DEFAULT_LEVELS) == 10
    evaluate = zero_fraction(model)
    with pytest.raises(ValueError, match="at least one group"):
        sensitivity(model, {}, evaluate)
    with pytest.raises(ValueError, match="'empty'"):
        sensitivity(model, {"empty": []}, evaluate)
    with pytest.raises(ValueError, match=r"\[1.0\]"):
        sensitivity(model, groups, evaluate, levels=(0.5, 1.0))
    with pytest.raises(ValueError, match="not part of the model"):
        sensitivity(model, {"x": [(nn.Linear(2, 2), "weight")]}, evaluate)
    with pytest.raises(ValueError, match="criterion"):
        sensitivity(model, groups, evaluate, criterion="largest")


def test_random_criterion_reaches_the_same_sparsity() -> None:
    model = tiny_mlp()
    frame = sensitivity(model, mlp_groups(model), zero_fraction(model), (0.5,), criterion="random", seed=3)
    pruned = frame[frame["sparsity"] == 0.5]
    assert pruned["group_sparsity"].tolist() == [24 / 48, 20 / 40, 8 / 15]


def test_sensitivity_figure_plots_one_line_per_group() -> None:
    model = tiny_mlp()
    frame = sensitivity(model, mlp_groups(model), zero_fraction(model), (0.0, 0.5), metric="accuracy")
    fig = sensitivity_figure(frame, "accuracy", "tiny MLP")
    texts = figure_texts(fig)
    assert "tiny MLP" in texts["title"]
    assert texts["axes"][0]["legend"] == ["layers.0", "layers.2", "out"]
    assert isinstance(frame, pd.DataFrame)


class ErrorFamily(MlpFamily):
    """The MLP family scored by error rate (lower is better) instead of accuracy."""

    name = "mlp-error"
    metric = Metric("error", higher_is_better=False)

    def evaluate(self, model: nn.Module, data) -> dict[str, float]:
        return {"error": 1.0 - evaluate(model, data.test)}


@pytest.mark.parametrize("family", [MlpFamily(), ErrorFamily()], ids=["accuracy", "error"])
def test_family_sensitivity_scores_by_the_familys_metric(make_splits, family: MlpFamily) -> None:
    data = make_splits(n=32, features=6)
    model = family.build("lenet300", data, 0)
    family.train(model, data, TrainConfig(epochs=1, batch_size=16), 0, "dense")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frame = family_sensitivity(family, model, data, levels=(0.0, 0.5, 0.9))
    name = family.metric.name
    assert list(frame.columns) == ["group", "sparsity", "group_sparsity", "model_sparsity", name]
    assert frame.attrs["metric"] == family.metric
    assert frame["group"].tolist() == [g for g in ("layers.0", "layers.2", "out") for _ in range(3)]
    dense = family.evaluate(model, data)[name]
    assert (frame.loc[frame["sparsity"] == 0.0, name] == dense).all()
    assert (frame.loc[frame["sparsity"] == 0.0, "group_sparsity"] == 0.0).all()
    sizes = {"layers.0": 6 * 300, "layers.2": 300 * 100, "out": 100 * 3}
    for row in frame[frame["sparsity"] > 0].itertuples():
        assert abs(row.group_sparsity - row.sparsity) <= 1 / sizes[row.group]
    assert sorted(before) == sorted(model.state_dict())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_family_sensitivity_of_a_freshly_pruned_model(make_splits) -> None:
    family, data = MlpFamily(), make_splits(n=32, features=6)
    model = family.build("lenet300", data, 0)
    magnitude_prune(family.prunable(model), 0.3)  # e.g. a no-retrain step: the cached weights carry autograd history
    frame = family_sensitivity(family, model, data, levels=(0.0, 0.5))
    dense_rows = frame.loc[frame["sparsity"] == 0.0, "model_sparsity"]
    assert dense_rows.tolist() == pytest.approx([0.3] * 3, abs=1e-4)  # the existing zeros count
