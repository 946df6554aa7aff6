"""A pruned model as a compact file: effective tensors and masks out, and back into a model of the same shape."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from prunelib.pruning.criteria import refresh_masked
from prunelib.storage.compact import CompactStats, load_compact, save_compact


def _pruned(module: nn.Module) -> list[str]:
    return [n[: -len("_orig")] for n, _ in module.named_parameters(recurse=False) if n.endswith("_orig")]


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a pruned model's file holds: effective parameters, bool masks, other buffers.

    Names follow ``state_dict`` after ``prune.remove`` (``layers.0.weight``), plus
    ``layers.0.weight_mask`` for each pruned parameter. Pruned entries are stored as +0.0
    (``orig * mask`` would give -0.0 for negative ``orig``, breaking the shared support).
    ``model`` is not mutated.

    Note:
        The values of ``*_orig`` at pruned positions never reach the forward pass and are
        not kept; save with :mod:`prunelib.storage.checkpoint` where rewinding needs them.

    Raises:
        ValueError: a mask holding values other than 0 and 1.
    """
    out: dict[str, torch.Tensor] = {}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        pruned = _pruned(module)
        masks: dict[str, torch.Tensor] = {}
        for p_name, param in module.named_parameters(recurse=False):
            if p_name.endswith("_orig"):
                base = p_name[: -len("_orig")]
                mask = getattr(module, f"{base}_mask").detach()
                if not bool(((mask == 0) | (mask == 1)).all()):
                    raise ValueError(f"{prefix}{base}_mask holds values other than 0/1: {mask.unique()[:5].tolist()}")
                keep = mask != 0
                out[prefix + base] = torch.where(keep, param.detach(), torch.zeros_like(param)).contiguous()
                masks[f"{prefix}{base}_mask"] = keep.contiguous()
            else:
                out[prefix + p_name] = param.detach().contiguous()
        out.update(masks)
        for b_name, buf in module.named_buffers(recurse=False):
            if b_name.endswith("_mask") and b_name[: -len("_mask")] in pruned:
                continue
            out[prefix + b_name] = buf.detach().contiguous()
    return out


@torch.no_grad()
def load_into(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> nn.Module:
    """Restore :func:`model_tensors` output into ``model`` (mutated, returned).

    A ``*_mask`` entry re-applies pruning with ``prune.custom_from_mask`` (or overwrites the
    mask of a parameter already pruned); the effective values go to ``*_orig``.

    Raises:
        ValueError: names missing or unexpected, shapes differ, a mask is not 0/1, or the model
            is pruned where ``tensors`` has no mask.
    """
    modules = dict(model.named_modules())
    remaining = dict(tensors)

    def split(key: str) -> tuple[nn.Module | None, str]:
        mod_name, _, attr = key.rpartition(".")
        return modules.get(mod_name), attr

    def check_shape(key: str, have: torch.Tensor, want: torch.Tensor) -> None:
        if tuple(have.shape) != tuple(want.shape):
            raise ValueError(f"{key!r}: tensor has shape {tuple(have.shape)}, model expects {tuple(want.shape)}")

    for key in [k for k in tensors if k.endswith("_mask")]:
        module, attr = split(key)
        base = attr[: -len("_mask")]
        if (
            module is None
            or tensors[key].dtype != torch.bool  # model_tensors writes pruning masks as bool; others are buffers
            or not hasattr(module, base)
            or (base not in dict(module.named_parameters(recurse=False)) and base not in _pruned(module))
        ):
            continue  # not a pruning mask: handled as a buffer below
        mask = remaining.pop(key)
        check_shape(key, mask, getattr(module, base))
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{key!r} holds values other than 0/1")
        if base in _pruned(module):
            buf = getattr(module, f"{base}_mask")
            buf.copy_(mask.to(buf.dtype))
        else:
            prune.custom_from_mask(module, base, mask.to(device=getattr(module, base).device))

    missing: list[str] = []
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        pruned = _pruned(module)
        for p_name, param in module.named_parameters(recurse=False):
            base = p_name[: -len("_orig")] if p_name.endswith("_orig") else p_name
            key = prefix + base
            if key not in remaining:
                missing.append(key)
                continue
            value = remaining.pop(key)
            check_shape(key, value, param)
            param.copy_(value)
        for b_name, buf in module.named_buffers(recurse=False):
            if b_name.endswith("_mask") and b_name[: -len("_mask")] in pruned:
                if prefix + b_name not in tensors:
                    raise ValueError(f"model is pruned at {prefix + b_name[:-5]!r} but tensors hold no mask for it")
                continue
            key = prefix + b_name
            if key not in remaining:
                missing.append(key)
                continue
            value = remaining.pop(key)
            check_shape(key, value, buf)
            buf.copy_(value)
    if missing or remaining:
        raise ValueError(f"tensors do not fit the model: missing {missing[:10]}, unexpected {sorted(remaining)[:10]}")
    refresh_masked(model)
    return model


def save_model_compact(model: nn.Module, path: Path | str, precision: str = "fp32") -> CompactStats:
    """``save_compact(model_tensors(model), path, precision)``: a pruned model in one call."""
    return save_compact(model_tensors(model), path, precision)


def load_model_compact(model: nn.Module, path: Path | str) -> nn.Module:
    """``load_into(model, load_compact(path))``: restore a saved pruned model into a fresh one."""
    return load_into(model, load_compact(path))
