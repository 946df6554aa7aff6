from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import GenerationConfig

from prunelib.deploy.precision import dynamic_int8
from prunelib.families.whisper.decoding import Decoding, greedy_loop, next_token, torch_greedy
from tests.families.whisper.tiny_decoding import (
    DECODING,
    EOS,
    NO_TIMESTAMPS,
    SOT,
    features,
    speech_features,
)


@pytest.fixture(scope="module")
def free(model) -> list[int]:
    """The greedy ids of the random model on features(0) with nothing suppressed."""
    ids = torch_greedy(model, features(0), dataclasses.replace(DECODING, suppress=(), begin_suppress=()))
    assert len(ids) == DECODING.max_new_tokens and len(set(ids)) > 3  # varied ids, eos never chosen
    return ids


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": ()}, "prompt is empty"),
        ({"prompt": [SOT]}, "prompt must be a tuple"),
        ({"prompt": (SOT, -1)}, "prompt must hold non-negative int"),
        ({"prompt": (SOT, 2.0)}, "prompt must hold non-negative int"),
        ({"eos": -3}, "eos must hold"),
        ({"eos": True}, "eos must hold"),
        ({"suppress": (1, "a")}, "suppress must hold"),
        ({"begin_suppress": [1]}, "begin_suppress must be a tuple"),
        ({"max_new_tokens": 0}, "max_new_tokens must be an int >= 1"),
        ({"max_new_tokens": 2.5}, "max_new_tokens must be an int >= 1"),
    ],
)
def test_decoding_validates_its_fields(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(DECODING, **fields)


def test_decoding_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DECODING.eos = 3  # type: ignore[misc]


def english(**extra) -> GenerationConfig:
    fields = {"decoder_start_token_id": SOT, "eos_token_id": EOS, "no_timestamps_token_id": NO_TIMESTAMPS}
    return GenerationConfig(**{**fields, "suppress_tokens": [5, 6], "begin_suppress_tokens": [7], **extra})


def test_from_generation_config_english_only(model) -> None:
    decoding = Decoding.from_generation_config(english(max_length=448), model.config)
    # transformers' default length: max_length capped so prompt + new ids fit the 64 positions
    assert decoding == Decoding((SOT, NO_TIMESTAMPS), EOS, (5, 6), (7,), max_new_tokens=62)
    assert Decoding.from_generation_config(english(max_new_tokens=9), model.config).max_new_tokens == 9
    assert Decoding.from_generation_config(english(), model.config, max_new_tokens=4).max_new_tokens == 4
    assert Decoding.from_generation_config(english(eos_token_id=[EOS]), model.config).eos == EOS


def test_from_generation_config_multilingual(model) -> None:
    generation = english(is_multilingual=True, lang_to_id={"<|en|>": 50, "<|de|>": 51}, task_to_id={"transcribe": 60})
    assert Decoding.from_generation_config(generation, model.config, language="de").prompt == (SOT, 51, 60, 102)
    assert Decoding.from_generation_config(generation, model.config, language="<|en|>").prompt == (SOT, 50, 60, 102)
    with pytest.raises(ValueError, match="needs a language"):
        Decoding.from_generation_config(generation, model.config)
    with pytest.raises(ValueError, match="lang_to_id has no <\\|fr\\|>"):
        Decoding.from_generation_config(generation, model.config, language="fr")
    with pytest.raises(ValueError, match="task_to_id has no task 'translate'"):
        Decoding.from_generation_config(generation, model.config, language="en", task="translate")


def test_from_generation_config_names_what_is_missing(model) -> None:
    config = SimpleNamespace(max_target_positions=64)  # a WhisperConfig always has both ids: they come from here
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        Decoding.from_generation_config(GenerationConfig(eos_token_id=EOS), config)
    with pytest.raises(ValueError, match="no eos_token_id"):
        Decoding.from_generation_config(GenerationConfig(decoder_start_token_id=SOT), config)
    with pytest.raises(ValueError, match="must be one id"):
        Decoding.from_generation_config(english(eos_token_id=[EOS, 3]), model.config)


def test_check_fits_names_the_field() -> None:
    DECODING.check_fits(120, 22)
    with pytest.raises(ValueError, match="suppress has ids \\[130\\]"):
        dataclasses.replace(DECODING, suppress=(5, 130)).check_fits(120, 64)
    with pytest.raises(ValueError, match="eos 120 is outside"):
        dataclasses.replace(DECODING, eos=120).check_fits(120, 64)
    with pytest.raises(ValueError, match="exceeds the model's max_target_positions \\(21\\)"):
        DECODING.check_fits(120, 21)


def test_torch_greedy_suppresses_ids(model, free) -> None:
    common = tuple(sorted(set(free), key=free.count)[-2:])
    ids = torch_greedy(model, features(0), dataclasses.replace(DECODING, suppress=common, begin_suppress=()))
    assert len(ids) > 5 and not set(common) & set(ids)


def test_torch_greedy_begin_suppress_only_first(model, free) -> None:
    ids = torch_greedy(model, features(0), dataclasses.replace(DECODING, suppress=(), begin_suppress=(free[0],)))
    assert len(ids) > 5 and ids[0] != free[0]
    later = next(t for t in free[1:] if t != free[0])  # chosen later in the free run, never first
    unchanged = dataclasses.replace(DECODING, suppress=(), begin_suppress=(later,))
    assert torch_greedy(model, features(0), unchanged) == free


def test_torch_greedy_stops_on_eos_and_respects_max_new_tokens(model, free) -> None:
    k = next(i for i in range(2, len(free)) if free[i] not in free[:i])  # an id first chosen at step k >= 2
    stop = dataclasses.replace(DECODING, eos=free[k], suppress=(), begin_suppress=())
    assert torch_greedy(model, features(0), stop) == free[:k]
    assert torch_greedy(model, features(0), dataclasses.replace(stop, max_new_tokens=2)) == free[:2]


def test_torch_greedy_restores_the_generation_config_and_checks_inputs(model) -> None:
    before = model.generation_config
    torch_greedy(model, features(1), DECODING)
    assert model.generation_config is before
    with pytest.raises(ValueError, match="features must be \\[1, 80, frames\\]"):
        torch_greedy(model, torch.zeros(80, 3000), DECODING)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        torch_greedy(model, features(1), dataclasses.replace(DECODING, suppress=(500,)))


def test_torch_greedy_runs_on_torch_dynamic_int8(model) -> None:
    quantized = dynamic_int8(model)
    assert any("Quantized" in type(m).__name__ or "quantized" in type(m).__module__ for m in quantized.modules())
    ids = torch_greedy(quantized, features(0), DECODING)
    assert len(ids) > 3 and all(0 <= i < 120 for i in ids)


def test_next_token_applies_suppress_then_argmax() -> None:
    logits = np.array([0.0, 5.0, 4.0, 3.0, 5.0], dtype=np.float32)
    decoding = Decoding(prompt=(0,), eos=0, suppress=(2,), begin_suppress=(1, 4))
    assert next_token(logits, decoding, first=False) == 1  # first of the tied maxima
    assert next_token(logits, decoding, first=True) == 3  # 1 and 4 out first, 2 always
    assert logits[1] == 5.0  # not changed in place


def test_greedy_loop_feeds_the_prompt_then_each_id() -> None:
    script = [3, 4, 2, 4]
    fed: list[tuple[int, ...]] = []

    def step(ids):
        fed.append(tuple(ids))
        return np.eye(6, dtype=np.float32)[script[len(fed) - 1]]

    decoding = Decoding(prompt=(5, 1), eos=2, max_new_tokens=10)
    assert greedy_loop(step, decoding) == [3, 4]
    assert fed == [(5, 1), (3,), (4,)]
    fed.clear()
    assert greedy_loop(step, dataclasses.replace(decoding, eos=0, max_new_tokens=3)) == [3, 4, 2]


def test_real_tiny_en_decoding_is_what_its_own_generate_does(tiny_en, data_root) -> None:
    model, processor = tiny_en
    decoding = Decoding.from_generation_config(model.generation_config, model.config)
    assert decoding.prompt == (50257, 50362) and decoding.eos == 50256 and decoding.begin_suppress == (220, 50256)
    assert decoding.max_new_tokens == 446 and len(decoding.suppress) > 80
    feats = speech_features(data_root, processor)
    with torch.inference_mode():
        default = model.generate(feats)[0].tolist()  # the checkpoint's own generation config, untouched
    ids = torch_greedy(model, feats, decoding)
    assert ids == [t for t in default if t != decoding.eos]
    assert processor.tokenizer.decode(ids).startswith(" If the reader will excuse me, I will say nothing")
