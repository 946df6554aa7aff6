"""Part II in the bench suite: SEW CTC models pruned 10 % per step, WER per checkpoint, PyTorch vs ONNX Runtime.

Runs for the speech pairs of ``--prune-datasets`` (e.g. ``fsdd:sew-fsdd``, ``librispeech:sew-tiny``,
``librispeech:/path/to/saved-model``); skipped with the reason when the data is not there.
Checkpoints and WER come from :mod:`prunelib.sweep.speechcache`; each checkpoint is timed on a fixed
clip of audio in each runtime after ONNX Runtime's parity check on real utterances. Each speech
pair runs the lab's magnitude sweep and a structured sweep (timed physically shrunk), and the exact
SEW-tiny is timed dense and structurally pruned by 50 % and 90 %, held to the MLP's speed-up targets.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from prunelib.config import DataConfig, PruneConfig
from prunelib.deploy.runtimes import CTC_RUNTIMES
from prunelib.measure.targets import Target, Timing, judge
from prunelib.plugin.records import extra_info, record_entry, record_extra
from prunelib.pruning.schedules import get_schedule
from prunelib.sweep.speechcache import SpeechSweepArtifacts, SpeechSweepSpec, prepare_speech_sweep
from prunelib.sweep.suite import SPEECH_DATASETS

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
    from prunelib.cli.speech import data_root, eval_set
    from prunelib.families.sew.models import load_speech_model

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
    """The fields :func:`prunelib.plugin.records.extra_info` reads, for a speech sweep."""

    def __init__(self, spec: SpeechSweepSpec) -> None:
        self.data, self.model, self.seed = DataConfig(spec.dataset), spec.model, spec.seed
        self.prune = PruneConfig(spec.method, spec.amount, spec.iterations)


def test_speech_inference(benchmark, speech_case, suite, request) -> None:
    from prunelib.families.sew.onnx import latency_input, make_ctc_runner
    from prunelib.families.sew.sweep import load_sweep_checkpoint

    spec, k, runtime = speech_case
    state = loaded(request.config, suite, spec)
    model = load_sweep_checkpoint(state.model, state.sweep.checkpoint(k))
    audios = [u.audio for u in state.utterances[:PARITY_UTTERANCES]]
    structured = get_schedule(spec.method).structured  # timed physically shrunk; ORT parity against the masked model
    runner = make_ctc_runner(model, runtime, suite.opts.threads, audios, state.processor, structured=structured)
    x = latency_input(LATENCY_SECONDS, seed=spec.seed)
    for _ in range(3):
        runner(x)
    benchmark.group = f"{spec.label}-{LATENCY_SECONDS:g}s"
    info = extra_info(_Spec(spec), k, state.sweep.row(k), runtime=runtime, batch_size=1, threads=suite.opts.threads)
    benchmark.extra_info.update(info)
    record_entry(request.config, request.node, benchmark.group, info)
    benchmark(runner, x)


def test_speech_sweep_gates(speech_spec, suite, request) -> None:
    """The schedule's sparsity (structured: units left per group), and (FSDD model) the dense WER
    ceiling and WER growing with sparsity."""
    from prunelib.families.sew.structured import units_remaining
    from prunelib.families.sew.sweep import load_sweep_checkpoint
    from prunelib.pruning.sparsity import expected_sparsity
    from prunelib.pruning.structured import count_to_prune

    state = loaded(request.config, suite, speech_spec)
    sweep = state.sweep
    if get_schedule(speech_spec.method).structured:
        want = units_remaining(load_sweep_checkpoint(state.model, sweep.checkpoint(0)))
        for k in range(1, speech_spec.iterations + 1):
            want = {g: n - count_to_prune(speech_spec.amount, n) for g, n in want.items()}
            assert units_remaining(load_sweep_checkpoint(state.model, sweep.checkpoint(k))) == want, f"it{k}"
        assert (
            sweep.metrics["flops"].is_monotonic_decreasing and sweep.metrics["neuron_sparsity"].is_monotonic_increasing
        )
    else:
        for k, measured in zip(sweep.metrics["iteration"], sweep.metrics["sparsity"]):
            assert measured == pytest.approx(expected_sparsity(speech_spec.amount, int(k)), abs=2e-3)
    if (speech_spec.dataset, speech_spec.model) == ("fsdd", "sew-fsdd"):
        wer = sweep.metrics.set_index("iteration")["wer"]
        assert wer.loc[0] <= FSDD_WER_CEILING, f"dense FSDD WER {wer.loc[0]:.3f} > {FSDD_WER_CEILING}"
        assert wer.iloc[-1] >= wer.loc[0], "WER should not fall as the model is pruned further"


def test_speech_sensitivity(speech_model_spec, suite, request) -> None:
    """WER with one component group pruned at a time (feature extractor, attention, feed-forward, each layer)."""
    from prunelib.families.sew.sweep import wer_sensitivity

    spec = speech_model_spec
    state = loaded(request.config, suite, spec)
    table = wer_sensitivity(state.model, state.processor, state.utterances[:SENSITIVITY_UTTERANCES], SENSITIVITY_LEVELS)
    assert table["group"].nunique() >= 4
    record_extra(request.config, f"sensitivity-{spec.dataset}-{Path(spec.model).name}", table)


SEW_TINY_SECONDS = 5.0
#: SEW-tiny variants timed: dense, and one structured step removing 50 % / 90 % of every group's units.
SEW_TINY_VARIANTS = {"dense": None, "structured-50": 0.5, "structured-90": 0.9}
SEW_TINY_CASES = [(v, r) for v in SEW_TINY_VARIANTS for r in CTC_RUNTIMES]
#: The MLP's speed-up targets (issue 5), held by the exact SEW-tiny on 5 s of audio.
SEW_TINY_TARGETS = [
    Target("torch", "structured-50", "torch", "flop-fraction", 0.7),
    Target("onnxruntime", "structured-50", "onnxruntime", "flop-fraction", 0.7),
    Target("torch", "structured-90", "torch", "speedup", 4.0),
    Target("onnxruntime", "structured-90", "onnxruntime", "speedup", 4.0),
]
SEW_TINY_TIMINGS = pytest.StashKey[dict]()
SEW_TINY_MODELS = pytest.StashKey[dict]()


def sew_tiny_variant(config: pytest.Config, seed: int, variant: str):
    """SEW-tiny (weight norm folded), pruned by one structured step for a ``structured-*`` variant; once per session."""
    from prunelib.families.sew.models import SEW_TINY_PARAMETERS, load_speech_model
    from prunelib.families.sew.structured import structured_prune_step
    from prunelib.families.sew.sweep import prepare_model

    models = config.stash.setdefault(SEW_TINY_MODELS, {})
    if "dense" not in models:
        model, processor = load_speech_model("sew-tiny", seed=seed)
        assert sum(p.numel() for p in model.parameters()) == SEW_TINY_PARAMETERS
        models["dense"] = (prepare_model(model), processor)
    if variant not in models:
        model, processor = models["dense"]
        pruned = copy.deepcopy(model)
        structured_prune_step(pruned, SEW_TINY_VARIANTS[variant])
        models[variant] = (pruned, processor)
    return models[variant]


@pytest.mark.parametrize("variant,runtime", SEW_TINY_CASES, ids=[f"{v}-{r}" for v, r in SEW_TINY_CASES])
def test_sew_tiny(benchmark, variant: str, runtime: str, suite, request) -> None:
    """The exact SEW-tiny (40,725,311 parameters) on 5 s of audio, dense and structurally pruned and shrunk:
    ONNX parity (against the masked model), then latency per runtime."""
    if not any(d in SPEECH_DATASETS for d, _ in suite.opts.pairs):
        pytest.skip("no speech pair in --prune-datasets")
    from prunelib.families.sew.onnx import latency_input, make_ctc_runner
    from prunelib.families.sew.structured import unit_sparsity
    from prunelib.families.sew.sweep import deployed
    from prunelib.measure.flops import count_flops

    model, processor = sew_tiny_variant(request.config, suite.opts.seed, variant)
    structured = variant != "dense"
    x = latency_input(SEW_TINY_SECONDS, seed=suite.opts.seed)
    runner = make_ctc_runner(model, runtime, suite.opts.threads, [x[0].numpy()], processor, structured=structured)
    runner(x)
    runs = deployed(model, structured)
    flops = count_flops(runs, x)
    benchmark.group = "sew-tiny-5s"
    benchmark.extra_info.update(
        {
            "model": "sew-tiny",
            "method": variant,
            "runtime": runtime,
            "audio_seconds": SEW_TINY_SECONDS,
            "threads": suite.opts.threads,
            "params_total": sum(p.numel() for p in model.parameters()),
            "params_deployed": sum(p.numel() for p in runs.parameters()),
            "neuron_sparsity": unit_sparsity(model),
            "flops": flops,
        }
    )
    benchmark(runner, x)
    if getattr(benchmark, "stats", None) is not None:
        stats = benchmark.stats.stats
        request.config.stash.setdefault(SEW_TINY_TIMINGS, {})[(runtime, variant)] = Timing(
            stats.min, stats.median, flops
        )


def test_sew_tiny_targets(suite, request) -> None:
    """Within this run: ONNX Runtime no slower than PyTorch on dense SEW-tiny, and the structured speed-ups."""
    timings = request.config.stash.get(SEW_TINY_TIMINGS, {})
    if not {("torch", "dense"), ("onnxruntime", "dense")} <= set(timings):
        pytest.skip("needs the SEW-tiny timings from this run (not under --benchmark-disable)")
    table, failures = judge(
        "sew-tiny-5s", timings, [Target("onnxruntime", "dense", "torch", "speedup", 1.0), *SEW_TINY_TARGETS]
    )
    record_extra(request.config, "speedups", table)
    print("\n" + table.to_string(index=False))
    assert not failures, "; ".join(failures)
