"""Runtimes: deployment through the family, runners per runtime and precision with parity, threads, timing.

No wall-clock assertion anywhere: timing is checked for its contract (call counts, validation).
ONNX Runtime's own pieces (sessions, Gemm rewrite, int8 quantization) are in ``test_onnx.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import prunelib.deploy.runtimes as runtime_mod
from prunelib.deploy.precision import PRECISIONS, round_trip
from prunelib.deploy.runtimes import (
    INT8_PARITY_RTOL,
    RUNTIMES,
    at_precision,
    call_rounds,
    check_deployable,
    check_runtime,
    deploy,
    int8_tolerance,
    make_runner,
    set_torch_threads,
    time_calls,
)
from prunelib.deploy.sparse_exec import SparseLinear
from prunelib.families.contract import Family
from prunelib.families.mlp.data import Split, Splits
from prunelib.families.mlp.family import MlpFamily
from prunelib.families.mlp.models import MLP
from prunelib.pruning.criteria import magnitude_prune, named_masks
from prunelib.pruning.params import linear_and_conv_weights

FAMILY = MlpFamily()


def pruned(model: nn.Module, steps: int = 2) -> nn.Module:
    for _ in range(steps):
        magnitude_prune(linear_and_conv_weights(model), 0.5)
    return model.eval()


def toy_data(features: int = 8, classes: int = 3, n: int = 16) -> Splits:
    gen = torch.Generator().manual_seed(0)
    split = Split(torch.randn(n, features, generator=gen), torch.randint(0, classes, (n,), generator=gen))
    return Splits("toy", split, split, split, classes, features)


def token_data(vocab_size: int = 50, max_len: int = 9) -> Splits:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, vocab_size, (16, max_len), generator=gen)
    lengths = torch.randint(1, max_len + 1, (16,), generator=gen)
    tokens[torch.arange(max_len) >= lengths[:, None]] = 0  # padded rows of different lengths
    split = Split(tokens, torch.randint(0, 2, (16,), generator=gen))
    return Splits("tokens", split, split, split, 2, max_len, tuple(f"w{i}" for i in range(vocab_size)))


def token_model() -> tuple[nn.Module, Splits]:
    data = token_data()
    return pruned(FAMILY.build("sst2-mlp", data, 0)), data


def test_runtimes_by_name() -> None:
    assert RUNTIMES == ("torch", "onnxruntime", "torch-sparse", "executorch")
    for name in RUNTIMES:
        assert check_runtime(name) == name
    with pytest.raises(ValueError, match=r"unknown runtime 'tflite'.*onnxruntime"):
        check_runtime("tflite")


def test_deployable_pairs() -> None:
    for runtime in RUNTIMES:
        for precision in PRECISIONS:
            if (runtime, precision) not in (("torch-sparse", "int8"), ("executorch", "fp16")):
                check_deployable(runtime, precision)
    with pytest.raises(ValueError, match=r"'torch-sparse' cannot run precision 'int8'"):
        check_deployable("torch-sparse", "int8")
    with pytest.raises(ValueError, match=r"'executorch' runs fp32 or int8"):
        check_deployable("executorch", "fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        check_deployable("torch", "bf16")
    with pytest.raises(ValueError, match="unknown runtime"):
        check_deployable("tvm", "fp32")


def test_set_torch_threads_validates_and_reports() -> None:
    current = torch.get_num_threads()
    assert set_torch_threads(None) == current
    assert set_torch_threads(current) == current
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"threads must be >= 1, got {bad}"):
            set_torch_threads(bad)
    assert torch.get_num_threads() == current


def test_runners_agree_with_the_model() -> None:
    data = toy_data()
    model = pruned(FAMILY.build("lenet300", data, 0))
    x = data.test.x
    expected = model(x).detach()
    for runtime in RUNTIMES:  # an ExecuTorch program has the timed batch's static shape
        out = make_runner(FAMILY, model, data, runtime, batch_size=len(x))(x)
        torch.testing.assert_close(torch.as_tensor(out), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown runtime"):
        make_runner(FAMILY, model, data, "tvm")


# ---------------------------------------------------------------- deploy
def small_mlp(seed: int = 0, structured: bool = False) -> MLP:
    """MLP 8 → 12 → 6 → 3, pruned twice: by weights, or (``structured``) half the hidden neurons."""
    torch.manual_seed(seed)
    model = MLP(8, (12, 6), 3).eval()
    if structured:
        FAMILY.structured_step(model, 0.5, seed)
        return model
    return pruned(model)


def test_deploy_fp32_is_the_pruned_model_made_permanent() -> None:
    model = small_mlp()
    masks = named_masks(model)
    x = torch.randn(5, 8)
    out = deploy(FAMILY, model)
    assert out is not model and not out.training and named_masks(out) == {}
    assert sorted(named_masks(model)) == sorted(masks)
    assert torch.equal(out.layers[0].weight, model.layers[0].weight_orig * model.layers[0].weight_mask)
    torch.testing.assert_close(out(x), model(x), rtol=0, atol=0)


def test_deploy_structured_shrinks_with_the_same_outputs() -> None:
    model = small_mlp(structured=True)
    x = torch.randn(5, 8)
    out = deploy(FAMILY, model, structured=True)
    assert [out.layers[0].out_features, out.layers[2].out_features, out.out.in_features] == [6, 3, 3]
    torch.testing.assert_close(out(x), model(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="MLP"):
        deploy(FAMILY, nn.Sequential(nn.Linear(2, 2)), structured=True)  # the family names its own model class


def test_deploy_fp16_rounds_values_and_computes_in_fp32() -> None:
    model = small_mlp()
    out = deploy(FAMILY, model, precision="fp16")
    reference = deploy(FAMILY, model)
    for (name, p), (_, q) in zip(out.named_parameters(), reference.named_parameters()):
        assert p.dtype == torch.float32, name
        assert torch.equal(p, round_trip(q.detach(), "fp16")), name
    assert torch.equal(out.layers[0].weight == 0, reference.layers[0].weight == 0)  # pruned zeros stay zeros
    x = torch.randn(5, 8)
    torch.testing.assert_close(out(x), model(x), rtol=1e-2, atol=1e-2)
    assert torch.equal(at_precision(reference, "fp32").layers[0].weight, reference.layers[0].weight)


@pytest.mark.parametrize("structured", [False, True])
def test_deploy_int8_quantizes_every_linear(structured: bool) -> None:
    model = small_mlp(structured=structured)
    out = deploy(FAMILY, model, structured, "int8")
    assert not any(type(m) is nn.Linear for m in out.modules())
    kinds = {type(m).__name__ for m in out.modules()}
    assert "Linear" in kinds  # torch.ao dynamic quantized Linear
    x = torch.randn(32, 8)
    expected = model(x).detach()
    got = out(x)
    assert float((got - expected).abs().max()) <= int8_tolerance(expected.numpy())
    with pytest.raises(ValueError, match="precision must be one of"):
        deploy(FAMILY, model, precision="int4")


def test_int8_tolerance_is_relative_to_the_largest_output() -> None:
    assert INT8_PARITY_RTOL == 0.05
    assert int8_tolerance(np.array([0.1, -0.2])) == pytest.approx(0.05)  # at least 1 * rtol
    assert int8_tolerance(np.array([3.0, -40.0])) == pytest.approx(2.0)
    assert int8_tolerance(np.zeros((0, 3))) == pytest.approx(0.05)
    assert int8_tolerance(np.array([3.0, -40.0]), static=True) == pytest.approx(10.0)  # activations quantized too


# ---------------------------------------------------------------- runners per runtime and precision
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("structured", [False, True], ids=["weights", "neurons"])
def test_make_runner_matches_the_deployed_torch_model(runtime: str, precision: str, structured: bool) -> None:
    model = small_mlp(seed=1, structured=structured)
    data = toy_data()
    x = data.test.x
    if (runtime, precision) in (("torch-sparse", "int8"), ("executorch", "fp16")):
        with pytest.raises(ValueError, match=precision):
            make_runner(FAMILY, model, data, runtime, threads=1, structured=structured, precision=precision)
        return
    if runtime == "executorch":
        pytest.skip(
            "an ExecuTorch program has static shapes: test_executorch_runner_is_parity_checked_and_knows_its_file_size"
        )
    run = make_runner(FAMILY, model, data, runtime, threads=1, structured=structured, precision=precision, batch_size=1)
    expected = deploy(FAMILY, model, structured, precision)(x).detach()
    got = torch.as_tensor(run(x))
    assert got.shape == (16, 3)
    one = torch.as_tensor(run(x[:1]))
    if precision == "int8":  # activations quantized per call (ORT and torch differently): near fp32
        fp32 = model(x).detach()
        assert float((got - fp32).abs().max()) <= int8_tolerance(fp32.numpy())
        assert float((one - fp32[:1]).abs().max()) <= int8_tolerance(fp32[:1].numpy())
    else:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(one, got[:1], rtol=1e-5, atol=1e-5)  # batch 1 too
    assert named_masks(model)  # the pruned model is not changed by deploying it


@pytest.mark.parametrize("force", ["sparse", "dense"])
def test_torch_sparse_runs_the_chosen_layers(monkeypatch: pytest.MonkeyPatch, force: str) -> None:
    built: list[nn.Module] = []
    real = runtime_mod.to_sparse_execution

    def spy(model, example, **kw):
        fast, choices = real(model, example, **kw)
        built.append(fast)
        assert example.shape[0] == 2  # the choice is measured at the timed batch
        return fast, choices

    monkeypatch.setattr(runtime_mod, "to_sparse_execution", spy)
    model, data = small_mlp(), toy_data()
    x = data.test.x
    run = make_runner(FAMILY, model, data, "torch-sparse", batch_size=2, sparse_force=force)
    sparse = [m for m in built[0].modules() if isinstance(m, SparseLinear)]
    assert len(sparse) == (3 if force == "sparse" else 0)
    torch.testing.assert_close(run(x), model(x).detach(), rtol=1e-5, atol=1e-5)


def test_a_runner_that_disagrees_with_pytorch_is_never_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = small_mlp(), toy_data()
    wrong = small_mlp(seed=5)
    real_export = MlpFamily.export_onnx

    class WrongExport(MlpFamily):
        def export_onnx(self, deployed, example, opset=17):
            return real_export(self, deploy(FAMILY, wrong), example, opset)

    with pytest.raises(ValueError, match=r"ONNX Runtime differs from PyTorch by .* \(tolerance 0\.0001\)"):
        make_runner(WrongExport(), model, data, "onnxruntime")
    monkeypatch.setattr(runtime_mod, "to_sparse_execution", lambda m, x, **kw: (deploy(FAMILY, wrong), []))
    with pytest.raises(ValueError, match="torch-sparse differs from PyTorch"):
        make_runner(FAMILY, model, data, "torch-sparse")


def test_int8_token_model_runs_on_both_runtimes() -> None:
    model, data = token_model()
    tokens = data.test.x
    expected = model(tokens).detach()
    for runtime in ("torch", "onnxruntime"):
        got = torch.as_tensor(make_runner(FAMILY, model, data, runtime, threads=1, precision="int8")(tokens))
        assert float((got - expected).abs().max()) <= int8_tolerance(expected.numpy())


def test_what_a_family_does_not_support_is_refused_with_the_reason() -> None:
    class TorchOnly(MlpFamily):
        name = "torch-only"
        runtimes = ("torch",)
        precisions = ("fp32",)

    model, data = small_mlp(), toy_data()
    with pytest.raises(ValueError, match=r"'torch-only' does not run on onnxruntime"):
        make_runner(TorchOnly(), model, data, "onnxruntime")
    with pytest.raises(ValueError, match=r"'torch-only' does not support precision int8"):
        make_runner(TorchOnly(), model, data, "torch", precision="int8")
    make_runner(TorchOnly(), model, data, "torch")


def test_make_runner_sets_the_requested_threads() -> None:
    model, data = small_mlp(), toy_data()
    before = torch.get_num_threads()
    try:
        make_runner(FAMILY, model, data, "torch", threads=2)
        assert torch.get_num_threads() == 2
        make_runner(FAMILY, model, data, "onnxruntime", threads=1)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        make_runner(FAMILY, model, data, "torch")  # None leaves the setting alone
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
            make_runner(FAMILY, model, data, "torch", threads=0)
    finally:
        torch.set_num_threads(before)


def test_check_outputs_checks_shape_and_tolerance() -> None:
    a = np.zeros((2, 3), dtype=np.float32)
    assert FAMILY.check_outputs(a, a, None, "x", atol=0.0) == 0.0
    assert FAMILY.check_outputs(a, a + 5e-5, None, "x") == pytest.approx(5e-5)  # default: the family's parity_atol
    with pytest.raises(ValueError, match=r"torch-sparse differs from PyTorch by 0\.5 \(tolerance 0\.1\)"):
        FAMILY.check_outputs(a, a + 0.5, None, "torch-sparse", atol=0.1)
    with pytest.raises(ValueError, match="shape"):
        FAMILY.check_outputs(a, np.zeros((3, 2)), None, "x", atol=1.0)
    with pytest.raises(ValueError, match="differs"):
        FAMILY.check_outputs(a, a * np.nan, None, "x", atol=1.0)  # NaN never passes


def test_time_calls_counts_its_calls_and_returns_a_spread() -> None:
    calls: list[torch.Tensor] = []
    x = torch.ones(2)
    mean, std = time_calls(calls.append, x, runs=5, warmup=3)
    assert len(calls) == 8 and all(c is x for c in calls)
    assert math.isfinite(mean) and math.isfinite(std) and mean >= 0 and std >= 0
    assert len(time_calls(calls.append, x, runs=2, warmup=0)) == 2 and len(calls) == 10


@pytest.mark.parametrize(
    "runs, warmup, message", [(1, 0, "runs must be >= 2"), (0, 5, "runs must be >= 2"), (5, -1, "warmup must be >= 0")]
)
def test_time_calls_rejects_bad_counts_before_calling(runs: int, warmup: int, message: str) -> None:
    calls: list[object] = []
    with pytest.raises(ValueError, match=message):
        time_calls(calls.append, torch.ones(1), runs=runs, warmup=warmup)
    assert calls == []


def test_the_contract_default_forward_is_the_module_call() -> None:
    model = deploy(FAMILY, small_mlp())
    x = torch.randn(3, 8)
    with torch.inference_mode():
        assert torch.equal(Family.forward(FAMILY, model)(x), model(x))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_executorch_runner_is_parity_checked_and_knows_its_file_size(precision: str) -> None:
    from prunelib.deploy.executorch import SKIP_REASON, executorch_available

    if not executorch_available():
        pytest.skip(SKIP_REASON)
    data = toy_data(features=8)
    model = pruned(FAMILY.build("lenet300", data, 0))
    run = make_runner(FAMILY, model, data, "executorch", threads=1, precision=precision, batch_size=4)
    x = FAMILY.example_inputs(data, 4)
    with torch.inference_mode():
        want = FAMILY.deploy(model, structured=False)(x)
    got = torch.as_tensor(run(x))
    tol = 1e-4 if precision == "fp32" else 0.05 * float(want.abs().max())
    assert float((got - want).abs().max()) <= tol
    assert run.disk_bytes > 0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="static shapes"):
        run(FAMILY.example_inputs(data, 3))  # one program per batch size


def test_a_missing_optional_runtime_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import prunelib.deploy.executorch as et

    monkeypatch.setattr(et, "executorch_available", lambda: False)
    assert runtime_mod.runtime_missing("executorch") == et.SKIP_REASON
    assert runtime_mod.runtime_missing("onnxruntime") == ""
    data = toy_data()
    with pytest.raises(ValueError, match="prunelib\\[executorch\\]"):
        make_runner(FAMILY, FAMILY.build("lenet300", data, 0), data, "executorch")


def test_call_rounds_times_each_call_after_the_warmup() -> None:
    calls: list = []
    rounds = call_rounds(calls.append, torch.ones(1), runs=4, warmup=2)
    assert len(rounds) == 4 and len(calls) == 6 and all(r > 0 for r in rounds)
    with pytest.raises(ValueError, match="runs must be >= 2"):
        call_rounds(calls.append, torch.ones(1), runs=1)
