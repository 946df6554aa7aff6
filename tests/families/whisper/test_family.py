"""The whisper family on the real tiny.en and speech-eval: what it accepts, scores, prunes, deploys and refuses."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from prunelib.families.registry import get_family
from prunelib.families.whisper.deploy import Transcriber, pad_rows

ROOT = Path(os.environ.get("PRUNELIB_DATA_DIR", Path(__file__).resolve().parents[4] / "shared" / "data"))


@pytest.fixture(scope="module")
def family():
    return get_family("whisper")


@pytest.fixture(scope="module")
def quick(family, wheel_folder):
    if not (ROOT / "speech-eval").is_dir():
        pytest.skip(f"no speech-eval under {ROOT}")
    data = family.load_data("speech-eval", "whisper-tiny-en", ROOT, 0, True)
    return data, family.prepare(family.build("whisper-tiny-en", data, 0))


def test_models_it_accepts_and_refuses(family, tmp_path) -> None:
    family.check_model("whisper-tiny-en")
    family.check_model(str(tmp_path))
    family.check_model("hf:openai/whisper-tiny.en")
    with pytest.raises(ValueError, match="has no model 'whisper-huge'"):
        family.check_model("whisper-huge")
    with pytest.raises(ValueError, match="hf:org/name"):
        family.check_model("hf:openai/whisper/tiny")


def test_methods_that_retrain_are_skipped_with_the_reason(family) -> None:
    assert family.supports(method="no-retrain") == "" and family.supports(method="structured-no-retrain") == ""
    assert "retraining a pruned Whisper is not built" in family.supports(method="imp-rewind")
    assert "does not run on executorch" in family.supports(runtime="executorch")
    assert family.supports(runtime="onnxruntime", precision="int8") == ""


def test_quick_data_scores_three_utterances_and_times_the_longest(family, quick) -> None:
    data, _ = quick
    assert len(data.utterances) == 3 and data.features.shape == (3, 80, 3000)
    longest = int(np.argmax(data.seconds))
    assert torch.equal(family.example_inputs(data, 1), data.features[longest : longest + 1])
    assert family.example_seconds(data) == pytest.approx(data.utterances[longest].duration_s)
    assert family.data_fingerprint(data) == family.data_fingerprint(data)
    assert family.data_fingerprint(family.subset(data, None, 2, 0)) != family.data_fingerprint(data)


def test_dense_tiny_en_transcribes_speech_eval_within_the_target(family, quick) -> None:
    data, model = quick
    scores = family.evaluate(family.deploy(model, structured=False), data)
    assert scores["wer"] <= 0.05 and scores["cer"] <= scores["wer"]
    assert family.evaluate(model, data) == scores  # a model as pruned is scored through the same transcriber


def test_prunable_leaves_the_tied_embedding_unless_asked(family, quick) -> None:
    _, model = quick
    params = family.prunable(model)
    assert all(m is not model.proj_out for m, _ in params)
    assert len(params) == 2 + 4 * 6 + 4 * 10  # conv1, conv2; encoder q k v o fc1 fc2; decoder + cross q k v o
    assert (model.proj_out, "weight") in family.prunable(model, embeddings=True)


def test_flops_are_counted_at_equal_work(family, quick) -> None:
    _, model = quick
    held = family.flops_module(family.deploy(model, structured=False))
    assert isinstance(held, Transcriber) and held.decoding.max_new_tokens == 33
    assert held.decoding.eos in held.decoding.suppress


def test_onnx_runtime_must_transcribe_every_utterance_as_pytorch(family, quick) -> None:
    from prunelib.deploy.runtimes import make_runner

    data, model = quick
    run = make_runner(family, model, data, "onnxruntime", threads=1)  # raises unless every transcript matches
    assert run.disk_bytes > 100e6
    expected = family.forward(family.deploy(model, False))(data.features).numpy()
    wrong = expected.copy()
    wrong[1, 0] = 13  # a different first token for the second utterance
    with pytest.raises(ValueError, match=f"transcribes {data.utterances[1].id!r} as"):
        family.check_outputs(expected, wrong, data, "ONNX Runtime")
    assert family.check_outputs(expected, expected, data, "x") == 0.0


def test_int8_transcripts_may_drift_a_little_but_not_far(family, quick) -> None:
    data, _ = quick
    tok = data.processor.tokenizer
    ref = [tok(u.text.capitalize(), add_special_tokens=False).input_ids for u in data.utterances]
    close = [r[:-1] for r in ref]  # one word short each
    far = [tok("hello there", add_special_tokens=False).input_ids for _ in ref]
    expected = pad_rows(ref).numpy()
    assert 0 < family.check_outputs(expected, pad_rows(close).numpy(), data, "int8", atol=1.0) <= 0.25
    with pytest.raises(ValueError, match="in int8 against 0.000 in fp32"):
        family.check_outputs(expected, pad_rows(far).numpy(), data, "int8", atol=1.0)
    # a model pruning already broke: int8 may say anything as long as it is not much worse than fp32
    other = [tok("good morning", add_special_tokens=False).input_ids for _ in ref]
    assert family.check_outputs(pad_rows(far).numpy(), pad_rows(other).numpy(), data, "int8", atol=1.0) < 0.25
    # a model that repeats itself (WER past 1): int8 may repeat a little more, in proportion, not far more
    four = pad_rows([r * 4 for r in ref]).numpy()
    assert 0 < family.check_outputs(four, pad_rows([r * 4 + r[:1] for r in ref]).numpy(), data, "i", atol=1.0) < 0.75
    with pytest.raises(ValueError, match=r"in int8 against 2\.\d+ in fp32"):
        family.check_outputs(four, pad_rows([r * 5 for r in ref]).numpy(), data, "int8", atol=1.0)
