"""Schedules: prune → (rewind) → (retrain) per step, exact sparsities, the sweep's columns, end to end."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import pandas as pd
import pytest
import torch
from torch import nn

from prunelib.config import DataConfig, MeasureConfig, PruneConfig, RunConfig, TrainConfig
from prunelib.data import Splits
from prunelib.models import effective_parameters, prunable_parameters
from prunelib.pruning import initial_state, magnitude_prune, named_masks
from prunelib.schedules import (
    SCHEDULES,
    Schedule,
    get_schedule,
    iterate_schedule,
    measure,
    model_spec,
    run_sweep,
    train_dense,
)
from prunelib.sparsity import expected_sparsity, sparsity_report
from prunelib.tables import SCHEDULE_COLUMNS
from prunelib.train import init_model

FAST_MEASURE = MeasureConfig(runs=2, warmup=0)
TOY_TRAIN = TrainConfig(epochs=1, batch_size=16, lr=1e-2)
LATENCY = ["latency_mean_s", "latency_std_s"]


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.clone() for n, t in effective_parameters(model)}


def survivors_equal(model: nn.Module, reference: dict[str, torch.Tensor]) -> bool:
    masks, now = named_masks(model), weights(model)
    return all(
        torch.equal(now[n][masks[n] == 1], reference[n][masks[n] == 1]) if n in masks else torch.equal(now[n], reference[n])
        for n in now
    )


def remaining_counts(total: int, amount: float, steps: int) -> list[int]:
    """Weights left after 0..steps global steps under the counting rule: round(amount * remaining)."""
    left = [total]
    for _ in range(steps):
        left.append(left[-1] - round(amount * left[-1]))
    return left


# ---------------------------------------------------------------- the table of schedules
def test_the_four_schedules() -> None:
    flags = {name: (s.criterion, s.rewind, s.retrain) for name, s in SCHEDULES.items()}
    assert flags == {
        "no-retrain": ("magnitude", False, False),
        "imp-rewind": ("magnitude", True, True),
        "imp-finetune": ("magnitude", False, True),
        "random": ("random", False, False),
    }
    assert all(SCHEDULES[n].name == n and get_schedule(n) is SCHEDULES[n] for n in SCHEDULES)


def test_unknown_method_lists_the_schedules() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'obd'.*imp-rewind"):
        get_schedule("obd")


def test_model_spec_takes_the_shapes_of_the_data(mnist5k: Splits, make_splits: Callable[..., Splits]) -> None:
    spec = model_spec("lenet300", mnist5k)
    assert (spec.name, spec.in_features, spec.num_classes, spec.vocab_size) == ("lenet300", 784, 10, 0)
    toy = replace(make_splits(), vocab=("<pad>", "<unk>", "a"))
    assert model_spec("sst2-mlp", toy).vocab_size == 3


# ---------------------------------------------------------------- train_dense
def test_train_dense_returns_the_trained_model_and_its_initial_weights(make_splits: Callable[..., Splits]) -> None:
    splits = make_splits()
    spec = model_spec("lenet300", splits)
    model, init = train_dense(spec, splits, TOY_TRAIN, seed=4)
    assert all(torch.equal(init[n], t) for n, t in effective_parameters(init_model(spec, 4)))
    assert not all(torch.equal(init[n], t) for n, t in effective_parameters(model))
    given = initial_state(init_model(spec, 9))
    _, init2 = train_dense(spec, splits, TOY_TRAIN, seed=4, initial=given)
    assert all(torch.equal(init2[n], given[n]) for n in given)


def test_train_dense_rejects_initial_weights_of_another_model(make_splits: Callable[..., Splits]) -> None:
    splits = make_splits(features=12)
    other = initial_state(init_model(model_spec("lenet300", make_splits(features=13)), 0))
    with pytest.raises(ValueError, match=r"'layers\.0\.weight' has shape \(300, 13\)"):
        train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0, initial=other)


# ---------------------------------------------------------------- iterate_schedule
@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("amount, steps", [(0.33, 4), (0.5, 1), (0.9, 3)])
def test_iterations_0_to_n_reach_the_expected_sparsity(
    make_splits: Callable[..., Splits], name: str, amount: float, steps: int
) -> None:
    splits = make_splits(n=32, features=6)
    model, init = train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0)
    total = sparsity_report(model).prunable_total
    left = remaining_counts(total, amount, steps)
    seen = []
    for k, current in iterate_schedule(model, init, splits.train, get_schedule(name), PruneConfig(name, amount, steps), TOY_TRAIN, 0):
        assert current is model  # one model walks the schedule
        report = sparsity_report(current)
        assert report.prunable_zeros == total - left[k]
        assert abs(report.sparsity - expected_sparsity(amount, k)) <= k / total
        seen.append(k)
    assert seen == list(range(steps + 1))


def test_zero_iterations_yield_only_the_dense_model(make_splits: Callable[..., Splits]) -> None:
    splits = make_splits()
    model, init = train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0)
    steps = list(iterate_schedule(model, init, splits.train, get_schedule("imp-rewind"), PruneConfig(iterations=0), TOY_TRAIN, 0))
    assert [k for k, _ in steps] == [0] and named_masks(model) == {}


@pytest.mark.parametrize("rewind", [False, True], ids=["keep", "rewind"])
@pytest.mark.parametrize("retrain", [False, True], ids=["no-retrain", "retrain"])
def test_rewind_and_retrain_flags_do_what_they_say(make_splits: Callable[..., Splits], rewind: bool, retrain: bool) -> None:
    splits = make_splits(n=48, features=6)
    model, init = train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0)
    schedule = Schedule("custom", "magnitude", rewind=rewind, retrain=retrain)
    steps = iterate_schedule(model, init, splits.train, schedule, PruneConfig("custom", 0.4, 2), TOY_TRAIN, 0)
    _, current = next(steps)  # k = 0: the trained dense model
    before = weights(current)
    for _, current in steps:
        reference = init if rewind else before
        assert survivors_equal(current, reference) is (not retrain)
        if retrain:  # retrained from the rewound (or pruned) weights: not left where pruning put them
            assert not survivors_equal(current, init) and not survivors_equal(current, before)
        before = weights(current)


def test_retraining_keeps_pruned_weights_at_zero(make_splits: Callable[..., Splits]) -> None:
    splits = make_splits(n=48, features=6)
    model, init = train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0)
    for k, current in iterate_schedule(model, init, splits.train, get_schedule("imp-rewind"), PruneConfig("imp-rewind", 0.5, 3), TOY_TRAIN, 0):
        masks, now = named_masks(current), weights(current)
        assert all(bool((now[n][m == 0] == 0).all()) for n, m in masks.items())


# ---------------------------------------------------------------- measure and run_sweep
def test_measure_reports_the_schedule_columns_and_changes_nothing(trained_lenet, mnist5k: Splits) -> None:
    model, _ = trained_lenet
    magnitude_prune(prunable_parameters(model), 0.5)
    masks, before = named_masks(model), weights(model)
    row = measure(model, mnist5k, FAST_MEASURE)
    assert list(row) == list(SCHEDULE_COLUMNS[1:])
    assert row["sparsity"] == pytest.approx(0.5, abs=1e-5) and 0 <= row["accuracy"] <= 1
    assert row["params_total"] == 266_610 and row["params_nonzero"] == 266_610 - 133_100
    assert all(torch.equal(named_masks(model)[n], m) for n, m in masks.items())
    assert all(torch.equal(t, before[n]) for n, t in weights(model).items())


def test_run_sweep_rows_columns_and_callback(make_splits: Callable[..., Splits]) -> None:
    splits = make_splits(n=48, features=6)
    cfg = RunConfig(model="lenet300", train=TOY_TRAIN, prune=PruneConfig("imp-finetune", 0.3, 3), measure=FAST_MEASURE)
    calls: list[tuple[int, int]] = []
    df = run_sweep(cfg, splits=splits, on_step=lambda k, m: calls.append((k, len(named_masks(m)))))
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns[: len(SCHEDULE_COLUMNS)]) == list(SCHEDULE_COLUMNS)
    assert df["iteration"].tolist() == [0, 1, 2, 3]
    assert calls == [(0, 0), (1, 3), (2, 3), (3, 3)]
    assert df["sparsity"].is_monotonic_increasing and df["params_nonzero"].is_monotonic_decreasing


# ---------------------------------------------------------------- end to end, on real data
#: Few epochs each; 2000 SST-2 phrases need a larger step to get clear of chance (~0.61 here).
E2E_TRAIN = {"mnist5k": TrainConfig(epochs=2), "sst2": TrainConfig(epochs=2, lr=1e-2)}
#: Dense test accuracy the sweep must reach: well above chance (0.1 and 0.5).
E2E_LEARNED = {"mnist5k": 0.85, "sst2": 0.55}


def e2e_cfg(dataset: str, data_dir: str | None, method: str, amount: float) -> RunConfig:
    subsets = {"train_subset": 2000, "test_subset": 300} if dataset == "sst2" else {}
    return RunConfig(
        data=DataConfig(dataset, data_dir, **subsets),
        model="lenet300" if dataset == "mnist5k" else "sst2-mlp",
        train=E2E_TRAIN[dataset],
        prune=PruneConfig(method, amount, 2),
        measure=FAST_MEASURE,
    )


@pytest.mark.parametrize("dataset", ["mnist5k", "sst2"])
def test_every_schedule_end_to_end_is_deterministic(request: pytest.FixtureRequest, dataset: str) -> None:
    """Every schedule for 2 iterations on real data: shapes, 1-(1-a)^k, accuracies, and a repeat run."""
    if dataset == "sst2":
        splits: Splits = request.getfixturevalue("sst2_small")
        data_dir = str(request.getfixturevalue("sst2_root"))
    else:
        splits, data_dir = request.getfixturevalue("mnist5k"), None
    amount = 0.4
    spec_total = sparsity_report(init_model(model_spec(e2e_cfg(dataset, data_dir, "random", amount).model, splits), 0)).prunable_total
    dense_rows = []
    for method in SCHEDULES:
        cfg = e2e_cfg(dataset, data_dir, method, amount)
        df = run_sweep(cfg, splits=splits)
        assert df.shape[0] == 3 and list(df.columns[: len(SCHEDULE_COLUMNS)]) == list(SCHEDULE_COLUMNS)
        assert df["iteration"].tolist() == [0, 1, 2]
        for k, s in zip(df["iteration"], df["sparsity"]):
            assert abs(s - expected_sparsity(amount, k)) <= max(k, 1) / spec_total, (method, k, s)
        assert df["accuracy"].between(0.0, 1.0).all()
        assert df["accuracy"].iloc[0] > E2E_LEARNED[dataset], f"{dataset}: the dense model did not learn"
        assert (df[LATENCY] >= 0).all().all()
        assert df["params_total"].nunique() == 1 and df["disk_dense_bytes"].iloc[1:].nunique() == 1
        assert abs(int(df["disk_dense_bytes"].iloc[1]) - int(df["disk_dense_bytes"].iloc[0])) <= 256  # key order only
        assert df["params_nonzero"].is_monotonic_decreasing and df["disk_sparse_bytes"].is_monotonic_decreasing
        assert (df["sparsity_model"].iloc[1:] < df["sparsity"].iloc[1:]).all()  # biases (and embeddings) stay dense
        again = run_sweep(cfg, splits=splits)
        pd.testing.assert_frame_equal(df.drop(columns=LATENCY), again.drop(columns=LATENCY))
        dense_rows.append(df.drop(columns=LATENCY).iloc[0])
    for row in dense_rows[1:]:  # every schedule starts from the same trained dense model
        pd.testing.assert_series_equal(row, dense_rows[0])
