"""Sparse execution of unstructured-pruned Linear layers, chosen per layer by measurement.

Unstructured zeros cost as much as any weight in a dense matmul. Here a pruned Linear can be
swapped for :class:`SparseLinear`, which stores the weight as ``torch.sparse_csr`` and runs
``torch.addmv`` (batch 1) or ``torch.addmm`` (larger batches). Whether that is faster depends
on density, shape, batch, threads and the CPU (x86 torch uses MKL sparse kernels, aarch64
torch its native ones), so :func:`choose_execution` *times* both per layer on this machine and
:func:`apply_execution` builds the model from that record. Choose, then apply: two steps, and
the input model is never changed.

Among CSR variants measured here (torch ``mv``/``addmv``/``addmm``/``sparse.mm``, COO,
scipy.sparse CSR) ``addmv`` was fastest at batch 1; scipy was ~1.2x slower.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from prunelib.pruning.criteria import remove_reparametrization

Force = Literal["sparse", "dense"] | None


class SparseLinear(nn.Module):
    """A Linear whose weight is a CSR tensor: ``y = x @ W.T + b`` computed as ``W @ x.T``.

    Inference only (no autograd through the CSR weight). Accepts ``(..., in_features)`` input.
    Indices are stored as int32 (~1.5x faster than int64 for these sizes, measured).
    ``threads`` pins torch's thread count around the kernel (None: leave it as set): OpenMP
    sparse kernels on a busy CPU can stall for a scheduler slice (15 ms measured with 2
    threads on 2 shared cores), while one thread finishes in microseconds. Set globally and
    restored, so do not run one model from several Python threads at once.
    """

    weight: torch.Tensor  # buffers, registered in __init__
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, threads: int | None = None) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
        if bias is not None and tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.threads = threads
        with warnings.catch_warnings():  # "sparse CSR support is in beta" is noise here
            warnings.simplefilter("ignore", UserWarning)
            csr = weight.detach().to_sparse_csr()
            csr = torch.sparse_csr_tensor(
                csr.crow_indices().to(torch.int32),
                csr.col_indices().to(torch.int32),
                csr.values(),
                csr.shape,
            )
        self.register_buffer("weight", csr)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, threads: int | None = None) -> SparseLinear:
        """The CSR twin of a plain (reparametrization removed) ``linear``."""
        return cls(linear.weight, linear.bias, threads)

    def __deepcopy__(self, memo: dict) -> SparseLinear:
        """Copy with fresh CSR storage (``copy.deepcopy`` cannot reach a CSR tensor's storage)."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy({k: v for k, v in self.__dict__.items() if k != "_buffers"}, memo))
        w = self.weight
        csr = torch.sparse_csr_tensor(w.crow_indices().clone(), w.col_indices().clone(), w.values().clone(), w.shape)
        new._buffers = {"weight": csr, "bias": copy.deepcopy(self.bias, memo)}
        return new

    @property
    def nnz(self) -> int:
        """Stored nonzero weights (the multiply-adds per input row)."""
        return int(self.weight.values().numel())

    def _matmul(self, rows: torch.Tensor) -> torch.Tensor:
        if rows.shape[0] == 1:
            v = rows[0]
            y = torch.mv(self.weight, v) if self.bias is None else torch.addmv(self.bias, self.weight, v)
            return y.unsqueeze(0)
        xt = rows.t()
        if self.bias is None:
            return torch.mm(self.weight, xt).t()
        return torch.addmm(self.bias.unsqueeze(1), self.weight, xt).t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)
        if self.threads is None or self.threads == torch.get_num_threads():
            y = self._matmul(rows)
        else:
            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                y = self._matmul(rows)
            finally:
                torch.set_num_threads(before)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}, threads={self.threads}"
        )


@dataclass(frozen=True)
class LayerChoice:
    """How one Linear runs and why: its density and the median per-call times measured."""

    name: str
    density: float  # nonzero weights / all weights of the layer
    dense_s: float  # median seconds per call, dense F.linear (nan when forced)
    sparse_s: float  # median seconds per call of the faster SparseLinear variant (nan when forced)
    sparse_threads: int | None  # threads pinned for that variant (None: the caller's setting)
    sparse: bool  # True: run as SparseLinear(threads=sparse_threads)


def _median_call_s(
    fns: Sequence[Callable[[torch.Tensor], object]], repeats: int, inner: int, x: torch.Tensor
) -> list[float]:
    """Median seconds per call ``fn(x)`` of each of ``fns``, interleaved so drift hits all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:  # warm-up
        fn(x)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(inner):
                fn(x)
            times[i].append((time.perf_counter() - start) / inner)
    return [statistics.median(t) for t in times]


def _linear_inputs(model: nn.Module, example_input: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each Linear of ``model`` sees on ``example_input``, by module name."""
    seen: dict[str, torch.Tensor] = {}

    def keeper(name: str):
        def keep(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            seen.setdefault(name, args[0].detach())

        return keep

    handles = [m.register_forward_hook(keeper(name)) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    try:
        with torch.inference_mode():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return seen


def choose_execution(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    repeats: int = 30,
    inner: int = 10,
    force: Force = None,
) -> list[LayerChoice]:
    """Decide per Linear of ``model`` whether sparse or dense runs faster on ``example_input``.

    Times dense ``F.linear`` against :class:`SparseLinear` (under the current torch thread
    count and, if that is above 1, pinned to one thread) on the input each layer really sees:
    ``repeats`` interleaved rounds of ``inner`` calls; the fastest median wins (ties go dense).
    Does not mutate ``model``. Timing makes the choice machine-dependent; ``force`` fixes it
    (tests, reproducible runs; forced sparse layers run single-threaded) and skips timing.

    Raises:
        ValueError: ``repeats``/``inner`` < 1, unknown ``force``, or a Linear that never ran.
    """
    if repeats < 1 or inner < 1:
        raise ValueError(f"repeats and inner must be >= 1, got {repeats} and {inner}")
    if force not in ("sparse", "dense", None):
        raise ValueError(f"force must be 'sparse', 'dense' or None, got {force!r}")
    plain = remove_reparametrization(model).eval()
    inputs = _linear_inputs(plain, example_input)
    choices = []
    for name, m in plain.named_modules():
        if not isinstance(m, nn.Linear):
            continue
        if name not in inputs:
            raise ValueError(f"Linear {name!r} did not run on the example input")
        density = float(m.weight.count_nonzero()) / m.weight.numel()
        if force is not None:
            choices.append(LayerChoice(name, density, math.nan, math.nan, 1, force == "sparse"))
            continue
        x = inputs[name]
        variants = [None] + ([1] if torch.get_num_threads() > 1 else [])
        candidates = [SparseLinear.from_linear(m, threads) for threads in variants]

        def dense(v: torch.Tensor, m: nn.Linear = m) -> torch.Tensor:
            return torch.nn.functional.linear(v, m.weight, m.bias)

        with torch.inference_mode():
            dense_s, *sparse_times = _median_call_s([dense, *candidates], repeats, inner, x)
        best = min(range(len(variants)), key=lambda i: sparse_times[i])
        choices.append(
            LayerChoice(name, density, dense_s, sparse_times[best], variants[best], sparse_times[best] < dense_s)
        )
    return choices


def apply_execution(model: nn.Module, choices: Sequence[LayerChoice]) -> nn.Module:
    """A plain eval copy of ``model`` with each Linear chosen sparse replaced by :class:`SparseLinear`.

    Raises:
        ValueError: a choice names a module that is not a Linear of ``model``.
    """
    plain = remove_reparametrization(model).eval()
    modules = dict(plain.named_modules())
    for choice in choices:
        if not isinstance(modules.get(choice.name), nn.Linear):
            raise ValueError(f"{choice.name!r} is not a Linear of this model")
        if not choice.sparse:
            continue
        parent_name, _, attr = choice.name.rpartition(".")
        sparse = SparseLinear.from_linear(modules[choice.name], choice.sparse_threads)
        setattr(modules[parent_name], attr, sparse)
    return plain


def to_sparse_execution(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    repeats: int = 30,
    inner: int = 10,
    force: Force = None,
) -> tuple[nn.Module, list[LayerChoice]]:
    """:func:`choose_execution` then :func:`apply_execution`: the faster model and the record."""
    choices = choose_execution(model, example_input, repeats=repeats, inner=inner, force=force)
    return apply_execution(model, choices), choices
