"""Part II in the bench suite: SEW CTC models pruned 10 % per step, WER per checkpoint, PyTorch vs ONNX Runtime.

Runs for the speech pairs of ``--prune-datasets`` (e.g. ``fsdd:sew-fsdd``, ``librispeech:sew-tiny``,
``librispeech:/path/to/saved-model``); skipped with the reason when the data is not there.
Checkpoints and WER come from :mod:`prunelib.speechcache`; each checkpoint is timed on a fixed
clip of audio in each runtime after ONNX Runtime's parity check on real utterances.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from prunelib.benchrecord import extra_info, record_entry, record_extra
from prunelib.config import DataConfig, PruneConfig
from prunelib.speechcache import SpeechSweepArtifacts, SpeechSweepSpec, prepare_speech_sweep
from prunelib.suite import SPEECH_DATASETS

LATENCY_SECONDS = 2.0  # a typical FSDD utterance; SEW-tiny's 5 s check is test_sew_tiny_onnx
PARITY_UTTERANCES = 5
SENSITIVITY_LEVELS = (0.0, 0.3, 0.6, 0.9)
SENSITIVITY_UTTERANCES = 50
#: Dense WER the FSDD model must reach (issue: <= 0.10); quick mode trains the same cached model.
FSDD_WER_CEILING = 0.10


@dataclass
class Loaded:
    model: Any
    processor: Any
    utterances: list
    sweep: SpeechSweepArtifacts


MEMO = pytest.StashKey[dict]()


def loaded(config: pytest.Config, suite, spec: SpeechSweepSpec) -> Loaded:
    """Model, processor, evaluation set and cached sweep of ``spec``, once per session; skip without data."""
    from prunelib.speech.models import load_speech_model
    from prunelib.speechcli import data_root, eval_set

    memo = config.stash.setdefault(MEMO, {})
    if spec not in memo:
        try:
            root = data_root(suite.opts.data_dir)
            utterances = eval_set(spec.dataset, root, spec.seed, spec.eval_count)
        except (FileNotFoundError, OSError) as exc:
            pytest.skip(f"{spec.dataset}: data not available ({exc})")
        model, processor = load_speech_model(spec.model, seed=spec.seed, data_root=root)
        sweep = prepare_speech_sweep(spec, model, processor, utterances, suite.cache_root)
        memo[spec] = Loaded(model, processor, utterances, sweep)
    return memo[spec]


class _Spec:
    """The fields :func:`prunelib.benchrecord.extra_info` reads, for a speech sweep."""

    def __init__(self, spec: SpeechSweepSpec) -> None:
        self.data, self.model, self.seed = DataConfig(spec.dataset), spec.model, spec.seed
        self.prune = PruneConfig(spec.method, spec.amount, spec.iterations)


def test_speech_inference(benchmark, speech_case, suite, request) -> None:
    from prunelib.speech.onnx import latency_input, make_ctc_runner
    from prunelib.speech.sweep import load_sweep_checkpoint

    spec, k, runtime = speech_case
    state = loaded(request.config, suite, spec)
    model = load_sweep_checkpoint(state.model, state.sweep.checkpoint(k))
    audios = [u.audio for u in state.utterances[:PARITY_UTTERANCES]]
    runner = make_ctc_runner(model, runtime, suite.opts.threads, audios, state.processor)  # ORT: parity-checked
    x = latency_input(LATENCY_SECONDS, seed=spec.seed)
    for _ in range(3):
        runner(x)
    benchmark.group = f"{spec.label}-{LATENCY_SECONDS:g}s"
    info = extra_info(_Spec(spec), k, state.sweep.row(k), runtime=runtime, batch_size=1, threads=suite.opts.threads)
    benchmark.extra_info.update(info)
    record_entry(request.config, request.node, benchmark.group, info)
    benchmark(runner, x)


def test_speech_sweep_gates(speech_spec, suite, request) -> None:
    """The schedule's sparsity, and (FSDD model) the dense WER ceiling and WER growing with sparsity."""
    from prunelib.sparsity import expected_sparsity

    sweep = loaded(request.config, suite, speech_spec).sweep
    for k, measured in zip(sweep.metrics["iteration"], sweep.metrics["sparsity"]):
        assert measured == pytest.approx(expected_sparsity(speech_spec.amount, int(k)), abs=2e-3)
    if (speech_spec.dataset, speech_spec.model) == ("fsdd", "sew-fsdd") and speech_spec.method == "no-retrain":
        wer = sweep.metrics.set_index("iteration")["wer"]
        assert wer.loc[0] <= FSDD_WER_CEILING, f"dense FSDD WER {wer.loc[0]:.3f} > {FSDD_WER_CEILING}"
        assert wer.iloc[-1] >= wer.loc[0], "WER should not fall as the model is pruned further"


def test_speech_sensitivity(speech_spec, suite, request) -> None:
    """WER with one component group pruned at a time (feature extractor, attention, feed-forward, each layer)."""
    from prunelib.speech.sweep import wer_sensitivity

    state = loaded(request.config, suite, speech_spec)
    table = wer_sensitivity(state.model, state.processor, state.utterances[:SENSITIVITY_UTTERANCES], SENSITIVITY_LEVELS)
    assert table["group"].nunique() >= 4
    record_extra(request.config, f"sensitivity-{speech_spec.dataset}-{Path(speech_spec.model).name}", table)


SEW_TINY_SECONDS = 5.0
SEW_TINY_MEDIANS = pytest.StashKey[dict]()


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_sew_tiny_onnx(benchmark, runtime: str, suite, request) -> None:
    """The exact SEW-tiny (40,725,311 parameters) on 5 s of audio: ONNX parity, then latency per runtime."""
    if not any(d in SPEECH_DATASETS for d, _ in suite.opts.pairs):
        pytest.skip("no speech pair in --prune-datasets")
    from prunelib.speech.models import SEW_TINY_PARAMETERS, load_speech_model
    from prunelib.speech.onnx import latency_input, make_ctc_runner

    model, processor = load_speech_model("sew-tiny", seed=suite.opts.seed)
    assert sum(p.numel() for p in model.parameters()) == SEW_TINY_PARAMETERS
    x = latency_input(SEW_TINY_SECONDS, seed=suite.opts.seed)
    runner = make_ctc_runner(model, runtime, suite.opts.threads, [x[0].numpy()], processor)
    runner(x)
    benchmark.group = "sew-tiny-5s"
    benchmark.extra_info.update({"model": "sew-tiny", "runtime": runtime, "audio_seconds": SEW_TINY_SECONDS,
                                 "threads": suite.opts.threads, "params_total": SEW_TINY_PARAMETERS})
    benchmark(runner, x)
    if getattr(benchmark, "stats", None) is not None:
        request.config.stash.setdefault(SEW_TINY_MEDIANS, {})[runtime] = benchmark.stats.stats.median


def test_sew_tiny_onnx_is_not_slower(suite, request) -> None:
    medians = request.config.stash.get(SEW_TINY_MEDIANS, {})
    if set(medians) != {"torch", "onnxruntime"}:
        pytest.skip("needs both SEW-tiny timings from this run (not under --benchmark-disable)")
    record_extra(request.config, "sew-tiny-latency", pd.DataFrame([{"runtime": r, "median_s": t} for r, t in medians.items()]))
    assert medians["onnxruntime"] <= medians["torch"], f"ONNX Runtime {medians['onnxruntime']:.3f} s > PyTorch {medians['torch']:.3f} s"
