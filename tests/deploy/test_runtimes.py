"""Runtimes: deployment, ONNX export and parity (image and token input), runners, timing validation.

No wall-clock assertion anywhere: timing is checked for its contract (call counts, validation).
"""

from __future__ import annotations

import math

import onnx
import pytest
import torch
from torch import nn

from prunelib.deploy.precision import PRECISIONS, round_trip
from prunelib.deploy.runtimes import (
    RUNTIMES,
    Parity,
    check_deployable,
    check_parity,
    check_runtime,
    compare_outputs,
    deploy,
    export_onnx,
    gemm_to_matmul,
    int8_tolerance,
    make_runner,
    ort_runner,
    ort_session,
    quantize_onnx_int8,
    set_torch_threads,
    time_calls,
    torch_runner,
)
from prunelib.deploy.sparse_exec import SparseLinear
from prunelib.families.mlp.data import Splits
from prunelib.families.mlp.models import MLP, ModelSpec
from prunelib.families.mlp.train import init_model
from prunelib.pruning.criteria import magnitude_prune, named_masks
from prunelib.pruning.params import linear_and_conv_weights
from prunelib.pruning.structured import hidden_parameters, neuron_prune


def pruned(model: nn.Module, steps: int = 2) -> nn.Module:
    for _ in range(steps):
        magnitude_prune(linear_and_conv_weights(model), 0.5)
    return model.eval()


def token_model(vocab_size: int = 50, max_len: int = 9) -> tuple[nn.Module, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, vocab_size, (16, max_len), generator=gen)
    lengths = torch.randint(1, max_len + 1, (16,), generator=gen)
    tokens[torch.arange(max_len) >= lengths[:, None]] = 0  # padded rows of different lengths
    return pruned(init_model(ModelSpec("sst2-mlp", max_len, 2, vocab_size=vocab_size), 0)), tokens


def test_runtimes_by_name() -> None:
    assert RUNTIMES == ("torch", "onnxruntime", "torch-sparse")
    for name in RUNTIMES:
        assert check_runtime(name) == name
    with pytest.raises(ValueError, match=r"unknown runtime 'tflite'.*onnxruntime"):
        check_runtime("tflite")


def test_deployable_pairs() -> None:
    for runtime in RUNTIMES:
        for precision in PRECISIONS:
            if (runtime, precision) != ("torch-sparse", "int8"):
                check_deployable(runtime, precision)
    with pytest.raises(ValueError, match=r"'torch-sparse' cannot run precision 'int8'"):
        check_deployable("torch-sparse", "int8")
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


def test_export_is_valid_onnx_with_a_dynamic_batch_and_leaves_the_model_pruned(trained_lenet) -> None:
    model = pruned(trained_lenet[0])
    masks = named_masks(model)
    blob = export_onnx(model, torch.zeros(1, 784))
    proto = onnx.load_from_string(blob)
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert sorted(named_masks(model)) == sorted(masks)


def test_lenet300_parity_with_onnx_runtime(trained_lenet, mnist5k: Splits) -> None:
    model = pruned(trained_lenet[0])
    session = ort_session(export_onnx(model, mnist5k.test.x[:1]))
    for batch in (1, 64):  # the exported batch axis is dynamic
        parity = check_parity(model, session, mnist5k.test.x[:batch])
        assert isinstance(parity, Parity)
        assert parity.max_abs_diff <= 1e-4 and parity.argmax_agreement == 1.0


def test_token_model_parity_with_onnx_runtime() -> None:
    model, tokens = token_model()
    session = ort_session(export_onnx(model, tokens[:1]))
    assert session.get_inputs()[0].type == "tensor(int64)"
    parity = check_parity(model, session, tokens)
    assert parity.max_abs_diff <= 1e-4 and parity.argmax_agreement == 1.0


def test_sst2_model_parity_on_real_phrases(sst2_small: Splits) -> None:
    spec = ModelSpec("sst2-mlp", sst2_small.in_features, 2, vocab_size=sst2_small.vocab_size)
    model = pruned(init_model(spec, 0))
    x = sst2_small.test.x[:32]
    parity = check_parity(model, ort_session(export_onnx(model, x[:1])), x)
    assert parity.max_abs_diff <= 1e-4 and parity.argmax_agreement == 1.0


def test_parity_fails_for_a_session_exported_before_the_weights_changed(trained_lenet, mnist5k: Splits) -> None:
    model = pruned(trained_lenet[0], steps=1)
    session = ort_session(export_onnx(model, mnist5k.test.x[:1]))
    magnitude_prune(linear_and_conv_weights(model), 0.5)  # the model moves on; the session is stale
    with pytest.raises(ValueError, match=r"ONNX Runtime output differs from PyTorch by .* \(tolerance 0\.0001\)"):
        check_parity(model, session, mnist5k.test.x[:16])


def test_runners_agree_with_the_model(make_mlp) -> None:
    model = pruned(make_mlp((6, 5, 3)))
    x = torch.randn(4, 6)
    expected = model(x).detach()
    torch.testing.assert_close(torch_runner(model)(x), expected, rtol=0, atol=0)
    session = ort_session(export_onnx(model, x[:1]), threads=1)
    torch.testing.assert_close(torch.from_numpy(ort_runner(session)(x)), expected, rtol=1e-5, atol=1e-6)
    for runtime in RUNTIMES:
        out = make_runner(model, runtime, x)(x)
        torch.testing.assert_close(torch.as_tensor(out), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown runtime"):
        make_runner(model, "tvm", x)


# ---------------------------------------------------------------- deploy
def small_mlp(seed: int = 0, structured: bool = False) -> MLP:
    """MLP 8 → 12 → 6 → 3, pruned twice: by weights, or (``structured``) half the hidden neurons."""
    torch.manual_seed(seed)
    model = MLP(8, (12, 6), 3).eval()
    if structured:
        neuron_prune(hidden_parameters(model), 0.5)
        return model
    return pruned(model)


def test_deploy_fp32_is_the_pruned_model_made_permanent() -> None:
    model = small_mlp()
    masks = named_masks(model)
    x = torch.randn(5, 8)
    out = deploy(model)
    assert not out.training and named_masks(out) == {} and sorted(named_masks(model)) == sorted(masks)
    assert torch.equal(out.layers[0].weight, model.layers[0].weight_orig * model.layers[0].weight_mask)
    torch.testing.assert_close(out(x), model(x), rtol=0, atol=0)


def test_deploy_structured_shrinks_with_the_same_outputs() -> None:
    model = small_mlp(structured=True)
    x = torch.randn(5, 8)
    out = deploy(model, structured=True)
    assert [out.layers[0].out_features, out.layers[2].out_features, out.out.in_features] == [6, 3, 3]
    torch.testing.assert_close(out(x), model(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="MLP"):
        deploy(nn.Sequential(nn.Linear(2, 2)), structured=True)


def test_deploy_fp16_rounds_values_and_computes_in_fp32() -> None:
    model = small_mlp()
    out = deploy(model, precision="fp16")
    reference = deploy(model)
    for (name, p), (_, q) in zip(out.named_parameters(), reference.named_parameters()):
        assert p.dtype == torch.float32, name
        assert torch.equal(p, round_trip(q.detach(), "fp16")), name
    assert torch.equal(out.layers[0].weight == 0, reference.layers[0].weight == 0)  # pruned zeros stay zeros
    x = torch.randn(5, 8)
    torch.testing.assert_close(out(x), model(x), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("structured", [False, True])
def test_deploy_int8_quantizes_every_linear(structured: bool) -> None:
    model = small_mlp(structured=structured)
    out = deploy(model, structured, "int8")
    assert not any(type(m) is nn.Linear for m in out.modules())
    kinds = {type(m).__name__ for m in out.modules()}
    assert "Linear" in kinds  # torch.ao dynamic quantized Linear
    x = torch.randn(32, 8)
    expected = model(x).detach()
    got = out(x)
    assert float((got - expected).abs().max()) <= int8_tolerance(expected)
    with pytest.raises(ValueError, match="precision must be one of"):
        deploy(model, precision="int4")


# ---------------------------------------------------------------- runners per runtime and precision
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("structured", [False, True], ids=["weights", "neurons"])
def test_make_runner_matches_the_deployed_torch_model(runtime: str, precision: str, structured: bool) -> None:
    model = small_mlp(seed=1, structured=structured)
    x = torch.randn(16, 8)
    if runtime == "torch-sparse" and precision == "int8":
        with pytest.raises(ValueError, match="int8"):
            make_runner(model, runtime, x, 1, structured=structured, precision=precision)
        return
    run = make_runner(model, runtime, x, 1, structured=structured, precision=precision, batch_size=1)
    expected = deploy(model, structured, precision)(x).detach()
    got = torch.as_tensor(run(x))
    assert got.shape == (16, 3)
    one = torch.as_tensor(run(x[:1]))
    if precision == "int8":  # activations quantized per call (ORT and torch differently): near fp32
        fp32 = model(x).detach()
        assert float((got - fp32).abs().max()) <= int8_tolerance(fp32)
        assert float((one - fp32[:1]).abs().max()) <= int8_tolerance(fp32[:1])
    else:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(one, got[:1], rtol=1e-5, atol=1e-5)  # batch 1 too


@pytest.mark.parametrize("force", ["sparse", "dense"])
def test_torch_sparse_runs_the_chosen_layers(monkeypatch: pytest.MonkeyPatch, force: str) -> None:
    import prunelib.deploy.runtimes as runtime_mod

    built: list[nn.Module] = []
    real = runtime_mod.to_sparse_execution

    def spy(model, example, **kw):
        fast, choices = real(model, example, **kw)
        built.append(fast)
        assert example.shape[0] == 2  # the choice is measured at the timed batch
        return fast, choices

    monkeypatch.setattr(runtime_mod, "to_sparse_execution", spy)
    model = small_mlp()
    x = torch.randn(6, 8)
    run = make_runner(model, "torch-sparse", x, batch_size=2, sparse_force=force)
    sparse = [m for m in built[0].modules() if isinstance(m, SparseLinear)]
    assert len(sparse) == (3 if force == "sparse" else 0)
    torch.testing.assert_close(run(x), model(x).detach(), rtol=1e-5, atol=1e-5)


def test_gemm_rewrite_and_ort_int8_quantization(trained_lenet, mnist5k: Splits) -> None:
    model = deploy(pruned(trained_lenet[0]))
    x = mnist5k.test.x[:200]
    blob = export_onnx(model, x[:1])
    assert "Gemm" in {n.op_type for n in onnx.load_from_string(blob).graph.node}
    rewritten = gemm_to_matmul(blob)
    ops = [n.op_type for n in onnx.load_from_string(rewritten).graph.node]
    assert "Gemm" not in ops and ops.count("MatMul") == 3 and ops.count("Add") == 3
    expected = model(x).detach()
    same = torch.from_numpy(ort_runner(ort_session(rewritten, 1))(x))
    torch.testing.assert_close(same, expected, rtol=1e-5, atol=1e-4)
    int8 = quantize_onnx_int8(blob)
    assert {n.op_type for n in onnx.load_from_string(int8).graph.node} >= {"MatMulInteger", "DynamicQuantizeLinear"}
    assert len(int8) < len(blob) / 3  # int8 weights
    got = torch.from_numpy(ort_runner(ort_session(int8, 1))(x))
    parity = compare_outputs(expected, got, int8_tolerance(expected))
    assert parity.argmax_agreement >= 0.98


def test_ort_int8_of_a_model_without_weights_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no MatMul with a constant weight"):
        quantize_onnx_int8(export_onnx(nn.ReLU(), torch.zeros(1, 4)))


def test_int8_token_model_runs_on_both_runtimes() -> None:
    model, tokens = token_model()
    expected = model(tokens).detach()
    for runtime in ("torch", "onnxruntime"):
        got = torch.as_tensor(make_runner(model, runtime, tokens, 1, precision="int8")(tokens))
        assert float((got - expected).abs().max()) <= int8_tolerance(expected)


def test_compare_outputs_checks_shape_and_tolerance() -> None:
    a = torch.zeros(2, 3)
    assert compare_outputs(a, a.numpy(), 0.0) == Parity(0.0, 1.0)
    with pytest.raises(ValueError, match=r"torch-sparse output differs from PyTorch by 0\.5 \(tolerance 0\.1\)"):
        compare_outputs(a, a + 0.5, 0.1, "torch-sparse")
    with pytest.raises(ValueError, match="shape"):
        compare_outputs(a, torch.zeros(3, 2), 1.0)


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


def test_forward_steps_compute_exactly_what_the_module_does() -> None:
    from prunelib.deploy.runtimes import deploy, forward_steps, module_runner
    from prunelib.families.mlp.models import ModelSpec, build_model
    from prunelib.pruning.criteria import magnitude_prune

    torch.manual_seed(0)
    mlp = build_model(ModelSpec("lenet300", 784, 10))
    x = torch.randn(5, 1, 28, 28)
    magnitude_prune(linear_and_conv_weights(mlp), 0.5)
    assert forward_steps(mlp) is None  # pruning hooks present: fall back to the module call
    plain = deploy(mlp)
    assert forward_steps(plain) is not None
    with torch.inference_mode():
        assert torch.equal(module_runner(plain)(x), plain(x))
    assert forward_steps(nn.Sequential(nn.Linear(3, 2))) is None
    emb = build_model(ModelSpec("sst2-mlp", 0, 2, vocab_size=50)).eval()
    tokens = torch.randint(0, 50, (4, 7))
    with torch.inference_mode():
        assert torch.equal(module_runner(emb)(tokens), emb(tokens))
