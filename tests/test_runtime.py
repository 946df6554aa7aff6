"""Runtimes: ONNX export and ONNX Runtime parity (image and token input), runners, timing validation.

No wall-clock assertion anywhere: timing is checked for its contract (call counts, validation).
"""
from __future__ import annotations

import math

import onnx
import pytest
import torch
from torch import nn

from prunelib.data import Splits
from prunelib.models import ModelSpec, prunable_parameters
from prunelib.pruning import magnitude_prune, named_masks
from prunelib.runtime import (
    RUNTIMES,
    Parity,
    check_parity,
    check_runtime,
    export_onnx,
    make_runner,
    ort_runner,
    ort_session,
    set_torch_threads,
    time_calls,
    torch_runner,
)
from prunelib.train import init_model


def pruned(model: nn.Module, steps: int = 2) -> nn.Module:
    for _ in range(steps):
        magnitude_prune(prunable_parameters(model), 0.5)
    return model.eval()


def token_model(vocab_size: int = 50, max_len: int = 9) -> tuple[nn.Module, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, vocab_size, (16, max_len), generator=gen)
    lengths = torch.randint(1, max_len + 1, (16,), generator=gen)
    tokens[torch.arange(max_len) >= lengths[:, None]] = 0  # padded rows of different lengths
    return pruned(init_model(ModelSpec("sst2-mlp", max_len, 2, vocab_size=vocab_size), 0)), tokens


def test_runtimes_by_name() -> None:
    assert RUNTIMES == ("torch", "onnxruntime")
    for name in RUNTIMES:
        assert check_runtime(name) == name
    with pytest.raises(ValueError, match=r"unknown runtime 'tflite'.*onnxruntime"):
        check_runtime("tflite")


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
    magnitude_prune(prunable_parameters(model), 0.5)  # the model moves on; the session is stale
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


def test_time_calls_counts_its_calls_and_returns_a_spread() -> None:
    calls: list[torch.Tensor] = []
    x = torch.ones(2)
    mean, std = time_calls(calls.append, x, runs=5, warmup=3)
    assert len(calls) == 8 and all(c is x for c in calls)
    assert math.isfinite(mean) and math.isfinite(std) and mean >= 0 and std >= 0
    assert len(time_calls(calls.append, x, runs=2, warmup=0)) == 2 and len(calls) == 10


@pytest.mark.parametrize("runs, warmup, message", [(1, 0, "runs must be >= 2"), (0, 5, "runs must be >= 2"), (5, -1, "warmup must be >= 0")])
def test_time_calls_rejects_bad_counts_before_calling(runs: int, warmup: int, message: str) -> None:
    calls: list[object] = []
    with pytest.raises(ValueError, match=message):
        time_calls(calls.append, torch.ones(1), runs=runs, warmup=warmup)
    assert calls == []
