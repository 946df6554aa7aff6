"""ExecuTorch with the XNNPACK backend as a deployment runtime: ``.pte`` bytes, a runner, parity.

A model goes through ``torch.export`` on one example input, is lowered with
``to_edge_transform_and_lower`` and the ``XnnpackPartitioner`` (every supported node runs in
XNNPACK, the ARM/x86 kernel library), and is serialized to a ``.pte`` program. int8 uses the
XNNPACK quantizer through the PT2E flow: export, ``prepare_pt2e``, calibration on given
inputs, ``convert_pt2e``, then the same lowering. The program is run by ``executorch.runtime``.

ExecuTorch is an optional extra (``pip install prunelib[executorch]``); nothing here imports it
before a function needs it, so importing this module never fails. :func:`executorch_available`
and :data:`SKIP_REASON` let tests and the bench skip cleanly.

Threads: XNNPACK runs on ExecuTorch's process-wide thread pool, resized by
:func:`set_executorch_threads` (``_unsafe_reset_threadpool`` of the pybindings; "unsafe" because
it must not race a running method). The pool is shared by every loaded program.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

#: Skip reason when ExecuTorch is absent.
SKIP_REASON = "executorch not installed: pip install prunelib[executorch]"

#: Precisions :func:`to_pte` produces.
PRECISIONS: tuple[str, ...] = ("fp32", "int8")

Runner = Callable[[torch.Tensor], torch.Tensor]

#: ExecuTorch ScalarType codes (as ``TensorInfo.dtype()`` returns them) of the inputs handled here.
_SCALAR_TYPES: dict[int, torch.dtype] = {
    0: torch.uint8,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.int64,
    5: torch.float16,
    6: torch.float32,
    7: torch.float64,
    11: torch.bool,
}


@dataclass(frozen=True)
class PteConfig:
    """How a model is lowered.

    Args:
        precision: ``"fp32"`` or ``"int8"`` (XNNPACK quantizer, PT2E, static activations).
        per_channel: int8 weights per output channel (XNNPACK's recommended setting).
    """

    precision: str = "fp32"
    per_channel: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass(frozen=True)
class PteParity:
    """Largest absolute difference between ExecuTorch and PyTorch outputs, and its bound."""

    max_abs_diff: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol


def executorch_available() -> bool:
    """True when ``executorch`` and its runtime bindings can be found (nothing is imported)."""
    try:
        return (
            importlib.util.find_spec("executorch") is not None
            and importlib.util.find_spec("executorch.runtime") is not None
        )
    except (ImportError, ValueError):
        return False


def require_executorch() -> None:
    """Raise ``ImportError`` with :data:`SKIP_REASON` when ExecuTorch is not installed."""
    if not executorch_available():
        raise ImportError(SKIP_REASON)


def _check_example(example: object) -> torch.Tensor:
    if not isinstance(example, torch.Tensor):
        raise ValueError(f"example must be a torch.Tensor, got {type(example).__name__}")  # noqa: TRY004
    if example.dim() == 0 or example.numel() == 0:
        raise ValueError(f"example must be a non-empty batch, got shape {tuple(example.shape)}")
    if example.is_complex() or example.dtype == torch.bool:
        raise ValueError(f"example must be a real tensor (float, or integer ids), got {example.dtype}")
    return example


def _plain(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` without pruning reparametrizations (masks made permanent)."""
    from prunelib.pruning.criteria import remove_reparametrization

    return remove_reparametrization(model).eval()


def _lower(exported) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    return bytes(edge.to_executorch().buffer)


def _quantize(
    model: nn.Module, example: torch.Tensor, calibration: Sequence[torch.Tensor], per_channel: bool
) -> nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    graph = torch.export.export(model, (example,)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(_check_example(batch))
    return convert_pt2e(prepared)


def to_pte(
    model: nn.Module,
    example: torch.Tensor,
    config: PteConfig = PteConfig(),
    calibration: Sequence[torch.Tensor] | None = None,
) -> bytes:
    """Lower ``model`` for the XNNPACK backend and return the ``.pte`` program bytes.

    ``model`` is not mutated (a copy without pruning hooks is exported). The program's input
    shape is ``example``'s (static shapes: export one program per batch size).

    Args:
        model: the network; pruned weights are exported as their zeros.
        example: one input batch, floating point.
        config: precision and int8 options.
        calibration: int8 only: batches to observe activation ranges on (defaults to
            ``[example]``; pass real data for a meaningful int8 model).

    Raises:
        ImportError: ExecuTorch is not installed (:data:`SKIP_REASON`).
        ValueError: ``example`` or a calibration batch is not a non-empty float tensor, or
            ``calibration`` is given for fp32.
    """
    example = _check_example(example)
    if config.precision == "fp32" and calibration is not None:
        raise ValueError("calibration is only used for int8, got batches for fp32")
    require_executorch()
    plain = _plain(model)
    with torch.no_grad():
        if config.precision == "int8":
            batches = list(calibration) if calibration is not None else [example]
            if not batches:
                raise ValueError("calibration must hold at least one batch, got none")
            plain = _quantize(plain, example, batches, config.per_channel)
        exported = torch.export.export(plain, (example,))
    return _lower(exported)


def set_executorch_threads(threads: int) -> int:
    """Resize ExecuTorch's thread pool (used by XNNPACK) to ``threads``; returns the new count.

    Call it between runs, never while a method executes (the pool is reset, not drained).

    Raises:
        ValueError: ``threads`` < 1.
        ImportError: ExecuTorch is not installed.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    require_executorch()
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(int(threads))
    return int(portable_lib._threadpool_get_thread_count())


def pte_runner(pte: bytes, threads: int | None = None) -> Runner:
    """A callable running the ``forward`` method of program ``pte`` on one tensor.

    The input must have the shape and dtype the program was exported with; anything else
    raises ``ValueError`` naming both (ExecuTorch's own error is a bare status code).

    Args:
        pte: program bytes from :func:`to_pte`.
        threads: resize the thread pool first (see :func:`set_executorch_threads`).

    Raises:
        ValueError: ``pte`` is empty or not a loadable program.
        ImportError: ExecuTorch is not installed.
    """
    if not isinstance(pte, (bytes, bytearray)) or not pte:
        raise ValueError(
            f"pte must be non-empty program bytes, got {type(pte).__name__} of length "
            f"{len(pte) if isinstance(pte, (bytes, bytearray)) else 'n/a'}"
        )
    require_executorch()
    from executorch.runtime import Runtime

    if threads is not None:
        set_executorch_threads(threads)
    try:
        program = Runtime.get().load_program(bytes(pte))
        method = program.load_method("forward")
    except Exception as exc:  # the bindings raise RuntimeError with a status code
        raise ValueError(f"not a loadable ExecuTorch program ({len(pte)} bytes): {exc}") from exc
    if method is None:
        raise ValueError("the program has no 'forward' method")
    meta = method.metadata.input_tensor_meta(0)
    want_shape = tuple(meta.sizes())
    want_dtype = _SCALAR_TYPES.get(int(meta.dtype()))

    def run(x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"input must be a torch.Tensor, got {type(x).__name__}")  # noqa: TRY004
        if tuple(x.shape) != want_shape:
            raise ValueError(
                f"input shape {tuple(x.shape)} does not match the program's {want_shape} "
                "(a .pte has static shapes: export one per batch size)"
            )
        if want_dtype is not None and x.dtype != want_dtype:
            raise ValueError(f"input dtype {x.dtype} does not match the program's {want_dtype}")
        return method.execute([x.contiguous()])[0]

    run.program = program  # type: ignore[attr-defined]  # the method runs inside it: keep it alive as long as run
    return run


def int8_atol(reference: torch.Tensor) -> float:
    """Tolerance for int8 against fp32: 5 % of the reference's largest magnitude (at least 1e-3).

    PT2E int8 quantizes every activation to 256 levels; on the test nets the measured error
    was 0.4-1 % of it (tests/deploy), so 5 % catches a broken lowering without flaking.
    """
    return max(0.05 * float(reference.abs().max()), 1e-3)


def check_pte_parity(model: nn.Module, pte: bytes, inputs: torch.Tensor, atol: float | None = None) -> PteParity:
    """Run ``pte`` and ``model`` (fp32 PyTorch) on ``inputs`` and compare.

    Args:
        model: the PyTorch model the program was lowered from (pruning hooks allowed).
        pte: program bytes from :func:`to_pte`.
        inputs: a batch of the program's input shape.
        atol: bound on the largest absolute difference; ``None`` means 1e-5, the fp32 bound
            (XNNPACK sums in another order). For an int8 program pass :func:`int8_atol` of
            the fp32 output.

    Returns:
        The difference and bound; ``.ok`` says whether the program agrees.
    """
    with torch.no_grad():
        expected = _plain(model)(inputs)
    got = pte_runner(pte)(inputs)
    diff = float((got - expected).abs().max())
    return PteParity(diff, 1e-5 if atol is None else atol)
