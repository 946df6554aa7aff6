"""SEW CTC models in ONNX: export with a dynamic audio axis; the logits-only wrapper; timing and parity inputs.

The exported graph maps normalised 16 kHz audio ``input_values [batch, samples]`` to CTC
``logits [batch, frames, vocab]``; both the batch and the audio length are dynamic. Export runs
on a copy with the pruning reparametrization removed and weight norm folded (see
:func:`prunelib.families.sew.deploy.fold_weight_norm`), so the graph holds plain weights (zeros where
pruned) and the caller's model is never changed.

SEW's encoder pads its upsampled sequence back to the input length only when the frame count
is odd; the TorchScript tracer keeps whichever branch the example takes, so the example is
chosen with an odd frame count: the pad is then traced with a length computed from the input,
which is 0 for even counts.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from prunelib.families.sew.data import SAMPLE_RATE
from prunelib.families.sew.deploy import inference_copy

if TYPE_CHECKING:
    from transformers.models.sew.modeling_sew import SEWPreTrainedModel

#: ONNX input / output names of an exported CTC model.
INPUT_NAME = "input_values"
OUTPUT_NAME = "logits"


class LogitsOnly(nn.Module):
    """``input_values -> logits`` of a HF CTC model: one tensor in, one out, no attention mask."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits


def frames_for(model: nn.Module, samples: int) -> int:
    """CTC output frames of ``model`` for ``samples`` audio samples (its own conv arithmetic)."""
    lengths = cast(torch.LongTensor, torch.tensor([samples]))  # int64, as torch.tensor makes it from ints
    return int(cast("SEWPreTrainedModel", model)._get_feat_extract_output_lengths(lengths)[0])


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
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 1: "samples"}, OUTPUT_NAME: {0: "batch", 1: "frames"}},
        )
    return buf.getvalue()


def normalised_input(processor: Any, audio: np.ndarray) -> torch.Tensor:
    """``[1, samples]`` input values of one 16 kHz utterance, normalised by ``processor``."""
    feats = processor(audio=[np.asarray(audio, np.float32)], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    return feats["input_values"]


def latency_input(seconds: float, seed: int = 0) -> torch.Tensor:
    """``[1, samples]`` of seeded, normalised noise: ``seconds`` of audio to time a model on."""
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    x = torch.randn(1, int(seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(seed))
    return (x - x.mean()) / x.std()
