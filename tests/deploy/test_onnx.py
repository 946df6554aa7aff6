"""ONNX export (the family's) and ONNX Runtime: sessions, runners, parity, the Gemm rewrite and int8 quantization."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from prunelib.deploy.onnx import gemm_to_matmul, ort_runner, ort_session, quantize_onnx_int8, reduce_range
from prunelib.deploy.runtimes import deploy, int8_tolerance
from prunelib.families.mlp.data import Split, Splits
from prunelib.families.mlp.family import MlpFamily
from prunelib.pruning.criteria import magnitude_prune, named_masks
from prunelib.pruning.params import linear_and_conv_weights

FAMILY = MlpFamily()


def pruned(model: nn.Module, steps: int = 2) -> nn.Module:
    for _ in range(steps):
        magnitude_prune(linear_and_conv_weights(model), 0.5)
    return model.eval()


def parity(model: nn.Module, session, x: torch.Tensor) -> tuple[float, float]:
    """(max |difference|, argmax agreement) of the session against the deployed torch model."""
    expected = FAMILY.forward(deploy(FAMILY, model))(x).numpy()
    got = ort_runner(session)(x)
    worst = FAMILY.check_outputs(expected, got, None, "ONNX Runtime")
    return worst, float((expected.argmax(1) == got.argmax(1)).mean())


def test_export_is_valid_onnx_with_a_dynamic_batch_and_leaves_the_model_pruned(trained_lenet) -> None:
    model = pruned(trained_lenet[0])
    masks = named_masks(model)
    deployed = deploy(FAMILY, model)
    blob = FAMILY.export_onnx(deployed, torch.zeros(1, 784))
    proto = onnx.load_from_string(blob)
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["output"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert sorted(named_masks(model)) == sorted(masks) and named_masks(deployed) == {}


def test_lenet300_parity_with_onnx_runtime(trained_lenet, mnist5k: Splits) -> None:
    model = pruned(trained_lenet[0])
    session = ort_session(FAMILY.export_onnx(deploy(FAMILY, model), mnist5k.test.x[:1]))
    for batch in (1, 64):  # the exported batch axis is dynamic
        worst, agreement = parity(model, session, mnist5k.test.x[:batch])
        assert worst <= 1e-4 and agreement == 1.0


def token_model(vocab_size: int = 50, max_len: int = 9) -> tuple[nn.Module, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, vocab_size, (16, max_len), generator=gen)
    lengths = torch.randint(1, max_len + 1, (16,), generator=gen)
    tokens[torch.arange(max_len) >= lengths[:, None]] = 0  # padded rows of different lengths
    split = Split(tokens, torch.zeros(16, dtype=torch.long))
    data = Splits("tokens", split, split, split, 2, max_len, tuple(f"w{i}" for i in range(vocab_size)))
    return pruned(FAMILY.build("sst2-mlp", data, 0)), tokens


def test_token_model_parity_with_onnx_runtime() -> None:
    model, tokens = token_model()
    session = ort_session(FAMILY.export_onnx(deploy(FAMILY, model), tokens[:1]))
    assert session.get_inputs()[0].type == "tensor(int64)"
    worst, agreement = parity(model, session, tokens)
    assert worst <= 1e-4 and agreement == 1.0


def test_sst2_model_parity_on_real_phrases(sst2_small: Splits) -> None:
    model = pruned(FAMILY.build("sst2-mlp", sst2_small, 0))
    x = sst2_small.test.x[:32]
    worst, agreement = parity(model, ort_session(FAMILY.export_onnx(deploy(FAMILY, model), x[:1])), x)
    assert worst <= 1e-4 and agreement == 1.0


def test_parity_fails_for_a_session_exported_before_the_weights_changed(trained_lenet, mnist5k: Splits) -> None:
    model = pruned(trained_lenet[0], steps=1)
    session = ort_session(FAMILY.export_onnx(deploy(FAMILY, model), mnist5k.test.x[:1]))
    magnitude_prune(linear_and_conv_weights(model), 0.5)  # the model moves on; the session is stale
    with pytest.raises(ValueError, match=r"ONNX Runtime differs from PyTorch by .* \(tolerance 0\.0001\)"):
        parity(model, session, mnist5k.test.x[:16])


def test_session_threads_and_runner(make_mlp) -> None:
    model = pruned(make_mlp((6, 5, 3)))
    x = torch.randn(4, 6)
    blob = FAMILY.export_onnx(deploy(FAMILY, model), x[:1])
    session = ort_session(blob, threads=1)
    opts = session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)
    assert ort_session(blob, threads=2).get_session_options().intra_op_num_threads == 2
    assert session.get_providers() == ["CPUExecutionProvider"]
    out = ort_runner(session)(x)
    assert isinstance(out, np.ndarray)
    torch.testing.assert_close(torch.from_numpy(out), model(x).detach(), rtol=1e-5, atol=1e-6)


def test_gemm_rewrite_and_ort_int8_quantization(trained_lenet, mnist5k: Splits) -> None:
    model = deploy(FAMILY, pruned(trained_lenet[0]))
    x = mnist5k.test.x[:200]
    blob = FAMILY.export_onnx(model, x[:1])
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
    got = ort_runner(ort_session(int8, 1))(x)
    reference = expected.numpy()
    FAMILY.check_outputs(reference, got, None, "ONNX Runtime int8", atol=int8_tolerance(reference))
    assert float((reference.argmax(1) == got.argmax(1)).mean()) >= 0.98


def test_ort_int8_of_a_model_without_weights_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no MatMul with a constant weight"):
        quantize_onnx_int8(FAMILY.export_onnx(nn.ReLU(), torch.zeros(1, 4)))


def test_int8_weights_keep_8_bits_only_where_products_sum_in_32_bits(tmp_path) -> None:
    plain, vnni = tmp_path / "plain", tmp_path / "vnni"
    plain.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    vnni.write_text("flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni\n")
    assert reduce_range("x86_64", plain) and not reduce_range("x86_64", vnni)
    assert reduce_range("x86_64", tmp_path / "missing")  # unknown x86: 7 bits, the safe choice
    assert not reduce_range("aarch64", plain)  # Arm: no 16-bit saturation
