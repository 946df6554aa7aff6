"""SEW CTC models in ONNX Runtime: export with a dynamic audio axis, sessions, parity and latency.

The exported graph maps normalised 16 kHz audio ``input_values [batch, samples]`` to CTC
``logits [batch, frames, vocab]``; both the batch and the audio length are dynamic. Export runs
on a copy with the pruning reparametrization removed and weight norm folded (see
:func:`prunelib.families.sew.sweep.fold_weight_norm`), so the graph holds plain weights (zeros where
pruned) and the caller's model is never changed.

SEW's encoder pads its upsampled sequence back to the input length only when the frame count
is odd; the TorchScript tracer keeps whichever branch the example takes, so the example is
chosen with an odd frame count: the pad is then traced with a length computed from the input,
which is 0 for even counts. :func:`check_parity` checks both parities over the evaluation set.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from prunelib.deploy.runtimes import CTC_RUNTIMES, ort_session, set_torch_threads, time_calls
from prunelib.families.sew.data import SAMPLE_RATE
from prunelib.families.sew.deploy import inference_copy

#: ONNX input / output names of an exported CTC model.
INPUT_NAME = "input_values"
OUTPUT_NAME = "logits"
#: ORT graph optimisation levels by name (``onnxruntime.GraphOptimizationLevel``).
OPT_LEVELS = ("disable", "basic", "extended", "all")


class LogitsOnly(nn.Module):
    """``input_values -> logits`` of a HF CTC model: one tensor in, one out, no attention mask."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits


def frames_for(model: nn.Module, samples: int) -> int:
    """CTC output frames of ``model`` for ``samples`` audio samples (its own conv arithmetic)."""
    return int(model._get_feat_extract_output_lengths(torch.tensor([samples]))[0])


def odd_frame_length(model: nn.Module, samples: int) -> int:
    """The smallest length ``>= samples`` whose frame count is odd (see the module docstring)."""
    n = max(int(samples), 1)
    while frames_for(model, n) < 1 or frames_for(model, n) % 2 == 0:
        n += 1
    return n


def export_ctc_onnx(model: nn.Module, example_seconds: float = 1.0, opset: int = 17) -> bytes:
    """ONNX bytes of ``model`` (a HF CTC model such as ``SEWForCTC``) with dynamic batch and length.

    Uses the TorchScript exporter (``dynamo=False``: it needs no onnxscript). The example is
    ``example_seconds`` of random audio stretched to an odd frame count.

    Raises:
        ValueError: ``example_seconds`` is not positive.
    """
    if not example_seconds > 0:
        raise ValueError(f"example_seconds must be > 0, got {example_seconds}")
    dense = inference_copy(model)
    samples = odd_frame_length(dense, int(example_seconds * SAMPLE_RATE))
    example = torch.randn(1, samples, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LogitsOnly(dense),
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 1: "samples"}, OUTPUT_NAME: {0: "batch", 1: "frames"}},
        )
    return buf.getvalue()


def ctc_session(onnx_model: bytes, threads: int | None = None, optimization: str = "all"):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (1 inter-op) and ``optimization``.

    Raises:
        ValueError: unknown ``optimization`` (one of :data:`OPT_LEVELS`).
    """
    import onnxruntime as ort

    if optimization not in OPT_LEVELS:
        raise ValueError(f"unknown ORT optimisation level {optimization!r}; choose one of {list(OPT_LEVELS)}")
    session = ort_session(onnx_model, threads)
    if optimization == "all":
        return session
    level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }[optimization]
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.graph_optimization_level = level
    return ort.InferenceSession(onnx_model, sess_options=opts, providers=["CPUExecutionProvider"])


def ort_logits(session, input_values: torch.Tensor | np.ndarray) -> np.ndarray:
    """Run ``session`` on normalised audio ``[batch, samples]``; returns float32 logits."""
    x = input_values.numpy() if isinstance(input_values, torch.Tensor) else np.asarray(input_values)
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


class OrtCTCModel(nn.Module):
    """An ORT session behind the HF CTC call convention, so :func:`prunelib.families.sew.wer.evaluate_wer`
    and :func:`~prunelib.families.sew.wer.transcribe` run it unchanged (the attention mask is ignored,
    as the exported group-norm SEW takes none). ``reference`` supplies the frame arithmetic."""

    def __init__(self, session, reference: nn.Module) -> None:
        super().__init__()
        self.session = session
        self._lengths = reference._get_feat_extract_output_lengths

    def _get_feat_extract_output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self._lengths(lengths)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Any:
        return SimpleNamespace(logits=torch.from_numpy(ort_logits(self.session, input_values)))


def normalised_input(processor: Any, audio: np.ndarray) -> torch.Tensor:
    """``[1, samples]`` input values of one 16 kHz utterance, normalised by ``processor``."""
    feats = processor(audio=[np.asarray(audio, np.float32)], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    return feats["input_values"]


@dataclass(frozen=True)
class SpeechParity:
    """ORT against PyTorch over an evaluation set, one utterance at a time."""

    max_abs_diff: float  # largest |logit difference| over every utterance and frame
    utterances: int
    transcript_mismatches: list[tuple[int, str, str]] = field(default_factory=list)  # (index, torch, ort)

    @property
    def transcripts_equal(self) -> bool:
        return not self.transcript_mismatches


def check_parity(
    model: nn.Module,
    processor: Any,
    session,
    audios: Sequence[np.ndarray],
    atol: float = 1e-3,
) -> SpeechParity:
    """Compare ``session`` with ``model`` on each of ``audios``: logits within ``atol`` and identical
    greedy transcripts.

    Raises:
        ValueError: no audio, or a logit differs by more than ``atol``, or a transcript differs
            (a wrong model must never be timed).
    """
    if len(audios) == 0:
        raise ValueError("check_parity needs at least one utterance")
    dense = inference_copy(model)
    worst = 0.0
    mismatches: list[tuple[int, str, str]] = []
    for i, audio in enumerate(audios):
        x = normalised_input(processor, audio)
        with torch.inference_mode():
            want = dense(input_values=x).logits.numpy()
        got = ort_logits(session, x)
        if want.shape != got.shape:
            raise ValueError(f"utterance {i}: ONNX Runtime logits have shape {got.shape}, PyTorch {want.shape}")
        worst = max(worst, float(np.max(np.abs(want - got))) if want.size else 0.0)
        text_t, text_o = processor.batch_decode(torch.from_numpy(np.stack([want.argmax(-1)[0], got.argmax(-1)[0]])))
        if text_t != text_o:
            mismatches.append((i, text_t, text_o))
    if not worst <= atol:
        raise ValueError(f"ONNX Runtime logits differ from PyTorch by {worst:.3g} (tolerance {atol:g})")
    if mismatches:
        i, a, b = mismatches[0]
        raise ValueError(
            f"ONNX Runtime transcripts differ on {len(mismatches)} of {len(audios)} utterances; "
            f"first: #{i} torch {a!r} vs ORT {b!r}"
        )
    return SpeechParity(worst, len(audios), mismatches)


def torch_ctc_runner(model: nn.Module):
    """A callable ``input_values -> logits`` on an inference copy of ``model`` (no autograd)."""
    dense = LogitsOnly(inference_copy(model)).eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return dense(x)

    return run


def ort_ctc_runner(session):
    """A callable ``input_values -> logits`` (numpy) running ``session``."""
    return lambda x: ort_logits(session, x)


def make_ctc_runner(
    model: nn.Module,
    runtime: str,
    threads: int | None = None,
    check_audios: Sequence[np.ndarray] | None = None,
    processor: Any = None,
    optimization: str = "all",
    atol: float = 1e-3,
    structured: bool = False,
):
    """A timing callable for ``runtime`` (``torch`` or ``onnxruntime``), taking ``[batch, samples]``.

    ``structured``: run the physically shrunk model (:func:`prunelib.families.sew.structured.shrink_sew`).
    For ONNX Runtime, ``check_audios`` (with ``processor``) are parity-checked first, against
    ``model`` itself, so a shrunk graph is also checked against the masked model.

    Raises:
        ValueError: unknown runtime, or the ONNX model fails parity.
    """
    from prunelib.deploy.runtimes import check_runtime
    from prunelib.families.sew.structured import shrink_sew

    if check_runtime(runtime) not in CTC_RUNTIMES:
        raise ValueError(f"speech models run on {list(CTC_RUNTIMES)}, not {runtime!r}")
    set_torch_threads(threads)
    runs = shrink_sew(model) if structured else model
    if runtime == "torch":
        return torch_ctc_runner(runs)
    session = ctc_session(export_ctc_onnx(runs), threads, optimization)
    if check_audios is not None:
        if processor is None:
            raise ValueError("make_ctc_runner needs the processor to check parity")
        check_parity(model, processor, session, check_audios, atol)
    return ort_ctc_runner(session)


def latency_input(seconds: float, seed: int = 0) -> torch.Tensor:
    """``[1, samples]`` of seeded, normalised noise: ``seconds`` of audio to time a model on."""
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    x = torch.randn(1, int(seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(seed))
    return (x - x.mean()) / x.std()


def compare_latency(
    model: nn.Module,
    processor: Any,
    seconds: float = 5.0,
    threads: int = 2,
    runs: int = 20,
    warmup: int = 3,
    optimization: str = "all",
    check_audios: Sequence[np.ndarray] | None = None,
    rounds: int = 3,
) -> dict[str, float]:
    """Latency of ``model`` in PyTorch and ONNX Runtime on ``seconds`` of audio at ``threads``.

    Parity is checked first on ``check_audios`` (default: the timing input itself as audio).
    The two runtimes are timed in ``rounds`` alternating rounds of ``runs`` calls and the best
    round's mean is kept for each, so a neighbour's load on a shared machine hits both alike.

    Returns:
        ``torch_mean_s``, ``torch_std_s``, ``ort_mean_s``, ``ort_std_s``, ``max_abs_diff``,
        ``seconds``, ``threads``.
    """
    before = torch.get_num_threads()
    set_torch_threads(threads)
    try:
        x = latency_input(seconds)
        audios = list(check_audios) if check_audios is not None else [x[0].numpy()]
        session = ctc_session(export_ctc_onnx(model), threads, optimization)
        parity = check_parity(model, processor, session, audios)
        runners = {"torch": torch_ctc_runner(model), "ort": ort_ctc_runner(session)}
        best: dict[str, tuple[float, float]] = {}
        for _ in range(max(1, rounds)):
            for name, fn in runners.items():
                mean, std = time_calls(fn, x, runs, warmup)
                if name not in best or mean < best[name][0]:
                    best[name] = (mean, std)
    finally:
        torch.set_num_threads(before)
    return {
        "torch_mean_s": best["torch"][0],
        "torch_std_s": best["torch"][1],
        "ort_mean_s": best["ort"][0],
        "ort_std_s": best["ort"][1],
        "max_abs_diff": parity.max_abs_diff,
        "seconds": seconds,
        "threads": threads,
    }
