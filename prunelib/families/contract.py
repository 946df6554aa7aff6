"""The model-family contract: everything prunelib needs to know about a model, in one place.

A *family* is what a user writes to bring a model, its data and its metric to prunelib. It
builds the model from a seed, loads its data splits from a data dir, trains and retrains it with
its own frozen hyper-parameters, evaluates it into named metrics (one primary :class:`Metric`
with its direction), gives example inputs for timing, and says which tensors are prunable.
Optionally it removes whole units (structured pruning) and shrinks a model physically; it may
override ONNX export and deployment. Every stage of prunelib (schedules, rewinding, sparsity,
sizes, compact format, precisions, runtimes, cache, sensitivity, knee, report, compare) talks to
a model only through this class; it never looks at the concrete model type.

A family that cannot do something raises :class:`Unsupported` with the reason (or leaves it out
of :attr:`Family.runtimes` / :attr:`Family.precisions`); the stage then skips that combination
and prints the reason. Register a family through the ``prunelib.families`` entry point group or
load it with ``--family module:callable`` (:mod:`prunelib.families.registry`).

The smallest family (see ``examples/`` and the README's "Bring your own model")::

    class Digits(Family):
        name = "digits"
        metric = Metric("accuracy", higher_is_better=True)
        datasets = ("digits",)
        models = ("tiny-cnn",)

        def hparams(self, dataset, quick): return Hyper(epochs=2 if quick else 10)
        def load_data(self, dataset, model, data_dir, seed, quick): ...
        def build(self, model, data, seed): ...
        def train(self, model, data, hparams, seed, phase): ...
        def evaluate(self, model, data): return {"accuracy": ...}
        def example_inputs(self, data, batch): return data.test_x[:batch]
"""

from __future__ import annotations

import copy
import inspect
import io
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from prunelib.errors import Unsupported
from prunelib.fingerprint import fingerprint
from prunelib.measure.targets import Hold, Target
from prunelib.pruning.criteria import remove_reparametrization
from prunelib.pruning.structured import (
    DEFAULT_RULE,
    Structure,
    UnitRule,
    prune_units,
    remaining,
    removed_fraction,
)
from prunelib.pruning.structured import shrink as shrink_units
from prunelib.pruning.structured import unit_counts as count_units

Params = list[tuple[nn.Module, str]]
Phase = Literal["dense", "retrain"]
Runner = Callable[[torch.Tensor], Any]

#: Every runtime and precision prunelib knows (a family supports a subset).
ALL_RUNTIMES = ("torch", "onnxruntime", "torch-sparse", "executorch")
ALL_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Metric:
    """A family's primary metric: its results column name, direction and range.

    ``name`` is the column in ``results.csv`` and the key in ``extra_info`` (``accuracy``,
    ``wer``, or the user's own); ``low``/``high`` bound every valid value (``math.inf`` allowed).
    """

    name: str
    higher_is_better: bool
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"metric name must be an identifier, got {self.name!r}")
        if not self.low < self.high:
            raise ValueError(f"metric {self.name}: low {self.low} must be below high {self.high}")

    def loss(self, dense: float, value: float) -> float:
        """How much worse ``value`` is than ``dense`` (positive = worse), in the metric's units."""
        return dense - value if self.higher_is_better else value - dense

    def in_range(self, value: float) -> bool:
        """Whether ``value`` is a valid reading of this metric."""
        return not math.isnan(value) and self.low <= value <= self.high


class Family(ABC):
    """Base class of every model family; subclass it and fill in the abstract methods.

    Class attributes:
        name: registry name (``--family NAME``).
        metric: the primary :class:`Metric`.
        datasets: data sets this family reads (``--dataset``); the first is the default.
        token_datasets: those of :attr:`datasets` made of token sequences, whose length
            ``--max-tokens`` caps: :meth:`load_data` then takes a keyword ``max_tokens``.
        models: model presets (the first is the default); :meth:`check_model` may accept more.
        runtimes / precisions: what its models can be deployed on (subsets of :data:`ALL_RUNTIMES`,
            :data:`ALL_PRECISIONS`). ``executorch`` lowers the deployed module itself with
            ``torch.export`` (its forward must take the example tensor and return one tensor).
        batched: whether example inputs have a meaningful batch axis (timed at ``--prune-batches``);
            ``False`` times one fixed example (e.g. a clip of audio).
        amount / iterations: the lab's schedule for this family (fraction of the remaining
            weights per step, steps); ``quick_amount`` / ``quick_iterations`` for ``--prune-quick``.
        parity_atol: how far ONNX Runtime's fp32 outputs may sit from PyTorch's.
        floors: dense metric each (dataset, model) must reach, ``(full, quick)``; a bench gate.
        smoke: the (dataset, model) small enough for the contract tests (default: the first of each).
        lottery: (dataset, model) pairs on which the lottery-ticket result must hold (IMP with
            rewinding keeps the metric where one-shot pruning collapses); a bench gate, off elsewhere.
        bench_methods: the methods ``pytest bench/`` runs when ``--prune-methods`` is not given
            (empty: the ini default, the lab's four).
        holds: per (dataset, model), claims the bench gates check on the metric (:class:`Hold`).
        speedup_pair / speedup_targets: the (dataset, model) whose dense and one-step pruned models
            ``bench/test_speedups.py`` times, and the ratios they must reach (:class:`Target`).
        timing: ``(warmup calls, timed rounds)`` for a model whose one call takes seconds (a whole
            transcription), replacing the bench's and the CLI's defaults (``None``: theirs).
        int8: what int8 means for this family's models: ``"dynamic"`` (Linear weights, torch's and
            ONNX Runtime's dynamic quantization) or ``"static"`` (ONNX Runtime QDQ, per channel,
            calibrated on :meth:`calibration_inputs`: what a convolutional model needs).
    """

    name: ClassVar[str]
    metric: ClassVar[Metric]
    datasets: ClassVar[tuple[str, ...]]
    token_datasets: ClassVar[tuple[str, ...]] = ()
    models: ClassVar[tuple[str, ...]]
    runtimes: ClassVar[tuple[str, ...]] = ("torch", "onnxruntime", "executorch")
    precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8")
    batched: ClassVar[bool] = True
    amount: ClassVar[float] = 0.33
    iterations: ClassVar[int] = 10
    quick_amount: ClassVar[float] = 0.5
    quick_iterations: ClassVar[int] = 5
    parity_atol: ClassVar[float] = 1e-4
    floors: ClassVar[dict[tuple[str, str], tuple[float, float]]] = {}
    smoke: ClassVar[tuple[str, str] | None] = None
    lottery: ClassVar[tuple[tuple[str, str], ...]] = ()
    bench_methods: ClassVar[tuple[str, ...]] = ()
    holds: ClassVar[dict[tuple[str, str], tuple[Hold, ...]]] = {}
    speedup_pair: ClassVar[tuple[str, str] | None] = None
    speedup_targets: ClassVar[tuple[Target, ...]] = ()
    int8: ClassVar[str] = "dynamic"
    timing: ClassVar[tuple[int, int] | None] = None

    # ------------------------------------------------------------------ data and model

    @abstractmethod
    def hparams(self, dataset: str, quick: bool) -> Any:
        """The frozen dataclass of training hyper-parameters for ``dataset`` (shorter when ``quick``)."""

    @abstractmethod
    def load_data(self, dataset: str, model: str, data_dir: Path | None, seed: int, quick: bool) -> Any:
        """The data splits (any object the family's own methods understand), seeded by ``seed``.

        ``data_dir`` is the data root (one folder per data set) or ``None`` for embedded data. For
        a data set in :attr:`token_datasets`, a user's ``--max-tokens`` arrives as the keyword
        ``max_tokens`` (the family's own cap otherwise).
        Raises ``FileNotFoundError``/``ValueError`` naming the missing or malformed file.
        """

    @abstractmethod
    def build(self, model: str, data: Any, seed: int) -> nn.Module:
        """The model ``model`` with weights drawn from ``seed`` (or loaded pretrained), in eval mode.

        Its state right after this call is what IMP with rewinding goes back to.
        """

    @abstractmethod
    def train(self, model: nn.Module, data: Any, hparams: Any, seed: int, phase: Phase) -> None:
        """Train ``model`` in place: ``phase="dense"`` once before pruning, ``"retrain"`` after each step.

        Must keep pruned weights at zero (train through ``torch.nn.utils.prune``'s reparametrization)
        and be deterministic given ``seed``. A pretrained family may make ``"dense"`` a no-op.
        """

    @abstractmethod
    def evaluate(self, model: nn.Module, data: Any) -> dict[str, float]:
        """Named metrics of ``model`` on the test split; must include :attr:`metric`'s name."""

    @abstractmethod
    def example_inputs(self, data: Any, batch: int) -> torch.Tensor:
        """Inputs to time and export on: ``batch`` rows (or one fixed example when not :attr:`batched`)."""

    def example_seconds(self, data: Any) -> float | None:
        """Seconds of audio :meth:`example_inputs` holds (its latency over them is the real-time factor); ``None``
        when the input is not audio."""
        return None

    def train_epochs(self, model: nn.Module, data: Any, hparams: Any, seed: int, epochs: int) -> None:
        """Train ``model`` in place through exactly the first ``epochs`` epochs of its ``"dense"`` run.

        Late rewinding's target (``imp-late-rewind``). Optional: a family whose schedule depends on
        the run's length (a cosine over all epochs) leaves it out; the method is then skipped.
        """
        raise Unsupported(f"family {self.name!r} cannot stop its dense training at an epoch (late rewinding)")

    @property
    def late_rewind(self) -> bool:  # whether train_epochs is given (imp-late-rewind runs)
        return type(self).train_epochs is not Family.train_epochs

    def pretrained(self, model: str) -> bool:
        """Whether ``model`` is built from pretrained weights (the seed then changes nothing in them)."""
        return False

    def check_model(self, model: str) -> None:
        """Raise ``ValueError`` naming the known models unless ``model`` is one this family builds."""
        if model not in self.models:
            raise ValueError(f"family {self.name!r} has no model {model!r}; choose one of {list(self.models)}")

    def check_dataset(self, dataset: str) -> None:
        """Raise ``ValueError`` naming the known data sets unless ``dataset`` is one of :attr:`datasets`."""
        if dataset not in self.datasets:
            raise ValueError(f"family {self.name!r} has no dataset {dataset!r}; choose one of {list(self.datasets)}")

    def subset(self, data: Any, train: int | None, test: int | None, seed: int) -> Any:
        """``data`` with at most ``train`` training and ``test`` evaluation examples (seeded), for quick runs.

        Optional (``--train-subset``, ``--eval-count``); ``None`` keeps a split whole.
        """
        raise Unsupported(f"family {self.name!r} cannot take a subset of its data")

    def data_fingerprint(self, data: Any) -> str:
        """A content hash of ``data`` for the cache key (default: :func:`fingerprint`)."""
        return fingerprint(data)

    def sources(self) -> list[Path]:
        """Source files or packages whose content decides what this family's checkpoints hold.

        Default: the package folder of the module defining the family's class (a single module
        when it is top level). Part of the cache key, with every file of prunelib itself.
        """
        module = inspect.getmodule(type(self))
        path = Path(inspect.getfile(type(self))).resolve()
        if module is not None and module.__name__.startswith("prunelib."):
            return [path.parent]
        return [path.parent if (path.parent / "__init__.py").exists() else path]

    # ------------------------------------------------------------------ pruning

    def prunable(self, model: nn.Module, embeddings: bool = False) -> Params:
        """``(module, "weight")`` pairs unstructured pruning may touch.

        Default: the weight of every Linear and Conv layer, plus every Embedding when
        ``embeddings``; biases and norms stay dense, as in the lab.
        """
        kinds: tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
        if embeddings:
            kinds += (nn.Embedding,)
        return [(m, "weight") for m in model.modules() if isinstance(m, kinds)]

    def structure(self, model: nn.Module) -> Structure:
        """How the structured engine (Torch-Pruning) traces ``model``: an example input and the layers kept whole.

        Giving this is all a family needs for structured pruning: the default
        :meth:`structured_step`, :meth:`unit_counts` (hence :meth:`units_remaining` and :meth:`unit_sparsity`) and :meth:`shrink`
        run :mod:`prunelib.pruning.structured` on it.
        """
        raise Unsupported(f"family {self.name!r} does not support structured pruning")

    def structured_step(self, model: nn.Module, amount: float, seed: int, rule: UnitRule = DEFAULT_RULE) -> None:
        """Mask ``amount`` of the remaining units (channels, neurons) by ``rule``, in place."""
        prune_units(model, self.structure(model), amount, rule)

    def unit_counts(self, model: nn.Module) -> dict[str, tuple[int, int]]:
        """``(alive, total)`` units per structured group, by the group's root layer."""
        return count_units(model, self.structure(model))

    def units_remaining(self, model: nn.Module) -> dict[str, int]:
        """Units still alive per structured group (for the schedule gate), from :meth:`unit_counts`."""
        return remaining(self.unit_counts(model))

    def unit_sparsity(self, model: nn.Module) -> float:
        """Fraction of structured units removed, from :meth:`unit_counts`; NaN when the family has no units."""
        try:
            return removed_fraction(self.unit_counts(model))
        except Unsupported:
            return math.nan

    def shrink(self, model: nn.Module) -> nn.Module:
        """A physically smaller copy of a structured-pruned ``model`` with the same outputs."""
        return shrink_units(model, self.structure(model))

    @property
    def structured(self) -> bool:
        """Whether structured pruning works: :meth:`structure` given, or the structured hooks overridden."""
        cls = type(self)
        hooks = ("structured_step", "unit_counts", "shrink")
        return cls.structure is not Family.structure or all(getattr(cls, n) is not getattr(Family, n) for n in hooks)

    def sensitivity_groups(self, model: nn.Module) -> dict[str, Params]:
        """Groups pruned one at a time by the sensitivity analysis (default: each prunable layer)."""
        names = {id(m): n for n, m in model.named_modules()}
        return {names[id(m)] or "model": [(m, p)] for m, p in self.prunable(model)}

    # ------------------------------------------------------------------ deployment

    def prepare(self, model: nn.Module) -> nn.Module:
        """Make a freshly built or loaded model ready to prune (in place; default: eval mode)."""
        return model.eval()

    def deploy(self, model: nn.Module, structured: bool) -> nn.Module:
        """The model as it ships, fp32, in eval mode: a new module, ``model`` unchanged.

        Default: pruning made permanent, then :meth:`shrink` when ``structured``.
        """
        plain = remove_reparametrization(model)
        return (self.shrink(plain) if structured else plain).eval()

    def forward(self, deployed: nn.Module) -> Runner:
        """A callable running a deployed model on example inputs and returning one tensor."""
        deployed.eval()

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return deployed(x)

        return run

    def export_onnx(self, deployed: nn.Module, example: torch.Tensor, opset: int = 17) -> bytes:
        """ONNX bytes of a deployed model, with a dynamic batch axis (TorchScript exporter)."""
        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                copy.deepcopy(deployed).eval(),
                (example,),
                buf,  # type: ignore[arg-type]  # the stub says path-only; the TorchScript exporter writes file objects
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        return buf.getvalue()

    def flops_module(self, deployed: nn.Module) -> nn.Module:
        """The module whose multiply-adds on one example are a checkpoint's ``flops`` (default: ``deployed``).

        A model whose cost grows with what it outputs (an autoregressive decoder) returns one with
        that output's length fixed, so checkpoints compare at equal work.
        """
        return deployed

    def onnx_runner(
        self, deployed: nn.Module, example: torch.Tensor, threads: int | None, int8: bool = False
    ) -> Runner:
        """ONNX Runtime running ``deployed`` (fp32, as :meth:`deploy` made it); ``int8``: ONNX Runtime's dynamic
        int8 quantization of the export. Default: :meth:`export_onnx`, one session; override for a model that
        needs several graphs (an encoder and a decoder step) and a loop around them.
        """
        from prunelib.deploy.onnx import ort_runner, ort_session, quantize_onnx_int8

        graph = self.export_onnx(deployed, example)
        return ort_runner(ort_session(quantize_onnx_int8(graph) if int8 else graph, threads))

    def check_outputs(
        self, expected: np.ndarray, got: np.ndarray, data: Any, what: str, atol: float | None = None
    ) -> float:
        """Compare a runtime's outputs with PyTorch's; return the largest difference.

        Raises ``ValueError`` when they differ by more than ``atol`` (default :attr:`parity_atol`):
        a wrong model is never timed. A family may add its own check (e.g. identical transcripts).
        """
        atol = self.parity_atol if atol is None else atol
        if expected.shape != got.shape:
            raise ValueError(f"{what}: output shape {got.shape}, PyTorch {expected.shape}")
        worst = float(np.max(np.abs(expected - got))) if expected.size else 0.0
        if not worst <= atol:
            raise ValueError(f"{what} differs from PyTorch by {worst:.3g} (tolerance {atol:g})")
        return worst

    def calibration_inputs(self, data: Any) -> torch.Tensor:
        """Rows static int8 quantization calibrates on; override to give training rows (default: example rows)."""
        return self.example_inputs(data, 256 if self.batched else 1)

    def parity_inputs(self, data: Any) -> torch.Tensor:
        """Inputs a runtime is checked on before timing (default: 64 example rows, or the one example)."""
        return self.example_inputs(data, 64 if self.batched else 1)

    # ------------------------------------------------------------------ description

    def default_model(self, dataset: str) -> str:
        """The model a run on ``dataset`` uses when none is named (default: the first of :attr:`models`)."""
        return self.models[0]

    @property
    def default_pair(self) -> tuple[str, str]:
        """The (dataset, model) a run uses when none is named."""
        return self.datasets[0], self.default_model(self.datasets[0])

    @property
    def smoke_pair(self) -> tuple[str, str]:
        """The (dataset, model) the contract tests run (:attr:`smoke`, else :attr:`default_pair`)."""
        return self.smoke if self.smoke is not None else self.default_pair

    def describe(self) -> dict[str, str]:
        """One line per capability, for ``python -m prunelib families``."""
        from prunelib.pruning.schedules import SCHEDULES

        methods = [m for m, s in SCHEDULES.items() if self.structured or not s.structured]
        return {
            "datasets": ", ".join(self.datasets),
            "models": ", ".join(self.models),
            "metric": f"{self.metric.name} ({'higher' if self.metric.higher_is_better else 'lower'} is better)",
            "methods": ", ".join(methods),
            "structured": "no"
            if not self.structured
            else ("Torch-Pruning" if type(self).structure is not Family.structure else "the family's own"),
            "runtimes": ", ".join(self.runtimes),
            "precisions": ", ".join(self.precisions),
        }

    def supports(
        self,
        method: str | None = None,
        runtime: str | None = None,
        precision: str | None = None,
        dataset: str | None = None,
    ) -> str:
        """``""`` when the combination runs, else the reason it is skipped (a family may add its own reasons)."""
        from prunelib.pruning.schedules import get_schedule

        if method is not None and get_schedule(method).structured and not self.structured:
            return f"family {self.name!r} does not support structured pruning ({method})"
        if method is not None and get_schedule(method).late and not self.late_rewind:
            return f"family {self.name!r} cannot stop its dense training at an epoch, so no late rewinding ({method})"
        if runtime is not None and runtime not in self.runtimes:
            return f"family {self.name!r} does not run on {runtime} (runs on {', '.join(self.runtimes)})"
        if precision is not None and precision not in self.precisions:
            return f"family {self.name!r} does not support precision {precision} ({', '.join(self.precisions)})"
        if runtime in ("torch", "torch-sparse") and precision == "int8" and self.int8 == "static":
            return (
                f"family {self.name!r} quantizes to int8 statically in ONNX Runtime (torch's dynamic int8 skips conv)"
            )
        return ""
