"""Train a small SEW CTC model on FSDD digit strings, seeded and cached on disk by config hash."""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from filelock import FileLock
from torch import nn

import prunelib
from prunelib.config import config_key
from prunelib.families.sew.data import (
    FsddConfig,
    dataset_folder,
    default_data_root,
    list_fsdd,
    load_clips,
    sample_utterance,
    split_fsdd,
)
from prunelib.families.sew.models import SewArch, build_processor, build_sew, load_pretrained
from prunelib.fingerprint import code_fingerprint, file_sha256
from prunelib.progress import progress
from prunelib.storage import entries

if TYPE_CHECKING:
    from transformers import PreTrainedModel

CACHE_ENV = "PRUNELIB_CACHE_DIR"
VERSION_PACKAGES = ("torch", "transformers", "numpy", "scipy", "soundfile")
#: What a speech cache entry must hold (its manifest lists and hashes these and the rest).
SPEECH_FILES = ("config.json", "model.safetensors")

#: The small SEW trained on FSDD. SEW-tiny's layout (group-norm conv encoder, squeeze 2,
#: post-LN transformer, upsampling CTC head) shrunk to fit a few minutes of CPU training:
#: three strided convs to 50 frames/s plus two stride-1 convs (≈100 ms receptive field, which
#: the one transformer layer cannot learn fast enough from scratch), and Linear weights drawn
#: with std ~1/sqrt(hidden) instead of HF's 0.02, which otherwise stalls CTC on the
#: all-blank plateau. The transformer is wide (256, FFN 1024): it costs almost nothing next to
#: the conv encoder (same seconds per step as width 128) but escapes the plateau sooner and
#: spells the digits right sooner (3000 steps: test WER 0.22 vs 0.31 at width 128; a second
#: layer or a 3x higher learning rate stalled on the plateau instead).
SEW_FSDD = SewArch(
    hidden_size=256,
    num_hidden_layers=1,
    num_attention_heads=4,
    intermediate_size=1024,
    squeeze_factor=2,
    num_conv_pos_embeddings=15,
    num_conv_pos_embedding_groups=8,
    conv_dim=(32, 64, 128, 128, 128),
    conv_stride=(10, 4, 8, 1, 1),
    conv_kernel=(20, 8, 8, 5, 5),
    mask_time_prob=0.0,
    dropout=0.0,
    initializer_range=0.0625,  # 1/sqrt(256)
)


@dataclass(frozen=True)
class SpeechTrainConfig:
    """Everything that determines the trained weights; its hash names the cache directory."""

    arch: SewArch = SEW_FSDD
    data: FsddConfig = field(default_factory=FsddConfig)
    steps: int = 6000  # 2 cores, wall incl. data loading: WER 0.072 in 541 s (5600 steps: 0.101; 6400: 0.057 in 624 s)
    batch_size: int = 8  # utterances per step, each 1-5 digits
    lr: float = 1e-3  # AdamW peak learning rate
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 0
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global gradient norm
    curriculum_steps: int = 0  # the longest utterance grows from 1 digit to data.max_digits over these steps
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0 or self.warmup_steps < 0 or self.grad_clip <= 0:
            raise ValueError(f"invalid speech training config: {self}")


def default_cache_dir() -> Path:
    """``$PRUNELIB_CACHE_DIR`` if set, else ``~/.cache/prunelib``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prunelib"


def library_versions() -> dict[str, str]:
    """Versions that can change trained weights; part of the cache key."""
    versions = {"prunelib": prunelib.__version__}
    for name in VERSION_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def fsdd_fingerprint(fsdd_folder: Path) -> str:
    """A hash of the recordings' names and contents (sha256 of each file), so different data never shares a cache."""
    h = hashlib.sha256()
    for rec in list_fsdd(fsdd_folder):
        h.update(f"{rec.path.name}:{file_sha256(rec.path)};".encode())
    return h.hexdigest()[:16]


def cache_path(cfg: SpeechTrainConfig, fsdd_folder: Path, cache_dir: Path | str | None = None) -> Path:
    """``<cache>/speech/sew-fsdd-<hash>``: the hash covers ``cfg``, library versions, prunelib's code and the data."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    versions = {**library_versions(), "code": code_fingerprint()}
    key = config_key(cfg, {"fsdd": fsdd_fingerprint(fsdd_folder)}, versions=versions)
    return root / "speech" / f"sew-fsdd-{key}"


def normalise_batch(audio: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per row, exactly as ``Wav2Vec2FeatureExtractor`` normalises."""
    mean = audio.mean(dim=1, keepdim=True)
    var = audio.var(dim=1, keepdim=True, unbiased=False)
    return (audio - mean) / torch.sqrt(var + 1e-7)


def max_digits_at(step: int, cfg: SpeechTrainConfig) -> int:
    """The curriculum: most digits an utterance may have at ``step`` (short first, CTC aligns faster)."""
    if cfg.curriculum_steps <= 0 or step >= cfg.curriculum_steps:
        return cfg.data.max_digits
    grown = 1 + (cfg.data.max_digits - 1) * step // cfg.curriculum_steps
    return max(cfg.data.min_digits, grown)


def make_batch(
    clips: list[tuple[int, np.ndarray]],
    tokenizer: Any,
    rng: np.random.Generator,
    cfg: SpeechTrainConfig,
    max_digits: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_values, labels)`` for one step: random utterances, equal length without masks.

    All utterances of a batch have the same number of digits (drawn per batch), which keeps
    the padding, and so the wasted compute, small.
    Shorter utterances are placed at a random offset inside the longest one's length with
    silence around them (not zero-padded after normalisation), so the group-norm feature
    encoder sees what it sees at test time: one whole utterance, normalised as a whole.
    Labels are padded with -100, which the CTC loss ignores.
    """
    top = cfg.data.max_digits if max_digits is None else max_digits
    num_digits = int(rng.integers(cfg.data.min_digits, top + 1))
    utts = [sample_utterance(clips, rng, cfg.data, num_digits) for _ in range(cfg.batch_size)]
    length = max(len(a) for a, _ in utts)
    audio = np.zeros((len(utts), length), np.float32)
    for row, (a, _) in enumerate(utts):
        start = int(rng.integers(0, length - len(a) + 1))
        audio[row, start : start + len(a)] = a
    ids = [tokenizer(text).input_ids for _, text in utts]
    labels = torch.full((len(ids), max(map(len, ids))), -100, dtype=torch.long)
    for row, seq in enumerate(ids):
        labels[row, : len(seq)] = torch.tensor(seq)
    return normalise_batch(torch.from_numpy(audio)), labels


def lr_factor(step: int, cfg: SpeechTrainConfig) -> float:
    """Linear warm-up over ``cfg.warmup_steps``, then cosine decay to 0 at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))


def train_ctc(
    model: nn.Module,
    processor: Any,
    clips: list[tuple[int, np.ndarray]],
    cfg: SpeechTrainConfig,
    desc: str = "train sew-fsdd",
) -> list[float]:
    """Train ``model`` in place with CTC on random FSDD utterances; returns the loss per step.

    Batches, dropout and SpecAugment masks are all drawn from ``cfg.seed``, so the same
    call gives the same weights (on the same thread count). Global RNG states are restored.
    """
    if not clips:
        raise ValueError("train_ctc needs at least one clip")
    rng = np.random.default_rng([cfg.seed, 0xC7C])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    losses: list[float] = []
    np_state = np.random.get_state()  # HF draws SpecAugment masks from numpy's global RNG
    # transformers' feature encoder marks the raw audio as requiring grad in training; nothing
    # needs d(loss)/d(audio), and skipping it saves ~20 % a step (parameter gradients unchanged).
    encoder: Any = getattr(getattr(model, "sew", None), "feature_extractor", None)
    encoder_flag = getattr(encoder, "_requires_grad", None)
    if encoder_flag is not None:
        encoder._requires_grad = False
    try:
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            np.random.seed(cfg.seed)
            model.train()
            for step in progress(range(cfg.steps), desc=desc, total=cfg.steps):
                inputs, labels = make_batch(clips, processor.tokenizer, rng, cfg, max_digits_at(step, cfg))
                opt.zero_grad(set_to_none=True)
                loss = model(input_values=inputs, labels=labels).loss
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
    finally:
        np.random.set_state(np_state)
        if encoder_flag is not None:
            encoder._requires_grad = encoder_flag
        model.eval()
    return losses


def train_fsdd_model(cfg: SpeechTrainConfig, data_root: Path | str) -> tuple[nn.Module, Any, list[float]]:
    """Build ``cfg.arch`` from ``cfg.seed`` and train it on the FSDD train split (no cache).

    Returns:
        ``(model, processor, losses)``; the model is in eval mode.
    """
    recordings = split_fsdd(list_fsdd(dataset_folder(data_root, "fsdd")), cfg.data)["train"]
    clips = load_clips(recordings)
    model, processor = build_sew(cfg.arch, cfg.seed), build_processor()
    losses = train_ctc(model, processor, clips, cfg)
    return model, processor, losses


def trained_fsdd_model(
    cfg: SpeechTrainConfig = SpeechTrainConfig(),
    data_root: Path | str | None = None,
    cache_dir: Path | str | None = None,
) -> tuple[nn.Module, Any]:
    """The FSDD model for ``cfg``: loaded from the cache if trained before, else trained and saved.

    The cache entry is written to a temporary directory and renamed into place, so a crash
    never leaves a half-saved model that a later run would trust; its manifest holds every
    file's sha256, checked here: a corrupt entry is moved aside (with a warning) and retrained.

    Raises:
        FileNotFoundError: no data root (pass ``data_root`` or set ``$PRUNELIB_DATA_DIR``) or no
            ``fsdd/`` in it.
    """
    root = Path(data_root) if data_root is not None else default_data_root()
    if root is None:
        raise FileNotFoundError("sew-fsdd needs FSDD: pass data_root or set PRUNELIB_DATA_DIR (a folder holding fsdd/)")
    fsdd = dataset_folder(root, "fsdd")
    target = cache_path(cfg, fsdd, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{entry_key(target)}.lock")):  # one process trains, the others wait
        if not entries.valid_or_aside(target, SPEECH_FILES):
            model, processor, _ = train_fsdd_model(cfg, fsdd)
            save_pretrained_atomic(model, processor, target)
    return load_pretrained(target)


def entry_key(target: Path) -> str:
    """The hash part of ``sew-fsdd-<hash>``: names its lock and staging folder as the sweep cache does."""
    return target.name.rsplit("-", 1)[-1]


def save_pretrained_atomic(model: nn.Module, processor: Any, target: Path) -> Path:
    """``save_pretrained`` model and processor into ``target`` via a sibling staging folder + rename.

    The staging folder ``.building-<hash>-<random>`` records its owner, so a save killed half-way
    shows as orphaned in ``python -m prunelib cache list`` and ``cache clean`` removes it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{entries.STAGING}{entry_key(target)}-"))
    try:
        entries.write_owner(tmp)
        cast("PreTrainedModel", model).save_pretrained(tmp)
        processor.save_pretrained(tmp)
        entries.finish(tmp, {"kind": "speech", "label": target.name.rsplit("-", 1)[0]})
        try:
            os.replace(tmp, target)
        except OSError:
            if entries.problem(target, SPEECH_FILES) is not None:  # not a concurrent writer finishing first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
