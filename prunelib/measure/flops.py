"""Multiply-adds of one forward pass *as it runs*: what the executed kernels must compute.

Counted with forward hooks, so only layers that really run are counted, at the shapes they
really see. Per layer, for ``rows`` input rows (batch x positions):

* ``nn.Linear`` (pruning-reparametrized or not) and int8 dynamic-quantized Linear:
  ``rows * in * out`` — a dense kernel multiplies zeros too, so unstructured pruning run
  densely saves nothing;
* :class:`~prunelib.deploy.sparse_exec.SparseLinear`: ``rows * nnz``;
* ``nn.Conv1d``, ``nn.Conv2d``, ``nn.Conv3d``: output elements (``batch * out_channels * positions``)
  ``* (in_channels / groups) * prod(kernel_size)``;
* ``nn.Embedding``/``nn.EmbeddingBag``: 0 (lookups and averaging are additions, not
  multiply-adds); activations, bias adds and pooling are likewise not counted.

A physically shrunk model simply has smaller layers. Pass a batch of one for per-sample counts.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from prunelib.deploy.sparse_exec import SparseLinear

try:  # deprecated in favour of torchao; count it while torch still ships it
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantLinear

    _DENSE_LINEARS: tuple[type, ...] = (nn.Linear, DynamicQuantLinear)
except ImportError:  # pragma: no cover - depends on the torch version
    _DENSE_LINEARS = (nn.Linear,)


def layer_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int | None:
    """Multiply-adds of one call of ``module``; None for modules this file does not count."""
    if isinstance(module, SparseLinear):
        return inputs[0].numel() // module.in_features * module.nnz
    if isinstance(module, _DENSE_LINEARS):
        return inputs[0].numel() // module.in_features * module.in_features * module.out_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        return output.numel() * per_output
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return 0
    return None


def flops_by_layer(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Multiply-adds per counted module name for one forward pass of ``model`` on ``example_input``.

    Runs ``model`` once under ``torch.inference_mode`` (hooks are removed afterwards).
    """
    counts: dict[str, int] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            macs = layer_macs(module, inputs, output)
            if macs is not None:
                counts[name] = counts.get(name, 0) + macs

        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()]
    try:
        with torch.inference_mode():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return counts


def count_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Total multiply-adds of one forward pass of ``model`` on ``example_input`` (see module doc)."""
    return sum(flops_by_layer(model, example_input).values())


def layer_costs(dense: nn.Module, pruned: nn.Module, example_input: torch.Tensor) -> pd.DataFrame:
    """Per counted layer: multiply-adds and nonzero parameters of ``dense`` against ``pruned``, and what went.

    Both are deployed models (pruning made permanent; ``pruned`` may be shrunk, with the same layer
    names). Columns: ``layer``, ``macs_dense``, ``macs_kept``, ``macs_removed``, ``params_dense``,
    ``params_kept``, ``params_removed`` (parameters of the layer itself, nonzero only), in forward order.
    """
    macs_dense, macs_kept = flops_by_layer(dense, example_input), flops_by_layer(pruned, example_input)
    modules_dense, modules_kept = dict(dense.named_modules()), dict(pruned.named_modules())

    def nonzero(module: nn.Module | None) -> int:
        return 0 if module is None else sum(int(p.count_nonzero()) for p in module.parameters(recurse=False))

    rows = []
    for name, macs in macs_dense.items():
        kept = macs_kept.get(name, 0)
        p_dense, p_kept = nonzero(modules_dense[name]), nonzero(modules_kept.get(name))
        rows.append(
            {
                "layer": name,
                "macs_dense": macs,
                "macs_kept": kept,
                "macs_removed": macs - kept,
                "params_dense": p_dense,
                "params_kept": p_kept,
                "params_removed": p_dense - p_kept,
            }
        )
    return pd.DataFrame(rows)
