"""Inference-ready deployment: BatchNorm folded with the same outputs, static int8 through ONNX Runtime."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from prunelib.deploy.onnx import quantize_onnx_static
from prunelib.deploy.ready import OrtModule, fold_batchnorm, has_batchnorm


def conv_bn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4),
    )  # fmt: skip
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    return net.eval()


def test_fold_batchnorm_removes_every_batchnorm_and_keeps_the_outputs() -> None:
    net = conv_bn()
    folded = fold_batchnorm(net)
    assert has_batchnorm(net) and not has_batchnorm(folded) and type(folded) is type(net)
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in net.parameters())
    assert has_batchnorm(net)  # the input model is not changed


def test_a_model_without_batchnorm_is_returned_as_is_in_eval_mode() -> None:
    net = nn.Sequential(nn.Linear(3, 2)).train()
    assert fold_batchnorm(net) is net and not net.training


def test_a_model_fx_cannot_trace_ships_unfolded_with_a_warning() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent: fx cannot trace it
                x = -x
            return self.bn(self.conv(x))

    net = Branchy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fold_batchnorm(net) is net
    assert any("BatchNorm not folded" in str(w.message) for w in caught)


def test_static_int8_is_qdq_per_channel_and_close_to_fp32() -> None:
    import onnx

    net = fold_batchnorm(conv_bn())
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    buf = _onnx(net, x[:1])
    quantized = quantize_onnx_static(buf, x.numpy())
    ops = {n.op_type for n in onnx.load_from_string(quantized).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    scales = [
        t for t in onnx.load_from_string(quantized).graph.initializer if t.name.endswith("_scale") and t.dims == [6]
    ]
    assert scales, "weights are quantized per output channel"
    got, want = OrtModule(quantized)(x).numpy(), net(x).detach().numpy()
    assert np.abs(got - want).max() <= 0.05 * max(1.0, np.abs(want).max())
    with pytest.raises(ValueError, match="calibration rows"):
        quantize_onnx_static(buf, x.numpy()[:0])


def _onnx(net: nn.Module, example: torch.Tensor) -> bytes:
    import io

    buf = io.BytesIO()
    torch.onnx.export(net, (example,), buf, dynamo=False, input_names=["input"], dynamic_axes={"input": {0: "b"}})
    return buf.getvalue()
