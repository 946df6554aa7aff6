"""Speech recognition on edge devices: SEW CTC models, FSDD/LibriSpeech data, WER.

Modules: ``data`` (audio and utterances), ``models`` (SEW architectures, processor, loader),
``wer`` (greedy CTC decoding and word error rate), ``train`` (the cached FSDD model),
``onnx`` (export with a dynamic audio axis, ORT sessions, parity, latency) and ``sweep``
(global magnitude pruning sweeps, IMP fine-tuning, per-group WER sensitivity).
"""
