"""SEW's weight-normed positional convolution, folded into a plain weight for pruning and back for saving.

The positional convolution (``sew.encoder.pos_conv_embed.conv``) carries a weight-norm
parametrization (``weight = g * v / ||v||``). It is *included* in pruning: :func:`fold_weight_norm`
replaces the parametrization by its current value, a plain ``weight`` (exact: the forward pass
computes the same tensor), so it is scored by the magnitude of the weight the forward pass uses
like every other layer and exported to ONNX as a plain weight. Pruning ``v`` instead would score
it on a different scale; leaving it out would hide 1.2 % of SEW-tiny (0.5 M of 40.7 M weights).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunelib.pruning.criteria import remove_reparametrization

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """Replace every parametrized ``weight`` (SEW's weight-normed positional conv) by its value, in place.

    The forward pass is unchanged; the module becomes a plain ``Conv1d`` with a ``weight``
    parameter. Returns ``model``. A no-op for a model without parametrizations.
    """
    # Not parametrize.remove_parametrizations: it deletes the property from the module's
    # generated class, which a deep copy shares with its original (breaking the original).
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        with torch.no_grad():
            values = {
                name: getattr(module, name).detach().clone()
                for name in cast(nn.ModuleDict, module.parametrizations).keys()
            }
        module.__class__ = module.__class__.__bases__[0]  # ParametrizedConv1d -> Conv1d
        del module.parametrizations
        params = dict(module._parameters)
        module._parameters = {**{n: nn.Parameter(v) for n, v in values.items()}, **params}  # weight first
    return model


def unfold_weight_norm(model: nn.Module) -> nn.Module:
    """Put weight norm back on SEW's positional conv (in place), as ``SEWForCTC`` builds it.

    With ``v = weight`` and ``g = ||weight||`` the forward pass is unchanged up to float
    rounding and pruned zeros stay exactly zero; the state dict then has the names
    ``from_pretrained`` expects. A no-op if already parametrized or there is no such conv.
    """
    base = getattr(model, "base_model", model)
    conv = getattr(getattr(getattr(base, "encoder", None), "pos_conv_embed", None), "conv", None)
    if conv is not None and not parametrize.is_parametrized(conv):
        torch.nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    return model


def save_speech_model(model: nn.Module, processor: Any, directory: Path | str) -> Path:
    """``save_pretrained`` a (pruned) CTC model and its processor so ``load_speech_model(directory)`` loads it.

    Pruning is made permanent (zeros stored) and weight norm restored on a copy; ``model`` is
    not changed. Returns ``directory``.
    """
    directory = Path(directory)
    plain = unfold_weight_norm(inference_copy(model))
    cast("PreTrainedModel", plain).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def prepare_model(model: nn.Module) -> nn.Module:
    """Fold weight norm (in place) and switch to eval mode: the model a sweep starts from."""
    return fold_weight_norm(model).eval()


def inference_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with pruning made permanent and weight norm folded into ``weight``."""
    dense = remove_reparametrization(model) if _has_pruning(model) else copy.deepcopy(model)
    return fold_weight_norm(dense).eval()


def _has_pruning(model: nn.Module) -> bool:
    return any(name.endswith("_mask") for name, _ in model.named_buffers())
