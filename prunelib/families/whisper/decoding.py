"""Greedy decoding of Whisper token ids: its parameters, transformers' ``generate``, and the same rule in numpy.

:class:`Decoding` holds every parameter of a greedy decode; :func:`torch_greedy` runs it with
transformers' ``WhisperForConditionalGeneration.generate`` and :func:`greedy_loop` runs it on any
"next-token logits" function (ONNX Runtime in :mod:`prunelib.families.whisper.onnx`), so both give the
same ids. What transformers 5 applies for these settings (``generation_whisper.py``: short-form
audio, no timestamps, ``do_sample=False``, ``num_beams=1``, no temperature fallback):

* the prompt is passed as ``decoder_input_ids`` and taken as is (no language detection);
* ``SuppressTokensLogitsProcessor``: ``suppress`` ids get ``-inf`` at every step;
* ``SuppressTokensAtBeginLogitsProcessor``: ``begin_suppress`` ids get ``-inf`` at the first
  generated position only (``begin_index`` = prompt length);
* no timestamp processor (``return_timestamps=False``), no no-speech detection, no other
  processor (no repetition penalty, no n-gram ban, no length constraint besides ``max_new_tokens``);
* the next id is the first arg-max of the processed logits; decoding stops after ``eos`` or
  after ``max_new_tokens`` ids; the returned ids leave out the prompt and the eos.

Ids outside the vocabulary are an error here (transformers silently ignores out-of-range
suppress ids).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import GenerationConfig, WhisperConfig

#: Next-token logits ``[vocab]`` for the ids fed since the last call (the whole prompt first).
StepFn = Callable[[Sequence[int]], np.ndarray]


def _ids(name: str, values: Sequence[int]) -> None:
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 0]
    if bad:
        raise ValueError(f"Decoding.{name} must hold non-negative int token ids, got {bad!r}")


@dataclass(frozen=True)
class Decoding:
    """The parameters of a greedy Whisper decode (see the module docstring for their meaning).

    Attributes:
        prompt: decoder prompt, ``<|startoftranscript|>`` first; English-only checkpoints add
            ``<|notimestamps|>``, multilingual ones language and task tokens before it.
        eos: ``<|endoftext|>``: decoding stops when it is chosen (it is not returned).
        suppress: ids never generated.
        begin_suppress: ids never generated first.
        max_new_tokens: most ids generated after the prompt (eos included); 224 by default, openai
            whisper's ``sample_len`` (half the 448 text positions).
    """

    prompt: tuple[int, ...]
    eos: int
    suppress: tuple[int, ...] = ()
    begin_suppress: tuple[int, ...] = ()
    max_new_tokens: int = 224

    def __post_init__(self) -> None:
        for name in ("prompt", "suppress", "begin_suppress"):
            if not isinstance(getattr(self, name), tuple):
                raise ValueError(f"Decoding.{name} must be a tuple of ints, got {type(getattr(self, name)).__name__}")
            _ids(name, getattr(self, name))
        if not self.prompt:
            raise ValueError("Decoding.prompt is empty: it needs at least <|startoftranscript|>")
        _ids("eos", (self.eos,))
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"Decoding.max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}")

    @classmethod
    def from_generation_config(
        cls,
        generation: GenerationConfig,
        config: WhisperConfig,
        *,
        language: str | None = None,
        task: str = "transcribe",
        max_new_tokens: int | None = None,
    ) -> Decoding:
        """The greedy decode a checkpoint's generation config describes (short-form, no timestamps).

        The prompt is ``decoder_start_token_id``, then for a multilingual checkpoint
        (``is_multilingual``) the ``language`` (``"en"`` or ``"<|en|>"``) and ``task`` tokens, then
        ``no_timestamps_token_id`` when the config has one. ``max_new_tokens`` defaults as in
        transformers: ``generation.max_new_tokens``, else ``generation.max_length``; either capped
        so prompt plus new ids fit ``config.max_target_positions``.

        Raises:
            ValueError: naming what is missing: ``decoder_start_token_id``, ``eos_token_id`` (or more
                than one), a ``language`` for a multilingual checkpoint, or its ``lang_to_id`` /
                ``task_to_id`` entry; or a prompt that leaves no room for a new id.
        """
        start = getattr(generation, "decoder_start_token_id", None)
        if start is None:
            start = getattr(config, "decoder_start_token_id", None)
        if start is None:
            raise ValueError("generation config has no decoder_start_token_id (<|startoftranscript|>)")
        eos: Any = getattr(generation, "eos_token_id", None)
        if eos is None:
            eos = getattr(config, "eos_token_id", None)
        if isinstance(eos, (list, tuple)):
            if len(eos) != 1:
                raise ValueError(f"generation config eos_token_id must be one id, got {eos!r}")
            eos = eos[0]
        if eos is None:
            raise ValueError("generation config has no eos_token_id (<|endoftext|>)")
        prompt = [int(start)]
        if getattr(generation, "is_multilingual", False):
            if language is None:
                raise ValueError("a multilingual Whisper needs a language (e.g. language='en') for its prompt")
            token = language if language.startswith("<|") else f"<|{language}|>"
            lang_to_id = getattr(generation, "lang_to_id", None) or {}
            task_to_id = getattr(generation, "task_to_id", None) or {}
            if token not in lang_to_id:
                raise ValueError(f"generation config lang_to_id has no {token}")
            if task not in task_to_id:
                raise ValueError(f"generation config task_to_id has no task {task!r} (has {sorted(task_to_id)})")
            prompt += [int(lang_to_id[token]), int(task_to_id[task])]
        no_timestamps = getattr(generation, "no_timestamps_token_id", None)
        if no_timestamps is not None:
            prompt.append(int(no_timestamps))
        room = int(config.max_target_positions) - len(prompt)
        if room < 1:
            raise ValueError(f"prompt of {len(prompt)} ids leaves no room in max_target_positions")
        wanted = max_new_tokens if max_new_tokens is not None else generation.max_new_tokens
        if wanted is None:
            wanted = generation.max_length if generation.max_length is not None else room
        return cls(
            prompt=tuple(prompt),
            eos=int(eos),
            suppress=tuple(int(t) for t in generation.suppress_tokens or ()),
            begin_suppress=tuple(int(t) for t in generation.begin_suppress_tokens or ()),
            max_new_tokens=min(int(wanted), room),
        )

    def generation_config(self) -> GenerationConfig:
        """A ``transformers.GenerationConfig`` of exactly this greedy decode (nothing else set)."""
        from transformers import GenerationConfig

        return GenerationConfig(
            decoder_start_token_id=self.prompt[0],
            eos_token_id=self.eos,
            pad_token_id=self.eos,
            suppress_tokens=list(self.suppress) or None,
            begin_suppress_tokens=list(self.begin_suppress) or None,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            num_beams=1,
            return_timestamps=False,
        )

    def check_fits(self, vocab_size: int, max_target_positions: int) -> None:
        """Check this decode against a model: every id in its vocabulary, prompt plus new ids in its positions.

        Raises:
            ValueError: an id ``>= vocab_size`` (named with its field), or ``len(prompt) +
                max_new_tokens > max_target_positions``.
        """
        for name in ("prompt", "suppress", "begin_suppress"):
            out = [t for t in getattr(self, name) if t >= vocab_size]
            if out:
                raise ValueError(f"Decoding.{name} has ids {out} outside the model's vocabulary of {vocab_size}")
        if self.eos >= vocab_size:
            raise ValueError(f"Decoding.eos {self.eos} is outside the model's vocabulary of {vocab_size}")
        if len(self.prompt) + self.max_new_tokens > max_target_positions:
            raise ValueError(
                f"prompt ({len(self.prompt)}) + max_new_tokens ({self.max_new_tokens}) exceeds the model's "
                f"max_target_positions ({max_target_positions})"
            )


def torch_greedy(model: Any, features: torch.Tensor, decoding: Decoding) -> list[int]:
    """Greedy ids of ``model`` (a ``WhisperForConditionalGeneration``) for log-mel ``features`` ``[1, 80, 3000]``.

    transformers' ``generate`` with :meth:`Decoding.generation_config`, the prompt as
    ``decoder_input_ids``, under ``torch.inference_mode``. The model's own ``generation_config``
    is swapped out for the call (and restored), since ``generate`` fills every unset field from
    it (language detection, timestamps, no-speech thresholds). Not thread-safe on one model.
    Returns the ids after the prompt, without eos.

    Raises:
        ValueError: ``features`` is not ``[1, mel bins, frames]``, or ``decoding`` does not fit the
            model (:meth:`Decoding.check_fits`).
    """
    from transformers.utils import logging as hf_logging

    config = model.config
    if features.dim() != 3 or features.shape[0] != 1 or features.shape[1] != config.num_mel_bins:
        raise ValueError(f"features must be [1, {config.num_mel_bins}, frames], got {tuple(features.shape)}")
    decoding.check_fits(config.vocab_size, config.max_target_positions)
    generation = decoding.generation_config()
    saved, verbosity = model.generation_config, hf_logging.get_verbosity()
    model.generation_config = generation
    hf_logging.set_verbosity_error()  # generate's own notes on max_length and kwargs it passes itself
    try:
        with torch.inference_mode():
            out = model.generate(
                features, generation_config=generation, decoder_input_ids=torch.tensor([decoding.prompt])
            )
    finally:
        model.generation_config = saved
        hf_logging.set_verbosity(verbosity)
    ids = [int(t) for t in out[0]]
    while ids and ids[-1] == decoding.eos:  # eos, and the eos padding of a batch
        ids.pop()
    return ids


def next_token(logits: np.ndarray, decoding: Decoding, first: bool) -> int:
    """The greedy choice from next-token ``logits`` ``[vocab]``: suppress (and begin-suppress when ``first``), arg-max."""
    scores = np.array(logits, dtype=np.float32, copy=True).reshape(-1)
    if decoding.suppress:
        scores[list(decoding.suppress)] = -np.inf
    if first and decoding.begin_suppress:
        scores[list(decoding.begin_suppress)] = -np.inf
    return int(np.argmax(scores))


def greedy_loop(step: StepFn, decoding: Decoding) -> list[int]:
    """Greedy ids from ``step`` (fed the prompt, then each chosen id): as :func:`torch_greedy` does with ``generate``."""
    ids: list[int] = []
    fed: Sequence[int] = decoding.prompt
    for i in range(decoding.max_new_tokens):
        token = next_token(step(fed), decoding, first=i == 0)
        if token == decoding.eos:
            break
        ids.append(token)
        fed = (token,)
    return ids
