"""Cached speech sweeps: built once per configuration, one checkpoint and metrics row per iteration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prunelib.families.sew.data import Utterance
from prunelib.families.sew.models import build_processor, build_sew
from prunelib.families.sew.structured import units_remaining
from prunelib.families.sew.sweep import load_sweep_checkpoint
from prunelib.sweep.speechcache import SpeechSweepSpec, prepare_speech_sweep, utterances_fingerprint
from tests.families.sew.tiny import TINY


def utterances() -> list[Utterance]:
    rng = np.random.default_rng(0)
    return [Utterance(f"u{i}", rng.standard_normal(3200).astype(np.float32), "ONE TWO") for i in range(2)]


@pytest.mark.parametrize("method", ["no-retrain", "structured-no-retrain"])
def test_sweep_is_built_once_with_a_checkpoint_and_row_per_iteration(method: str, tmp_path: Path) -> None:
    model, proc, data = build_sew(TINY, seed=0), build_processor(), utterances()
    spec = SpeechSweepSpec("fsdd", "tiny", method, amount=0.5, iterations=2)
    sweep = prepare_speech_sweep(spec, model, proc, data, tmp_path)
    assert sweep.metrics["iteration"].tolist() == [0, 1, 2]
    assert all(sweep.checkpoint(k).is_file() for k in range(3))
    with pytest.raises(ValueError, match="iteration 3 outside 0..2"):
        sweep.checkpoint(3)
    stamp = sweep.checkpoint(2).stat().st_mtime_ns
    again = prepare_speech_sweep(spec, model, proc, data, tmp_path)
    assert again.folder == sweep.folder and again.checkpoint(2).stat().st_mtime_ns == stamp  # not rebuilt
    last = load_sweep_checkpoint(model, sweep.checkpoint(2))
    if method == "structured-no-retrain":
        assert units_remaining(last)["encoder.layers.0.feed_forward"] == 16  # 64 -> 32 -> 16
        assert sweep.row(2)["neuron_sparsity"] > sweep.row(1)["neuron_sparsity"] > 0
        assert sweep.row(2)["params_deployed"] < sweep.row(0)["params_deployed"]
    else:
        assert sweep.row(2)["sparsity"] == pytest.approx(0.75, abs=2e-3) and 0 <= sweep.row(2)["neuron_sparsity"] <= 1


def test_the_key_covers_method_and_audio(tmp_path: Path) -> None:
    model, proc, data = build_sew(TINY, seed=0), build_processor(), utterances()
    spec = SpeechSweepSpec("fsdd", "tiny", "no-retrain", amount=0.5, iterations=1)
    a = prepare_speech_sweep(spec, model, proc, data, tmp_path)
    b = prepare_speech_sweep(
        SpeechSweepSpec("fsdd", "tiny", "structured-no-retrain", 0.5, 1), model, proc, data, tmp_path
    )
    quieter = [Utterance(u.id, u.audio * 0.5, u.text) for u in data]
    assert utterances_fingerprint(quieter) != utterances_fingerprint(data)
    c = prepare_speech_sweep(spec, model, proc, quieter, tmp_path)
    assert len({a.folder, b.folder, c.folder}) == 3
