"""Schedules: prune → (rewind) → (retrain) per step, exact sparsities, the sweep's columns, end to end.

Structured schedules (whole hidden neurons) are checked on small synthetic data: neuron counts,
monotone masks, exact shrinking, rewinding, and the deploy columns of the sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pandas as pd
import pytest
import torch
from torch import nn

from prunelib.config import DataConfig, MeasureConfig, PruneConfig, RunConfig, TrainConfig
from prunelib.deploy.runtimes import deploy
from prunelib.families.mlp.data import Splits
from prunelib.families.mlp.train import evaluate, init_model
from prunelib.pruning.criteria import initial_state, magnitude_prune, named_masks
from prunelib.pruning.params import effective_parameters, linear_and_conv_weights
from prunelib.pruning.schedules import (
    SCHEDULES,
    Schedule,
    get_schedule,
    iterate_schedule,
    measure,
    model_spec,
    neuron_sparsity,
    run_sweep,
    static_metrics,
    train_dense,
)
from prunelib.pruning.sparsity import expected_sparsity, sparsity_report
from prunelib.pruning.structured import hidden_parameters, neuron_prune, neurons_remaining, shrink
from prunelib.results.tables import DEPLOY_COLUMNS, SCHEDULE_COLUMNS, SWEEP_COLUMNS
from prunelib.storage.compact import compact_stats, model_tensors

FAST_MEASURE = MeasureConfig(runs=2, warmup=0)
TOY_TRAIN = TrainConfig(epochs=1, batch_size=16, lr=1e-2)
LATENCY = ["latency_mean_s", "latency_std_s"]
UNSTRUCTURED = sorted(n for n, s in SCHEDULES.items() if not s.structured)
STRUCTURED = sorted(n for n, s in SCHEDULES.items() if s.structured)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.clone() for n, t in effective_parameters(model)}


def survivors_equal(model: nn.Module, reference: dict[str, torch.Tensor]) -> bool:
    masks, now = named_masks(model), weights(model)
    return all(
        torch.equal(now[n][masks[n] == 1], reference[n][masks[n] == 1])
        if n in masks
        else torch.equal(now[n], reference[n])
        for n in now
    )


def remaining_counts(total: int, amount: float, steps: int) -> list[int]:
    """Weights left after 0..steps global steps under the counting rule: round(amount * remaining)."""
    left = [total]
    for _ in range(steps):
        left.append(left[-1] - round(amount * left[-1]))
    return left


def neuron_counts(widths: dict[str, int], amount: float, steps: int) -> list[dict[str, int]]:
    """Hidden neurons left per layer after 0..steps structured steps: round(amount * remaining), keep one."""
    left = [dict(widths)]
    for _ in range(steps):
        left.append({n: r - min(round(amount * r), r - 1) for n, r in left[-1].items()})
    return left


# ---------------------------------------------------------------- the table of schedules
def test_the_schedules() -> None:
    flags = {name: (s.criterion, s.rewind, s.retrain, s.structured) for name, s in SCHEDULES.items()}
    assert flags == {
        "no-retrain": ("magnitude", False, False, False),
        "imp-rewind": ("magnitude", True, True, False),
        "imp-finetune": ("magnitude", False, True, False),
        "random": ("random", False, False, False),
        "structured-no-retrain": ("l2-neuron", False, False, True),
        "structured-imp-rewind": ("l2-neuron", True, True, True),
        "structured-imp-finetune": ("l2-neuron", False, True, True),
    }
    assert Schedule("custom", "magnitude", False, False).structured is False  # the old constructor still works
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
@pytest.mark.parametrize("name", UNSTRUCTURED)
@pytest.mark.parametrize("amount, steps", [(0.33, 4), (0.5, 1), (0.9, 3)])
def test_iterations_0_to_n_reach_the_expected_sparsity(
    make_splits: Callable[..., Splits], name: str, amount: float, steps: int
) -> None:
    splits = make_splits(n=32, features=6)
    model, init = train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0)
    total = sparsity_report(model).prunable_total
    left = remaining_counts(total, amount, steps)
    seen = []
    for k, current in iterate_schedule(
        model, init, splits.train, get_schedule(name), PruneConfig(name, amount, steps), TOY_TRAIN, 0
    ):
        assert current is model  # one model walks the schedule
        report = sparsity_report(current)
        assert report.prunable_zeros == total - left[k]
        assert abs(report.sparsity - expected_sparsity(amount, k)) <= k / total
        seen.append(k)
    assert seen == list(range(steps + 1))


def test_zero_iterations_yield_only_the_dense_model(make_splits: Callable[..., Splits]) -> None:
    splits = make_splits()
    model, init = train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0)
    steps = list(
        iterate_schedule(model, init, splits.train, get_schedule("imp-rewind"), PruneConfig(iterations=0), TOY_TRAIN, 0)
    )
    assert [k for k, _ in steps] == [0] and named_masks(model) == {}


@pytest.mark.parametrize("structured", [False, True], ids=["weights", "neurons"])
@pytest.mark.parametrize("rewind", [False, True], ids=["keep", "rewind"])
@pytest.mark.parametrize("retrain", [False, True], ids=["no-retrain", "retrain"])
def test_rewind_and_retrain_flags_do_what_they_say(
    make_splits: Callable[..., Splits], rewind: bool, retrain: bool, structured: bool
) -> None:
    splits = make_splits(n=48, features=6)
    model, init = train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0)
    criterion = "l2-neuron" if structured else "magnitude"
    schedule = Schedule("custom", criterion, rewind=rewind, retrain=retrain, structured=structured)
    steps = iterate_schedule(model, init, splits.train, schedule, PruneConfig("custom", 0.4, 2), TOY_TRAIN, 0)
    _, current = next(steps)  # k = 0: the trained dense model
    before = weights(current)
    for _, current in steps:
        reference = init if rewind else before
        assert survivors_equal(current, reference) is (not retrain)
        if retrain:  # retrained from the rewound (or pruned) weights: not left where pruning put them
            assert not survivors_equal(current, init) and not survivors_equal(current, before)
        before = weights(current)


@pytest.mark.parametrize("method", ["imp-rewind", "structured-imp-rewind", "structured-imp-finetune"])
def test_retraining_keeps_pruned_weights_at_zero_and_masks_monotone(
    make_splits: Callable[..., Splits], method: str
) -> None:
    splits = make_splits(n=48, features=6)
    model, init = train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0)
    before: dict[str, torch.Tensor] = {}
    for _k, current in iterate_schedule(
        model, init, splits.train, get_schedule(method), PruneConfig(method, 0.5, 3), TOY_TRAIN, 0
    ):
        masks, now = named_masks(current), weights(current)
        assert all(bool((now[n][m == 0] == 0).all()) for n, m in masks.items())
        assert all(bool((masks[n] <= m).all()) for n, m in before.items())  # a pruned entry never comes back
        before = masks


# ---------------------------------------------------------------- structured schedules
@pytest.mark.parametrize("name", STRUCTURED)
def test_structured_schedules_remove_1_minus_1_minus_a_to_the_k_of_the_neurons(
    make_splits: Callable[..., Splits], name: str
) -> None:
    splits = make_splits(n=32, features=6)
    model, init = train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0)
    amount, steps = 0.4, 2
    widths = neurons_remaining(model)
    assert widths == {"layers.0": 300, "layers.2": 100}
    left = neuron_counts(widths, amount, steps)
    x = splits.test.x
    for k, current in iterate_schedule(
        model, init, splits.train, get_schedule(name), PruneConfig(name, amount, steps), TOY_TRAIN, 0
    ):
        assert neurons_remaining(current) == left[k]
        for layer, width in widths.items():  # within the rounding of each step
            assert abs(left[k][layer] / width - (1 - amount) ** k) <= 0.5 / (amount * width)
        total = sum(widths.values())
        assert neuron_sparsity(current) == pytest.approx(1 - sum(left[k].values()) / total)
        assert sorted(named_masks(current)) == (
            [] if k == 0 else ["layers.0.bias", "layers.0.weight", "layers.2.bias", "layers.2.weight"]
        )
        small = shrink(current)  # physically smaller, same outputs as the masked model
        assert [m.out_features for m in small.layers if isinstance(m, nn.Linear)] == list(left[k].values())
        with torch.no_grad():
            torch.testing.assert_close(small.eval()(x), current.eval()(x), rtol=1e-5, atol=1e-6)


def test_structured_rewind_puts_survivors_back_to_init(make_splits: Callable[..., Splits]) -> None:
    """structured-imp-rewind without retraining epochs: after each step survivors are exactly the initial weights."""
    splits = make_splits(n=32, features=6)
    model, init = train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0)
    no_epochs = TrainConfig(epochs=0)
    steps = iterate_schedule(
        model,
        init,
        splits.train,
        get_schedule("structured-imp-rewind"),
        PruneConfig(amount=0.5, iterations=2),
        no_epochs,
        0,
    )
    for k, current in steps:
        if k:
            assert survivors_equal(current, init)
            small = shrink(current)  # the shrunk survivors are the initial rows (and columns) too
            alive0, alive2 = current.layers[0].weight_mask.any(1), current.layers[2].weight_mask.any(1)
            assert torch.equal(small.layers[0].weight, init["layers.0.weight"][alive0])
            assert torch.equal(small.layers[0].bias, init["layers.0.bias"][alive0])
            assert torch.equal(small.layers[2].weight, init["layers.2.weight"][alive2][:, alive0])
            assert torch.equal(small.out.weight, init["out.weight"][:, alive2])


def test_structured_schedule_needs_a_known_criterion_and_an_mlp(make_splits: Callable[..., Splits], make_mlp) -> None:
    splits = make_splits(n=16, features=6)
    model, init = train_dense(model_spec("lenet300", splits), splits, TOY_TRAIN, seed=0)
    bad = Schedule("custom", "magnitude", rewind=False, retrain=False, structured=True)
    with pytest.raises(ValueError, match=r"unknown structured criterion 'magnitude'.*l2-neuron"):
        list(iterate_schedule(model, init, splits.train, bad, PruneConfig(iterations=1), TOY_TRAIN, 0))
    seq = make_mlp((6, 5, 3))
    with pytest.raises(TypeError, match="MLP"):
        list(
            iterate_schedule(
                seq, {}, splits.train, get_schedule("structured-no-retrain"), PruneConfig(iterations=1), TOY_TRAIN, 0
            )
        )


# ---------------------------------------------------------------- measure and run_sweep
def test_measure_reports_the_schedule_columns_and_changes_nothing(trained_lenet, mnist5k: Splits) -> None:
    model, _ = trained_lenet
    magnitude_prune(linear_and_conv_weights(model), 0.5)
    masks, before = named_masks(model), weights(model)
    row = measure(model, mnist5k, FAST_MEASURE)
    assert list(row) == list(SWEEP_COLUMNS[1:]) and list(row)[: len(SCHEDULE_COLUMNS) - 1] == list(SCHEDULE_COLUMNS[1:])
    assert row["sparsity"] == pytest.approx(0.5, abs=1e-5) and 0 <= row["accuracy"] <= 1
    assert row["params_total"] == 266_610 and row["params_nonzero"] == 266_610 - 133_100
    assert row["accuracy"] == evaluate(model, mnist5k.test)  # fp32 deployment is exact
    assert row["flops"] == 784 * 300 + 300 * 100 + 100 * 10 and row["precision"] == "fp32"
    assert all(torch.equal(named_masks(model)[n], m) for n, m in masks.items())
    assert all(torch.equal(t, before[n]) for n, t in weights(model).items())


STATIC_KEYS = [c for c in SWEEP_COLUMNS[1:] if c not in LATENCY]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("structured", [False, True], ids=["weights", "neurons"])
def test_static_metrics_keys_and_deployed_values(
    trained_lenet, mnist5k: Splits, precision: str, structured: bool
) -> None:
    model, _ = trained_lenet
    if structured:
        neuron_prune(hidden_parameters(model), 0.5)
    else:
        magnitude_prune(linear_and_conv_weights(model), 0.5)
    masks = named_masks(model)
    cfg = MeasureConfig(precision=precision)
    row = static_metrics(model, mnist5k, cfg, structured=structured)
    assert list(row) == STATIC_KEYS
    assert set(DEPLOY_COLUMNS) <= set(row) and row["precision"] == precision
    stored = shrink(model) if structured else model
    stats = compact_stats(model_tensors(stored), precision)
    assert (row["disk_compact_bytes"], row["disk_bound_bytes"]) == (stats.disk_compact_bytes, stats.disk_bound_bytes)
    assert row["accuracy"] == evaluate(deploy(model, structured, precision), mnist5k.test)
    assert abs(row["accuracy"] - evaluate(model, mnist5k.test)) <= 0.02  # fp16/int8 cost little here
    if structured:  # 150 and 50 hidden neurons left: a smaller model does less work
        assert row["flops"] == 784 * 150 + 150 * 50 + 50 * 10 and row["neuron_sparsity"] == 0.5
    else:
        assert row["flops"] == 784 * 300 + 300 * 100 + 100 * 10 and row["neuron_sparsity"] < 0.5
    assert row["disk_compact_bytes"] < row["disk_dense_bytes"]
    assert sorted(named_masks(model)) == sorted(masks)  # the model is still the pruned one


def test_neuron_sparsity_is_nan_for_other_models(make_mlp) -> None:
    assert neuron_sparsity(make_mlp((4, 3, 2))) != neuron_sparsity(make_mlp((4, 3, 2)))  # NaN


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
    assert list(df.columns) == list(SWEEP_COLUMNS)


@pytest.mark.parametrize("name", STRUCTURED)
def test_structured_sweep_shrinks_what_is_deployed(make_splits: Callable[..., Splits], name: str) -> None:
    splits = make_splits(n=48, features=6)
    amount = 0.4
    cfg = RunConfig(model="lenet300", train=TOY_TRAIN, prune=PruneConfig(name, amount, 2), measure=FAST_MEASURE)
    df = run_sweep(cfg, splits=splits)
    assert list(df.columns) == list(SWEEP_COLUMNS) and df["iteration"].tolist() == [0, 1, 2]
    left = [sum(c.values()) for c in neuron_counts({"layers.0": 300, "layers.2": 100}, amount, 2)]
    assert df["neuron_sparsity"].tolist() == pytest.approx([1 - n / 400 for n in left])
    assert df["flops"].is_monotonic_decreasing and df["flops"].nunique() == 3
    assert df["disk_compact_bytes"].is_monotonic_decreasing and df["disk_bound_bytes"].is_monotonic_decreasing
    assert df["sparsity"].is_monotonic_increasing and df["params_total"].nunique() == 1
    assert (df["precision"] == "fp32").all()
    again = run_sweep(cfg, splits=splits)
    pd.testing.assert_frame_equal(df.drop(columns=LATENCY), again.drop(columns=LATENCY))


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
    spec_total = sparsity_report(
        init_model(model_spec(e2e_cfg(dataset, data_dir, "random", amount).model, splits), 0)
    ).prunable_total
    dense_rows = []
    for method in UNSTRUCTURED:  # structured schedules: test_structured_sweep_shrinks_what_is_deployed
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
