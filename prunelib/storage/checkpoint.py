"""Pruned-model checkpoints in safetensors: masks included, and loading never unpickles code."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import prune

from prunelib.fileio import write_atomic
from prunelib.pruning.criteria import refresh_masked


def save_checkpoint(model: nn.Module, path: Path | str, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model.state_dict()`` (``*_orig`` and ``*_mask`` where pruned) to ``path`` atomically."""
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return write_atomic(path, lambda p: save_file(tensors, str(p), metadata=metadata or {}))


def read_tensors(path: Path | str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a readable safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({exc})") from None


def load_checkpoint(model: nn.Module, path: Path | str) -> nn.Module:
    """Load a checkpoint written by :func:`save_checkpoint` into a fresh ``model`` of the same shape.

    Masks are re-applied with ``prune.custom_from_mask`` before the weights are loaded.

    Raises:
        ValueError: the file does not fit ``model`` (names or shapes differ).
    """
    tensors = read_tensors(path)
    modules = dict(model.named_modules())
    for key, mask in tensors.items():
        if not key.endswith("_mask"):
            continue
        mod_name, _, p_name = key[: -len("_mask")].rpartition(".")
        module = modules.get(mod_name)
        if module is None or not hasattr(module, p_name):
            raise ValueError(f"{path}: mask {key!r} names no parameter of this model")
        if tuple(getattr(module, p_name).shape) != tuple(mask.shape):
            raise ValueError(f"{path}: mask {key!r} has shape {tuple(mask.shape)}, the model's differs")
        if f"{p_name}_mask" not in dict(module.named_buffers(recurse=False)):
            prune.custom_from_mask(module, p_name, mask)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0:2]
        raise ValueError(f"{path}: checkpoint does not fit this model: {' '.join(first)}") from None
    refresh_masked(model)  # the cached ``weight`` still holds the fresh model's values
    return model.eval()
