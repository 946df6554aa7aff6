"""SEW in ONNX Runtime: dynamic audio length and batch, parity (logits and transcripts), pruned export, runners."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from prunelib.deploy.onnx import ort_runner, ort_session
from prunelib.deploy.runtimes import make_runner
from prunelib.families.sew.data import Utterance
from prunelib.families.sew.deploy import prepare_model
from prunelib.families.sew.family import SewData, SewFamily
from prunelib.families.sew.models import build_processor, build_sew
from prunelib.families.sew.onnx import (
    INPUT_NAME,
    OUTPUT_NAME,
    LogitsOnly,
    export_ctc_onnx,
    frames_for,
    latency_input,
    normalised_input,
    odd_frame_length,
)
from prunelib.pruning.criteria import magnitude_prune

from .tiny import TINY

FAMILY = SewFamily()


@pytest.fixture(scope="module")
def tiny():
    """A random tiny SEW, its processor, its ONNX bytes and a session (exported once)."""
    model, proc = build_sew(TINY, seed=0), build_processor()
    onnx_bytes = export_ctc_onnx(model)
    return model, proc, onnx_bytes, ort_session(onnx_bytes, threads=1)


def audios(lengths=(3200, 3520, 3840, 4160, 9000, 16000, 16320)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(n).astype(np.float32) for n in lengths]


def data_of(clips: list[np.ndarray], proc) -> SewData:
    return SewData(proc, [Utterance(str(i), a, "ONE TWO") for i, a in enumerate(clips)])


def torch_logits(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(input_values=x).logits.numpy()


def ort_logits(session, x: torch.Tensor) -> np.ndarray:
    return session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]


def test_example_length_has_an_odd_frame_count(tiny) -> None:
    model = tiny[0]
    n = odd_frame_length(model, 16000)
    assert n >= 16000 and frames_for(model, n) % 2 == 1
    assert odd_frame_length(model, n) == n
    assert frames_for(model, 16000) == 16000 // TINY.frame_stride - 1  # its own conv arithmetic


def test_graph_names_and_dynamic_axes(tiny) -> None:
    import onnx

    graph = onnx.load_from_string(tiny[2]).graph
    assert [i.name for i in graph.input] == [INPUT_NAME] and [o.name for o in graph.output] == [OUTPUT_NAME]
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "samples"]


def test_dynamic_length_parity_on_odd_and_even_frame_counts(tiny) -> None:
    model, proc, _, session = tiny
    clips = audios()
    assert {frames_for(model, len(a)) % 2 for a in clips} == {0, 1}
    data = data_of(clips, proc)
    for i, audio in enumerate(clips):
        x = normalised_input(proc, audio)
        want, got = torch_logits(model, x), ort_logits(session, x)
        assert got.shape == want.shape == (1, frames_for(model, len(audio)), 32)
        # logits within 1e-4 and the same greedy transcript (check_outputs raises otherwise)
        assert FAMILY.check_outputs(want, got, data, f"clip {i}", atol=1e-4) <= 1e-4


def test_dynamic_batch(tiny) -> None:
    model, _, _, session = tiny
    x = torch.randn(3, 6400, generator=torch.Generator().manual_seed(1))
    want, got = torch_logits(model, x), ort_logits(session, x)
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


def test_parity_check_rejects_another_model_and_another_transcript(tiny) -> None:
    model, proc, _, session = tiny
    data = data_of(audios()[:1], proc)
    x = normalised_input(proc, audios()[4])
    other = ort_logits(ort_session(export_ctc_onnx(build_sew(TINY, seed=1)), threads=1), x)
    want = torch_logits(model, x)
    with pytest.raises(ValueError, match="ONNX Runtime differs from PyTorch"):
        FAMILY.check_outputs(want, other, data, "ONNX Runtime")
    # logits within a (loose) tolerance are still rejected when the greedy transcript differs
    with pytest.raises(ValueError, match="ONNX Runtime transcribes"):
        FAMILY.check_outputs(want, other, data, "ONNX Runtime", atol=1e3)
    with pytest.raises(ValueError, match="shape"):
        FAMILY.check_outputs(want, want[:, :-1], data, "ONNX Runtime")


def test_pruned_export_keeps_zeros_and_leaves_the_model_alone(tiny) -> None:
    proc = tiny[1]
    model = prepare_model(copy.deepcopy(tiny[0]))
    magnitude_prune(FAMILY.prunable(model), 0.6)
    masks = {n: b.clone() for n, b in model.named_buffers() if n.endswith("_mask")}
    onnx_bytes = export_ctc_onnx(model)
    session = ort_session(onnx_bytes, threads=1)
    data = data_of(audios()[:3], proc)
    for audio in audios()[:3]:
        x = normalised_input(proc, audio)
        FAMILY.check_outputs(torch_logits(model, x), ort_logits(session, x), data, "pruned", atol=1e-4)
    now = {n: b for n, b in model.named_buffers() if n.endswith("_mask")}
    assert now.keys() == masks.keys() and all(torch.equal(now[k], masks[k]) for k in masks)
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.dims and len(t.dims) >= 2]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
    assert zeros > 0.5  # the pruned zeros are in the graph


def test_parametrized_original_survives_export(tiny) -> None:
    model = tiny[0]
    conv = model.sew.encoder.pos_conv_embed.conv
    assert conv.weight.shape == (32, 8, 7)  # export folded a copy, not the original's class
    assert "parametrizations.weight.original0" in dict(conv.named_parameters())


def test_family_export_forward_and_runners(tiny) -> None:
    model, proc = tiny[0], tiny[1]
    x = latency_input(0.5)
    assert x.shape == (1, 8000) and abs(float(x.mean())) < 1e-5
    assert torch.equal(latency_input(0.5), x) and not torch.equal(latency_input(0.5, seed=1), x)
    data = data_of(audios()[:1], proc)
    assert FAMILY.example_inputs(data, 64).shape == (1, 32000)  # one 2 s clip, whatever the batch
    torch.testing.assert_close(FAMILY.parity_inputs(data), normalised_input(proc, audios()[0]))
    deployed = FAMILY.deploy(prepare_model(copy.deepcopy(model)), structured=False)
    torch_out = FAMILY.forward(deployed)(x)
    assert torch.equal(torch_out, LogitsOnly(model).eval()(x).detach())
    session = ort_session(FAMILY.export_onnx(deployed, x), threads=1)
    assert np.abs(ort_runner(session)(x) - torch_out.numpy()).max() < 1e-4
    torch_run = make_runner(FAMILY, model, data, "torch", threads=1)
    ort_run = make_runner(FAMILY, model, data, "onnxruntime", threads=1)  # parity-checked on the utterance
    assert np.abs(torch_run(x).numpy() - ort_run(x)).max() < 1e-4


@pytest.mark.parametrize(
    "runtime, precision, message",
    [
        ("tensorrt", "fp32", "unknown runtime"),
        ("torch-sparse", "fp32", "does not run on torch-sparse"),
        ("onnxruntime", "int8", "does not support precision int8"),
        ("torch", "bf16", "bf16"),
    ],
)
def test_runners_the_family_cannot_give_are_refused(tiny, runtime: str, precision: str, message: str) -> None:
    data = data_of(audios()[:1], tiny[1])
    with pytest.raises(ValueError, match=message):
        make_runner(FAMILY, tiny[0], data, runtime, precision=precision)


def test_validation(tiny) -> None:
    with pytest.raises(ValueError, match="example_seconds"):
        export_ctc_onnx(tiny[0], example_seconds=0)
    with pytest.raises(ValueError, match="seconds"):
        latency_input(0)
