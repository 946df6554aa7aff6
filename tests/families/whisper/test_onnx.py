from __future__ import annotations

import copy
import dataclasses

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
from torch.nn.utils import prune

from prunelib.families.whisper.decoding import Decoding, torch_greedy
from prunelib.families.whisper.onnx import (
    CrossKV,
    DecoderStep,
    OrtWhisper,
    WhisperOnnx,
    export_whisper_onnx,
    quantize_whisper_int8,
)
from tests.families.whisper.tiny_decoding import (
    DECODING,
    features,
    keep_heads,
    keep_neurons,
    speech_features,
    tiny_whisper,
)


@pytest.fixture(scope="module")
def graphs(model) -> WhisperOnnx:
    return export_whisper_onnx(model)


@pytest.fixture(scope="module")
def ort(graphs) -> OrtWhisper:
    return OrtWhisper(graphs, threads=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ort_ids_equal_torch_generate(model, ort, seed) -> None:
    expected = torch_greedy(model, features(seed), DECODING)
    assert len(expected) > 5
    assert ort(features(seed), DECODING) == expected


def test_ort_stops_on_eos_as_generate(model, ort) -> None:
    free = torch_greedy(model, features(1), DECODING)
    k = next(i for i in range(2, len(free)) if free[i] not in free[:i])
    stop = dataclasses.replace(DECODING, eos=free[k])
    assert ort(features(1).numpy(), stop) == torch_greedy(model, features(1), stop) == free[:k]


def test_decoder_step_equals_the_hf_forward(model) -> None:
    ids = torch.tensor([[100, 102, 51, 70, 3]])
    with torch.no_grad():
        cross = CrossKV(model)(features(0))
        empty = [torch.zeros(1, 4, 0, 16) for _ in range(4)]
        logits, *_ = DecoderStep(model)(ids, torch.tensor([0]), *empty, *cross)
        expected = model(input_features=features(0), decoder_input_ids=ids).logits[:, -1]
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_past_length_zero_and_one_id_at_a_time_match_the_whole_prompt(ort) -> None:
    """Ids fed one per call from an empty cache give the same logits and cache as all at once."""
    cross = dict(zip(ort._cross, ort.encoder.run(None, {"input_features": features(2).numpy()})))
    ids = [100, 102, 51, 70]

    def run(new: list[int], offset: int, cache: dict) -> tuple[np.ndarray, dict]:
        feed = {"input_ids": np.array([new], dtype=np.int64), "offset": np.array([offset], dtype=np.int64)}
        logits, *present = ort.decoder.run(None, {**feed, **cache, **cross})
        return logits, {n.replace("present_", "past_"): v for n, v in zip(ort._present, present)}

    whole, whole_cache = run(ids, 0, dict(ort._empty))
    cache = dict(ort._empty)
    for i, token in enumerate(ids):
        logits, cache = run([token], i, cache)
    assert all(v.shape[2] == 4 for v in cache.values())
    np.testing.assert_allclose(logits, whole, rtol=1e-4, atol=1e-4)
    for name, value in cache.items():
        np.testing.assert_allclose(value, whole_cache[name], rtol=1e-4, atol=1e-5)


def test_layers_with_different_head_counts_and_ffn_widths() -> None:
    shrunk = tiny_whisper(seed=3)
    layers = shrunk.model.decoder.layers
    keep_heads(layers[0].self_attn, [0, 2])
    keep_heads(layers[1].encoder_attn, [1, 2, 3])
    keep_heads(shrunk.model.encoder.layers[0].self_attn, [3])
    keep_neurons(layers[1], 40)
    graphs = export_whisper_onnx(shrunk)
    ort = OrtWhisper(graphs)
    cross_shapes = [o.shape for o in ort.encoder.get_outputs()]
    assert [s[1] for s in cross_shapes] == [4, 4, 3, 3]  # layer 0 keeps 4 cross heads, layer 1 has 3
    assert [ort._empty[f"past_key_{i}"].shape[1] for i in range(2)] == [2, 4]
    for seed in (0, 1):
        expected = torch_greedy(shrunk, features(seed), DECODING)
        assert len(expected) > 5
        assert ort(features(seed), DECODING) == expected


def test_suppress_begin_suppress_and_max_new_tokens_in_ort(ort) -> None:
    free = ort(features(0), dataclasses.replace(DECODING, suppress=(), begin_suppress=()))
    common = tuple(sorted(set(free), key=free.count)[-2:])
    ids = ort(features(0), dataclasses.replace(DECODING, suppress=common, begin_suppress=(free[0],)))
    assert len(ids) > 5 and not set(common) & set(ids) and ids[0] != free[0]
    assert ort(features(0), dataclasses.replace(DECODING, max_new_tokens=3)) == ort(features(0), DECODING)[:3]
    assert len(ort(features(0), dataclasses.replace(DECODING, max_new_tokens=3))) == 3


def test_export_leaves_the_model_alone(graphs, model) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    implementation = model.config._attn_implementation
    export_whisper_onnx(model)
    assert model.config._attn_implementation == implementation
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert graphs.size_bytes == len(graphs.encoder) + len(graphs.decoder) > 0


def test_int8_graphs_are_quantized_and_decode(graphs) -> None:
    int8 = quantize_whisper_int8(graphs)
    for blob in (int8.encoder, int8.decoder):
        assert any(n.op_type == "MatMulInteger" for n in onnx.load_from_string(blob).graph.node)
    assert int8.size_bytes < graphs.size_bytes
    ids = OrtWhisper(int8, threads=2)(features(0), DECODING)
    assert len(ids) > 3 and all(0 <= i < 120 for i in ids)


def test_ort_whisper_checks_its_arguments(graphs, ort) -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        OrtWhisper(graphs, threads=0)
    with pytest.raises(ValueError, match="exceeds the model's max_target_positions"):
        ort(features(0), dataclasses.replace(DECODING, max_new_tokens=63))
    with pytest.raises(ValueError, match="features must be \\[1, 80, 3000\\]"):
        ort(torch.zeros(1, 80, 100), DECODING)
    assert ort.size_bytes == graphs.size_bytes


def test_pruned_weights_are_exported_as_zeros(model) -> None:
    pruned = copy.deepcopy(model)
    layer = pruned.model.decoder.layers[1]
    for linear in (layer.fc1, layer.self_attn.q_proj, pruned.model.encoder.layers[0].fc2):
        prune.l1_unstructured(linear, "weight", amount=0.6)
    graphs = export_whisper_onnx(pruned)
    assert hasattr(layer.fc1, "weight_mask")  # the caller's model keeps its masks
    fc1 = layer.fc1.weight.detach().numpy()
    initializers = [onnx.numpy_helper.to_array(i) for i in onnx.load_from_string(graphs.decoder).graph.initializer]
    assert any(a.shape == fc1.T.shape and np.array_equal(a, fc1.T) for a in initializers)
    for seed in (0, 1):
        expected = torch_greedy(pruned, features(seed), DECODING)
        assert len(expected) > 5 and expected != torch_greedy(model, features(seed), DECODING)
        assert OrtWhisper(graphs)(features(seed), DECODING) == expected


def test_tied_logits_weight_is_stored_once_and_quantized_in_int8(model, graphs) -> None:
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    proto = onnx.load_from_string(graphs.decoder)
    assert [tuple(i.dims) for i in proto.graph.initializer].count((120, 64)) == 1  # no transposed copy of it
    gemm = [n for n in proto.graph.node if n.op_type == "Gemm"]
    assert len(gemm) == 1 and gemm[0].input[1] == "embed_tokens.weight"
    int8 = onnx.load_from_string(quantize_whisper_int8(graphs).decoder)
    int8_weights = [tuple(i.dims) for i in int8.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert (64, 120) in int8_weights  # the logits weight, transposed and quantized


def test_real_tiny_en_ort_ids_equal_torch(tiny_en, data_root) -> None:
    model, processor = tiny_en
    decoding = dataclasses.replace(
        Decoding.from_generation_config(model.generation_config, model.config), max_new_tokens=16
    )
    feats = speech_features(data_root, processor)
    expected = torch_greedy(model, feats, decoding)
    assert len(expected) == 16
    assert OrtWhisper(export_whisper_onnx(model))(feats, decoding) == expected
