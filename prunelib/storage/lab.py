"""Size on disk of a model's ``state_dict``, dense and as the lab stored it sparse (COO)."""

from __future__ import annotations

import io

import torch
from torch import nn

from prunelib.pruning.criteria import remove_reparametrization


def _saved_bytes(obj: object) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer().nbytes


def dense_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with pruning made permanent (zeros stored densely)."""
    return remove_reparametrization(model).state_dict()


def disk_dense_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(state_dict)`` with the reparametrization removed."""
    return _saved_bytes(dense_state_dict(model))


def lab_sparse_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The lab's sparse storage: reparametrization removed, every 2-D weight as torch sparse COO."""
    return {k: (v.to_sparse() if v.dim() == 2 else v) for k, v in dense_state_dict(model).items()}


def disk_sparse_bytes(model: nn.Module) -> int:
    """Bytes of the lab's sparse COO state dict: the reference figure the lab reported.

    COO keeps an int64 (row, col) pair per nonzero, so it is larger than dense below ~67 % sparsity.
    """
    return _saved_bytes(lab_sparse_state_dict(model))
