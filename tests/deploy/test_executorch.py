"""ExecuTorch/XNNPACK runtime: fp32 and int8 ``.pte`` programs agree with PyTorch, bad input is named.

Skipped with the install hint when ExecuTorch is absent. Lowering takes about a second per
program, so each model is lowered once per module (fixtures below).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunelib.deploy.executorch import (
    SKIP_REASON,
    PteConfig,
    check_pte_parity,
    executorch_available,
    int8_atol,
    pte_runner,
    set_executorch_threads,
    to_pte,
)
from prunelib.families.mlp.models import MLP
from prunelib.pruning.criteria import magnitude_prune
from prunelib.pruning.params import linear_and_conv_weights as prunable_parameters

pytestmark = pytest.mark.skipif(not executorch_available(), reason=SKIP_REASON)

#: fp32 bound: XNNPACK sums in another order than PyTorch (measured about 1e-7 here).
FP32_ATOL = 1e-5


def _conv_net() -> nn.Module:
    """A small DS-CNN-like net: conv, depthwise conv, pointwise conv, pooling, classifier."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )


def _pruned_mlp() -> nn.Module:
    model = MLP(20, (32, 16), 5)
    magnitude_prune(prunable_parameters(model), 0.5)  # masks stay as reparametrizations
    return model.eval()


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple[nn.Module, torch.Tensor, list[torch.Tensor]]]:
    torch.manual_seed(0)
    mlp, conv = _pruned_mlp(), _conv_net().eval()
    mlp_x, conv_x = torch.randn(4, 20), torch.randn(2, 1, 12, 12)
    return {
        "mlp": (mlp, mlp_x, [mlp_x] + [torch.randn(4, 20) for _ in range(15)]),
        "conv": (conv, conv_x, [conv_x] + [torch.randn(2, 1, 12, 12) for _ in range(15)]),
    }


@pytest.fixture(scope="module")
def programs(cases) -> dict[tuple[str, str], bytes]:
    out = {}
    for name, (model, x, calib) in cases.items():
        out[name, "fp32"] = to_pte(model, x)
        out[name, "int8"] = to_pte(model, x, PteConfig("int8"), calibration=calib)
    return out


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_fp32_parity(cases, programs, name):
    model, x, _ = cases[name]
    parity = check_pte_parity(model, programs[name, "fp32"], x, atol=FP32_ATOL)
    assert parity.ok, parity


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_int8_parity(cases, programs, name):
    model, x, _ = cases[name]
    with torch.no_grad():
        atol = int8_atol(model(x))
    parity = check_pte_parity(model, programs[name, "int8"], x, atol=atol)
    assert parity.ok, parity
    assert parity.max_abs_diff > 0  # really quantized, not an fp32 program


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_pte_sizes(programs, name):
    fp32, int8 = programs[name, "fp32"], programs[name, "int8"]
    assert len(fp32) > 0 and len(int8) > 0


def test_model_not_mutated(cases):
    model, x, _ = cases["mlp"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    to_pte(model, x)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_runner_rejects_wrong_shape(programs):
    run = pte_runner(programs["mlp", "fp32"])
    with pytest.raises(ValueError, match=r"shape \(3, 20\).*\(4, 20\)"):
        run(torch.zeros(3, 20))


def test_runner_rejects_wrong_dtype(programs):
    run = pte_runner(programs["mlp", "fp32"])
    with pytest.raises(ValueError, match="float64"):
        run(torch.zeros(4, 20, dtype=torch.float64))


def test_runner_rejects_non_tensor(programs):
    with pytest.raises(ValueError, match="list"):
        pte_runner(programs["mlp", "fp32"])([0.0] * 20)


@pytest.mark.parametrize("bad", [b"", b"not a program at all"])
def test_bad_program_bytes(bad):
    with pytest.raises(ValueError, match="program"):
        pte_runner(bad)


def test_bad_example():
    with pytest.raises(ValueError, match="torch.Tensor"):
        to_pte(nn.Linear(2, 2), [1.0, 2.0])
    with pytest.raises(ValueError, match="bool"):
        to_pte(nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.bool))  # integer ids are fine (token models)
    with pytest.raises(ValueError, match="calibration"):
        to_pte(nn.Linear(2, 2), torch.zeros(1, 2), calibration=[torch.zeros(1, 2)])


def test_bad_precision():
    with pytest.raises(ValueError, match="'int4'"):
        PteConfig("int4")


def test_threads():
    assert set_executorch_threads(2) == 2
    assert set_executorch_threads(1) == 1
    with pytest.raises(ValueError, match="0"):
        set_executorch_threads(0)
