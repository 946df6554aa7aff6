"""One sweep end to end (the CLI's runner): rows and columns, initial weights, determinism, timing options."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from prunelib.families.mlp.data import subset
from prunelib.pruning.criteria import initial_state, named_masks
from prunelib.pruning.schedules import SCHEDULES
from prunelib.pruning.sparsity import expected_sparsity
from prunelib.results.schema import sweep_columns
from prunelib.sweep.loaded import Loaded, load
from prunelib.sweep.runner import Timing, measure, run_sweep
from prunelib.sweep.spec import SweepSpec

FAST = Timing(runs=2, warmup=0)
LATENCY = ["latency_mean_s", "latency_std_s", "latency_median_s", "latency_iqr_s"]
UNSTRUCTURED = [n for n, s in SCHEDULES.items() if not s.structured]
STRUCTURED = [n for n, s in SCHEDULES.items() if s.structured]


def spec(method: str = "imp-finetune", amount: float = 0.3, iterations: int = 3, **kw) -> SweepSpec:
    return SweepSpec("mlp", "mnist5k", "lenet300", method, amount, iterations, quick=True, **kw)


@pytest.fixture(scope="module")
def loaded() -> Loaded:
    """MNIST-5k as ``--prune-quick`` loads it, cut to 600 / 300 examples, one epoch per training."""
    full = load(spec())
    return Loaded(full.family, subset(full.data, 600, 300, 0), replace(full.hparams, epochs=1, batch_size=100))


def test_rows_columns_and_callback(loaded: Loaded) -> None:
    calls: list[tuple[int, int]] = []
    df, init = run_sweep(spec(), loaded, FAST, on_step=lambda k, m: calls.append((k, len(named_masks(m)))))
    assert isinstance(df, pd.DataFrame) and list(df.columns) == list(sweep_columns("accuracy"))
    assert df.attrs["metric"] == loaded.family.metric
    assert df["iteration"].tolist() == [0, 1, 2, 3]
    assert calls == [(0, 0), (1, 3), (2, 3), (3, 3)]
    for k, s in zip(df["iteration"], df["sparsity"]):
        assert abs(s - expected_sparsity(0.3, k)) <= max(k, 1) / 266_200
    assert df["sparsity"].is_monotonic_increasing and df["params_nonzero"].is_monotonic_decreasing
    assert df["disk_sparse_bytes"].is_monotonic_decreasing and df["params_total"].nunique() == 1
    assert (df["sparsity_model"].iloc[1:] < df["sparsity"].iloc[1:]).all()  # biases stay dense
    assert df["accuracy"].between(0, 1).all() and df["accuracy"].iloc[0] > 0.6  # the dense model learned
    assert (df[LATENCY] >= 0).all().all() and (df["precision"] == "fp32").all()
    built = initial_state(loaded.fresh(spec()))
    assert sorted(init) == sorted(built) and all(torch.equal(init[n], built[n]) for n in built)


def test_initial_weights_are_honoured(loaded: Loaded) -> None:
    given = initial_state(loaded.fresh(spec(seed=7)))
    short = spec(method="imp-rewind", iterations=1)
    dense: dict[str, dict[str, torch.Tensor]] = {}

    def keep_dense(label: str):
        return lambda k, m: dense.setdefault(label, initial_state(m)) if k == 0 else None

    _, init = run_sweep(short, loaded, FAST, initial=given, on_step=keep_dense("given"))
    assert all(torch.equal(init[n], given[n]) for n in given)
    _, own_init = run_sweep(short, loaded, FAST, on_step=keep_dense("own"))
    assert not all(torch.equal(own_init[n], given[n]) for n in given)
    # same data, seed and epochs: only the start differs, and so does the trained dense model
    assert not torch.equal(dense["given"]["layers.0.weight"], dense["own"]["layers.0.weight"])


def test_initial_weights_of_another_model_are_rejected(loaded: Loaded, make_splits) -> None:
    other = initial_state(loaded.family.build("lenet300", make_splits(features=13), 0))
    with pytest.raises(ValueError, match=r"'layers\.0\.weight' has shape \(300, 13\)"):
        run_sweep(spec(), loaded, FAST, initial=other)


def test_repeat_runs_agree_and_methods_share_the_dense_model(loaded: Loaded) -> None:
    dense_rows = []
    for method in ("no-retrain", "imp-rewind", "random"):
        s = spec(method=method, iterations=2)
        df, _ = run_sweep(s, loaded, FAST)
        again, _ = run_sweep(s, loaded, FAST)
        pd.testing.assert_frame_equal(df.drop(columns=LATENCY), again.drop(columns=LATENCY))
        dense_rows.append(df.drop(columns=LATENCY).iloc[0])
    for row in dense_rows[1:]:
        pd.testing.assert_series_equal(row, dense_rows[0])


@pytest.mark.parametrize("method", STRUCTURED)
def test_structured_sweep_shrinks_what_is_deployed(loaded: Loaded, method: str) -> None:
    df, _ = run_sweep(spec(method=method, amount=0.4, iterations=2), loaded, FAST)
    assert list(df.columns) == list(sweep_columns("accuracy")) and df["iteration"].tolist() == [0, 1, 2]
    left = [300 + 100, 180 + 60, 108 + 36]  # round(0.4 * remaining) per layer and step
    assert df["neuron_sparsity"].tolist() == pytest.approx([1 - n / 400 for n in left])
    assert df["flops"].tolist() == [
        784 * 300 + 300 * 100 + 1000,
        784 * 180 + 180 * 60 + 600,
        784 * 108 + 108 * 36 + 360,
    ]
    assert df["params_deployed"].is_monotonic_decreasing and df["params_total"].nunique() == 1
    assert df["disk_compact_bytes"].is_monotonic_decreasing and df["disk_bound_bytes"].is_monotonic_decreasing
    assert df["sparsity"].is_monotonic_increasing


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"runs": 1}, "runs must be >= 2"),
        ({"warmup": -1}, "invalid timing"),
        ({"batch": 0}, "invalid timing"),
        ({"threads": 0}, "invalid timing"),
        ({"runtime": "tvm"}, "unknown runtime 'tvm'"),
        ({"precision": "bf16"}, "bf16"),
        ({"runtime": "torch-sparse", "precision": "int8"}, "'torch-sparse' cannot run precision 'int8'"),
    ],
)
def test_timing_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Timing(**kwargs)


def test_timing_defaults() -> None:
    assert Timing() == Timing("torch", "fp32", None, 100, 10, 1)
    Timing(runtime="torch-sparse", precision="fp16", threads=2, batch=8)  # a valid combination


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_measure_restores_the_thread_count_and_adds_latency(loaded: Loaded, runtime: str) -> None:
    model = loaded.fresh(spec())
    before = torch.get_num_threads()
    seen: list[int] = []
    real = loaded.family.forward

    def spy(deployed):
        seen.append(torch.get_num_threads())
        return real(deployed)

    loaded.family.forward = spy  # type: ignore[method-assign]
    try:
        row = measure(spec(), loaded, model, Timing(runtime=runtime, threads=2, runs=2, warmup=0, batch=4))
    finally:
        del loaded.family.forward
    assert 2 in seen  # the runner was built under the requested threads
    assert torch.get_num_threads() == before
    assert set(row) == set(sweep_columns("accuracy")) - {"iteration"}
    assert row["latency_mean_s"] > 0 and row["latency_std_s"] >= 0
    assert row["latency_median_s"] > 0 and row["latency_iqr_s"] >= 0


def test_sst2_sweep_on_real_phrases(sst2_root: Path) -> None:
    s = SweepSpec("mlp", "sst2", "sst2-mlp", "imp-finetune", 0.4, 2, data_dir=str(sst2_root))
    full = load(s)
    small = Loaded(full.family, subset(full.data, 2000, 300, 0), replace(full.hparams, epochs=2, lr=1e-2))
    df, _ = run_sweep(s, small, FAST)
    assert df["iteration"].tolist() == [0, 1, 2] and list(df.columns) == list(sweep_columns("accuracy"))
    assert df["accuracy"].iloc[0] > 0.55  # clear of chance
    assert (df["sparsity_model"].iloc[1:] < df["sparsity"].iloc[1:]).all()  # embeddings stay dense
