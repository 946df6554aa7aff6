"""SEW in ONNX Runtime: dynamic audio length, parity (logits and transcripts), pruned export, latency."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from prunelib.families.sew.data import Utterance
from prunelib.families.sew.models import build_processor, build_sew
from prunelib.families.sew.onnx import (
    OPT_LEVELS,
    OrtCTCModel,
    check_parity,
    compare_latency,
    ctc_session,
    export_ctc_onnx,
    frames_for,
    latency_input,
    make_ctc_runner,
    odd_frame_length,
    ort_logits,
)
from prunelib.families.sew.sweep import prepare_model, prunable_parameters
from prunelib.families.sew.wer import evaluate_wer, transcribe
from prunelib.pruning.criteria import magnitude_prune

from .tiny import TINY


@pytest.fixture(scope="module")
def tiny():
    """A random tiny SEW, its processor, its ONNX bytes and a session (exported once)."""
    model, proc = build_sew(TINY, seed=0), build_processor()
    onnx_bytes = export_ctc_onnx(model)
    return model, proc, onnx_bytes, ctc_session(onnx_bytes, threads=1)


def audios(lengths=(3200, 3520, 3840, 4160, 9000, 16000, 16320)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(n).astype(np.float32) for n in lengths]


def test_example_length_has_an_odd_frame_count(tiny) -> None:
    model = tiny[0]
    n = odd_frame_length(model, 16000)
    assert n >= 16000 and frames_for(model, n) % 2 == 1
    assert odd_frame_length(model, n) == n


def test_dynamic_length_parity_on_odd_and_even_frame_counts(tiny) -> None:
    model, proc, _, session = tiny
    clips = audios()
    assert {frames_for(model, len(a)) % 2 for a in clips} == {0, 1}
    parity = check_parity(model, proc, session, clips, atol=1e-4)
    assert parity.utterances == len(clips) and parity.transcripts_equal and parity.max_abs_diff <= 1e-4


def test_dynamic_batch(tiny) -> None:
    model, _, _, session = tiny
    x = torch.randn(3, 6400, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(input_values=x).logits.numpy()
    got = ort_logits(session, x)
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


def test_ort_model_transcribes_like_torch(tiny) -> None:
    model, proc, _, session = tiny
    clips = audios()[:4]
    ort_model = OrtCTCModel(session, model)
    assert transcribe(ort_model, proc, clips) == transcribe(model, proc, clips)
    data = [Utterance(str(i), a, "ONE TWO") for i, a in enumerate(clips)]
    assert evaluate_wer(ort_model, proc, data) == evaluate_wer(model, proc, data)


def test_parity_rejects_another_model(tiny) -> None:
    _, proc, _, session = tiny
    with pytest.raises(ValueError, match="differ"):
        check_parity(build_sew(TINY, seed=1), proc, session, audios()[:2])
    with pytest.raises(ValueError, match="at least one"):
        check_parity(tiny[0], proc, session, [])


def test_pruned_export_keeps_zeros_and_leaves_the_model_alone(tiny) -> None:
    proc = tiny[1]
    model = prepare_model(copy.deepcopy(tiny[0]))
    magnitude_prune(prunable_parameters(model), 0.6)
    masks = {n: b.clone() for n, b in model.named_buffers() if n.endswith("_mask")}
    session = ctc_session(export_ctc_onnx(model), threads=1)
    assert check_parity(model, proc, session, audios()[:3]).transcripts_equal
    assert {n: b for n, b in model.named_buffers() if n.endswith("_mask")}.keys() == masks.keys()
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(export_ctc_onnx(model)).graph
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.dims and len(t.dims) >= 2]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
    assert zeros > 0.5  # the pruned zeros are in the graph


def test_parametrized_original_survives_export(tiny) -> None:
    model = tiny[0]
    conv = model.sew.encoder.pos_conv_embed.conv
    assert conv.weight.shape == (32, 8, 7)  # export folded a copy, not the original's class
    assert "parametrizations.weight.original0" in dict(conv.named_parameters())


def test_runner_and_latency(tiny) -> None:
    model, proc = tiny[0], tiny[1]
    x = latency_input(0.5)
    assert x.shape == (1, 8000) and abs(float(x.mean())) < 1e-5
    torch_out = make_ctc_runner(model, "torch", threads=1)(x)
    ort_out = make_ctc_runner(model, "onnxruntime", threads=1, check_audios=audios()[:1], processor=proc)(x)
    assert np.abs(torch_out.numpy() - ort_out).max() < 1e-4
    result = compare_latency(model, proc, seconds=0.5, threads=1, runs=2, warmup=0, rounds=1)
    assert result["torch_mean_s"] > 0 and result["ort_mean_s"] > 0 and result["max_abs_diff"] < 1e-4
    with pytest.raises(ValueError, match="runtime"):
        make_ctc_runner(model, "tensorrt")


@pytest.mark.parametrize("level", OPT_LEVELS)
def test_optimisation_levels_keep_parity(tiny, level: str) -> None:
    model, proc, onnx_bytes, _ = tiny
    assert check_parity(model, proc, ctc_session(onnx_bytes, 1, level), audios()[:2]).transcripts_equal


def test_validation(tiny) -> None:
    with pytest.raises(ValueError, match="'fast'"):
        ctc_session(tiny[2], 1, "fast")
    with pytest.raises(ValueError, match="example_seconds"):
        export_ctc_onnx(tiny[0], example_seconds=0)
    with pytest.raises(ValueError, match="seconds"):
        latency_input(0)
