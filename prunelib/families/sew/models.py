"""SEW CTC models through transformers: the exact SEW-tiny architecture, the fairseq letter
processor built offline, and one loader for names, local directories and hub ids."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCTC,
    AutoProcessor,
    SEWConfig,
    SEWForCTC,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Processor,
)

from prunelib.families.sew.data import SAMPLE_RATE

#: fairseq's ``dict.ltr.txt`` letter order behind wav2vec2-base-960h's vocab, after the 4 specials.
LETTERS = (
    "|",
    "E",
    "T",
    "A",
    "O",
    "N",
    "I",
    "H",
    "S",
    "R",
    "D",
    "L",
    "U",
    "M",
    "W",
    "C",
    "F",
    "G",
    "Y",
    "P",
    "B",
    "V",
    "K",
    "'",
    "X",
    "J",
    "Q",
    "Z",
)
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
VOCAB: tuple[str, ...] = SPECIALS + LETTERS  # index = token id; 32 entries
HUB_SEW_TINY = "asapp/sew-tiny-100k-ft-ls100h"
SEW_TINY_PARAMETERS = 40_725_311


@dataclass(frozen=True)
class SewArch:
    """The SEW hyperparameters prunelib varies; the rest are SEW-tiny's (see :func:`sew_config`)."""

    hidden_size: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    squeeze_factor: int = 2
    num_conv_pos_embeddings: int = 31
    num_conv_pos_embedding_groups: int = 16
    conv_dim: tuple[int, ...] = (64, 128, 128, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512)
    conv_stride: tuple[int, ...] = (5, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1)
    conv_kernel: tuple[int, ...] = (10, 3, 1, 3, 1, 3, 1, 3, 1, 2, 1, 2, 1)
    mask_time_prob: float = 0.05  # SpecAugment during training (HF default); 0 turns it off
    mask_time_length: int = 10
    dropout: float = 0.1  # hidden, attention, activation and final dropout alike
    initializer_range: float = (
        0.02  # std of Linear weights at init (HF default; ~1/sqrt(hidden) trains faster from scratch)
    )
    feat_extract_norm: str = "group"  # "group": norm after conv 0 only (SEW-tiny); "layer": after every conv

    def __post_init__(self) -> None:
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(f"feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}")
        if not len(self.conv_dim) == len(self.conv_stride) == len(self.conv_kernel):
            raise ValueError(
                f"conv_dim, conv_stride, conv_kernel need equal lengths, got "
                f"{len(self.conv_dim)}, {len(self.conv_stride)}, {len(self.conv_kernel)}"
            )
        if self.hidden_size % self.num_attention_heads or self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ValueError(
                f"hidden_size {self.hidden_size} must divide by num_attention_heads "
                f"{self.num_attention_heads} and num_conv_pos_embedding_groups {self.num_conv_pos_embedding_groups}"
            )

    @property
    def frame_stride(self) -> int:
        """Audio samples per CTC output frame (320 = 20 ms at 16 kHz for SEW-tiny)."""
        out = 1
        for s in self.conv_stride:
            out *= s
        return out


#: The exact architecture of asapp/sew-tiny-100k-ft-ls100h (40,725,311 parameters).
SEW_TINY = SewArch()
#: A few-thousand-parameter SEW with SEW-tiny's 320-sample frame stride and every kind of
#: structured unit (``sew-mini``: random weights; smoke tests and the family contract tests).
SEW_MINI = SewArch(
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    num_conv_pos_embeddings=7,
    num_conv_pos_embedding_groups=4,
    conv_dim=(8, 16, 32),
    conv_stride=(5, 8, 8),
    conv_kernel=(10, 8, 8),
)


def sew_config(arch: SewArch = SEW_TINY) -> SEWConfig:
    """A ``SEWConfig`` for ``arch`` with SEW-tiny's fixed choices and the 32-letter vocabulary."""
    fields: dict[str, Any] = asdict(arch)
    dropout = fields.pop("dropout")
    return SEWConfig(
        vocab_size=len(VOCAB),
        feat_extract_activation="gelu",
        conv_bias=False,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        pad_token_id=VOCAB.index("<pad>"),
        bos_token_id=VOCAB.index("<s>"),
        eos_token_id=VOCAB.index("</s>"),
        hidden_dropout=dropout,
        attention_dropout=dropout,
        activation_dropout=dropout,
        final_dropout=dropout,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
        **fields,
    )


def build_sew(arch: SewArch = SEW_TINY, seed: int = 0) -> SEWForCTC:
    """A ``SEWForCTC`` for ``arch`` with weights drawn from ``seed`` (global RNG left untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SEWForCTC(sew_config(arch))
    return model.eval()


def build_processor() -> Wav2Vec2Processor:
    """The fairseq letter tokenizer + 16 kHz feature extractor, built without network.

    The feature extractor normalises each utterance and returns no attention mask, as SEW
    checkpoints with a group-norm feature encoder expect.
    """
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps({tok: i for i, tok in enumerate(VOCAB)}), encoding="utf-8")
        tokenizer = Wav2Vec2CTCTokenizer(
            str(vocab_file),
            unk_token="<unk>",
            pad_token="<pad>",
            bos_token="<s>",
            eos_token="</s>",
            word_delimiter_token="|",
            do_lower_case=False,
        )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=False,
    )
    return Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer)


def load_pretrained(
    name_or_path: str | Path, *, local_files_only: bool = True, revision: str | None = None
) -> tuple[torch.nn.Module, Any]:
    """``AutoModelForCTC`` + ``AutoProcessor`` from a local directory or a hub id, in eval mode.

    Args:
        local_files_only: never ask the Hugging Face hub (a directory, or a hub id already in the
            local cache); ``False`` only for an id the user wrote as a hub id (``hf:org/name``).
        revision: the hub revision (branch, tag or commit) to pin, when given.

    Raises:
        OSError: the model cannot be loaded; the message names it and says what was tried.
    """
    try:
        model = AutoModelForCTC.from_pretrained(str(name_or_path), local_files_only=local_files_only, revision=revision)
        processor = AutoProcessor.from_pretrained(
            str(name_or_path), local_files_only=local_files_only, revision=revision
        )
    except (OSError, ValueError) as err:
        if local_files_only:
            raise OSError(
                f"cannot load speech model {str(name_or_path)!r}: it is not a save_pretrained directory nor in the "
                f"local Hugging Face cache, and the hub is not asked for names not written as hub ids "
                f"(write hf:org/name to download). Cause: {err}"
            ) from err
        raise OSError(
            f"cannot load speech model {str(name_or_path)!r} from the Hugging Face hub"
            f"{f' at revision {revision!r}' if revision else ''} (no network, or no such repository). Pass a "
            f"directory written by save_pretrained, or run where the hub is reachable. Cause: {err}"
        ) from err
    return model.eval(), processor
