"""The family contract, checked on every registered family (built-ins and installed plugins).

Each family runs on its :attr:`~prunelib.families.contract.Family.smoke_pair` in quick mode, its
data read from ``$PRUNELIB_DATA_DIR`` (else ``../shared/data`` beside the repository); a family
whose data is absent is skipped with the path it looked at. The model is built once per family
(untrained: every promise here holds for any weights) and copied by each test that changes it.
Every assertion message starts with the promise it found broken. A deliberately broken family
at the end shows the checks (and :func:`~prunelib.sweep.metrics.static_metrics`) catch one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from prunelib.deploy.runtimes import make_runner
from prunelib.families.contract import Family, Metric
from prunelib.families.registry import get_family, registered
from prunelib.pruning.criteria import magnitude_prune, named_masks
from prunelib.pruning.params import count_parameters
from prunelib.storage.checkpoint import load_checkpoint, save_checkpoint
from prunelib.sweep.metrics import static_metrics
from tests.conftest import one_thread, shared_data_root

#: (family, model) pairs built pretrained, so different seeds may give the same weights.
#: The contract has no attribute saying so; see the report of this module's commit.
PROPERTY = settings(max_examples=10, deadline=None)


@dataclass
class Subject:
    """One family on its smoke pair: data loaded and a model built (seed 0, prepared) once."""

    family: Family
    dataset: str
    model_name: str
    data: Any
    model: nn.Module

    @property
    def label(self) -> str:
        return f"family {self.family.name!r} ({self.dataset}, {self.model_name})"

    def fresh(self, seed: int = 0) -> nn.Module:
        return self.family.prepare(self.family.build(self.model_name, self.data, seed))


def load_smoke(family: Family) -> tuple[str, str, Any]:
    """The family's smoke data, or a skip naming the folder where it was looked for."""
    dataset, model = family.smoke_pair
    root = shared_data_root()
    root = root if root.is_dir() else None
    try:
        return dataset, model, family.load_data(dataset, model, root, 0, True)
    except (FileNotFoundError, ValueError) as exc:
        folder = root / dataset if root is not None else None
        if folder is not None and folder.exists():
            raise  # the data is there but unreadable: a failure, not a skip
        where = folder if folder is not None else f"{shared_data_root()} (absent; set $PRUNELIB_DATA_DIR)"
        pytest.skip(f"family {family.name!r}: no {dataset!r} data at {where}: {exc}")


@pytest.fixture(scope="module", params=sorted(registered()))
def subject(request: pytest.FixtureRequest) -> Subject:
    family = get_family(request.param)
    with one_thread():
        dataset, model_name, data = load_smoke(family)
        model = family.prepare(family.build(model_name, data, 0))
    return Subject(family, dataset, model_name, data, model)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Keys missing on one side or whose tensors are not bit-identical."""
    return sorted(set(a) ^ set(b)) + [k for k in a if k in b and not torch.equal(a[k], b[k])]


def as_numpy(x: Any) -> np.ndarray:
    return x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ---------------------------------------------------------------- checks (also run on the broken family)
def check_build(family: Family, model_name: str, data: Any, label: str) -> None:
    """Seeded build: same seed, bit-identical weights; another seed, other weights (unless pretrained)."""
    first, again = family.build(model_name, data, 0), family.build(model_name, data, 0)
    assert not first.training, f"{label}: build() must return the model in eval mode"
    diff = differing(state(first), state(again))
    assert not diff, f"{label}: build() with the same seed must give identical weights; differ: {diff[:5]}"
    if not family.pretrained(model_name):
        other = family.build(model_name, data, 1)
        assert differing(state(first), state(other)), (
            f"{label}: build() with a different seed must give different weights (a random init)"
        )


def check_example_inputs(family: Family, data: Any, label: str) -> None:
    """Batched families give ``batch`` rows; every family's example runs through its deployed model."""
    if family.batched:
        for batch in (1, 3, 64):
            rows = family.example_inputs(data, batch).shape[0]
            assert rows == batch, f"{label}: example_inputs(data, {batch}) must have {batch} rows, got {rows}"


def check_scores(family: Family, scores: dict[str, float], label: str) -> None:
    """evaluate() names the primary metric and gives a value in its range."""
    name = family.metric.name
    assert name in scores, f"{label}: evaluate() must return the metric {name!r}, got {sorted(scores)}"
    assert family.metric.in_range(float(scores[name])), (
        f"{label}: evaluate() gave {name} = {scores[name]!r}, outside [{family.metric.low}, {family.metric.high}]"
    )


# ---------------------------------------------------------------- the promises
def test_describes_itself(subject: Subject) -> None:
    family, label = subject.family, subject.label
    family.check_dataset(subject.dataset)
    family.check_model(subject.model_name)
    for quick in (True, False):
        hp = family.hparams(subject.dataset, quick)
        frozen = is_dataclass(hp) and hp.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert frozen, f"{label}: hparams() must be a frozen dataclass, got {type(hp).__name__}"
    assert family.data_fingerprint(subject.data) == family.data_fingerprint(subject.data), (
        f"{label}: data_fingerprint() must be the same for the same data"
    )


def test_build_is_seeded(subject: Subject) -> None:
    with one_thread():
        check_build(subject.family, subject.model_name, subject.data, subject.label)


def test_example_inputs(subject: Subject) -> None:
    family = subject.family
    check_example_inputs(family, subject.data, subject.label)
    out = family.forward(family.deploy(subject.model, False))(family.example_inputs(subject.data, 1))
    assert isinstance(out, torch.Tensor), f"{subject.label}: forward() must return one tensor"


def test_evaluate_gives_the_metric(subject: Subject) -> None:
    with one_thread():
        check_scores(subject.family, subject.family.evaluate(subject.model, subject.data), subject.label)
        row = static_metrics(subject.family, subject.model, subject.data)  # raises ValueError on a broken metric
    zeros = 1e-4 if subject.family.pretrained(subject.model_name) else 0.0  # a pretrained file may hold exact zeros
    assert row["sparsity"] <= zeros, f"{subject.label}: a freshly built model must have sparsity 0"


@PROPERTY
@given(amount=st.floats(0.05, 0.95), second=st.floats(0.05, 0.95), seed=st.integers(0, 2**16))
def test_pruning_invariants(subject: Subject, amount: float, second: float, seed: int) -> None:
    """Global magnitude pruning of prunable(): binary masks, torch's count, no regrowth, magnitude order."""
    label, model = subject.label, copy.deepcopy(subject.model)
    params = subject.family.prunable(model)
    assert params, f"{label}: prunable() must name at least one tensor"
    total = sum(getattr(m, n).numel() for m, n in params)
    magnitudes = torch.cat([getattr(m, n).detach().abs().flatten() for m, n in params])
    masks = []
    for step, frac in enumerate((amount, second)):
        pruned_before = 0 if not masks else int((masks[-1] == 0).sum())
        magnitude_prune(params, frac, seed)
        mask = torch.cat([getattr(m, f"{n}_mask").flatten() for m, n in params])
        assert torch.all((mask == 0) | (mask == 1)), f"{label}: pruning masks must be binary"
        expected = pruned_before + round(frac * (total - pruned_before))
        pruned = int((mask == 0).sum())
        assert abs(pruned - expected) <= 1, (
            f"{label}: step {step + 1} must prune round({frac:.3f} x remaining): expected {expected}, got {pruned}"
        )
        if masks:
            assert torch.all(mask <= masks[-1]), f"{label}: a pruned weight must never regrow (step {step + 1})"
        if 0 < pruned < total:
            assert magnitudes[mask == 0].max() <= magnitudes[mask == 1].min(), (
                f"{label}: global magnitude pruning must remove no weight larger than one it keeps"
            )
        masks.append(mask)
    effective = torch.cat([getattr(m, n).detach().flatten() for m, n in params])
    assert torch.all(effective[masks[-1] == 0] == 0), f"{label}: pruned weights must read as zero"


def pruned_copy(subject: Subject, amount: float = 0.5, seed: int = 0) -> nn.Module:
    model = copy.deepcopy(subject.model)
    magnitude_prune(subject.family.prunable(model), amount, seed)
    return model


def test_checkpoint_round_trip(subject: Subject, tmp_path: Path) -> None:
    """A pruned model saved and loaded into a fresh build is bit-identical, masks included."""
    label, model = subject.label, pruned_copy(subject)
    with torch.no_grad():  # move every weight off its seeded value, so a fresh build cannot pass by accident
        gen = torch.Generator().manual_seed(7)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 1e-2)
    path = save_checkpoint(model, tmp_path / "model.safetensors")
    loaded = load_checkpoint(subject.fresh(), path)
    diff = differing(state(model), state(loaded))
    assert not diff, f"{label}: a checkpoint round trip must be bit-exact; differ: {diff[:5]}"
    masks, loaded_masks = named_masks(model), named_masks(loaded)
    assert masks and masks.keys() == loaded_masks.keys(), f"{label}: a checkpoint must carry every pruning mask"
    assert not differing(masks, loaded_masks), f"{label}: a checkpoint round trip must keep the masks bit-exact"
    x = subject.family.parity_inputs(subject.data)
    with one_thread():
        before, after = subject.family.forward(model)(x), subject.family.forward(loaded)(x)
    assert torch.equal(before, after), f"{label}: a reloaded checkpoint must give identical outputs"


def test_onnx_runtime_parity(subject: Subject) -> None:
    """ONNX Runtime's outputs of the deployed pruned model sit within parity_atol of PyTorch's."""
    family, label = subject.family, subject.label
    if "onnxruntime" not in family.runtimes:
        pytest.skip(f"{label} does not declare the onnxruntime runtime")
    model = pruned_copy(subject)
    with one_thread():
        run = make_runner(family, model, subject.data, "onnxruntime", threads=1)  # raises on a mismatch
        x = family.parity_inputs(subject.data)
        expected, got = as_numpy(family.forward(family.deploy(model, False))(x)), as_numpy(run(x))
    assert expected.shape == got.shape, f"{label}: ONNX Runtime output shape {got.shape}, PyTorch {expected.shape}"
    worst = float(np.max(np.abs(expected - got)))
    assert worst <= family.parity_atol, (
        f"{label}: ONNX Runtime must match PyTorch within parity_atol {family.parity_atol:g}, differs by {worst:.3g}"
    )


def test_structured_shrink(subject: Subject) -> None:
    """Shrinking keeps outputs at zero pruning, and removes parameters after a structured step."""
    family, label = subject.family, subject.label
    if not family.structured:
        pytest.skip(f"{label} does not support structured pruning")
    x = family.parity_inputs(subject.data)
    model = copy.deepcopy(subject.model)
    with one_thread():
        plain = as_numpy(family.forward(family.deploy(model, False))(x))
        shrunk = as_numpy(family.forward(family.deploy(model, True))(x))
        worst = float(np.max(np.abs(plain - shrunk)))
        assert worst <= family.parity_atol, (
            f"{label}: shrink() at zero pruning must keep outputs; differs by {worst:.3g}"
        )
        family.structured_step(model, 0.5, 0)
        sparsity = family.unit_sparsity(model)
        assert not math.isnan(sparsity) and 0 < sparsity <= 1, (
            f"{label}: unit_sparsity() after structured_step(0.5) must be in (0, 1], got {sparsity}"
        )
        masked, deployed = family.deploy(model, False), family.deploy(model, True)
        kept, full = count_parameters(deployed), count_parameters(masked)
        assert kept < full, f"{label}: shrink() after structured_step(0.5) must remove parameters ({kept} of {full})"
        worst = float(np.max(np.abs(as_numpy(family.forward(masked)(x)) - as_numpy(family.forward(deployed)(x)))))
        assert worst <= family.parity_atol, (
            f"{label}: shrink() must keep the masked model's outputs; differs by {worst:.3g}"
        )


# ---------------------------------------------------------------- a broken family is caught
@dataclass(frozen=True)
class ToyData:
    x: torch.Tensor
    y: torch.Tensor


class BrokenFamily(Family):
    """A toy linear classifier whose promises can be broken one at a time (``broken``)."""

    name = "broken"
    metric = Metric("accuracy", higher_is_better=True)
    datasets = ("toy",)
    models = ("linear",)

    def __init__(self, broken: str = "") -> None:
        self.broken = broken
        self.builds = 0

    def hparams(self, dataset: str, quick: bool) -> None:
        return None

    def load_data(self, dataset: str, model: str, data_dir: Path | None, seed: int, quick: bool) -> ToyData:
        gen = torch.Generator().manual_seed(seed)
        return ToyData(torch.randn(64, 4, generator=gen), torch.randint(0, 3, (64,), generator=gen))

    def build(self, model: str, data: ToyData, seed: int) -> nn.Module:
        self.builds += 1
        with torch.random.fork_rng():
            torch.manual_seed(seed + self.builds if self.broken == "unseeded" else seed)
            return nn.Linear(4, 3).eval()

    def train(self, model: nn.Module, data: ToyData, hparams: Any, seed: int, phase: str) -> None:
        pass

    def evaluate(self, model: nn.Module, data: ToyData) -> dict[str, float]:
        with torch.no_grad():
            accuracy = float((model(data.x).argmax(1) == data.y).float().mean())
        if self.broken == "name":
            return {"acc": accuracy}
        return {"accuracy": accuracy * 100 + 1 if self.broken == "range" else accuracy}

    def example_inputs(self, data: ToyData, batch: int) -> torch.Tensor:
        return data.x[: 1 if self.broken == "batch" else batch]


@pytest.mark.parametrize(
    ("broken", "promise"),
    [("name", "not its metric 'accuracy'"), ("range", r"accuracy = .* outside \[0.0, 1.0\]")],
)
def test_static_metrics_catches_a_broken_metric(broken: str, promise: str) -> None:
    family = BrokenFamily(broken)
    data = family.load_data("toy", "linear", None, 0, True)
    with pytest.raises(ValueError, match=promise):
        static_metrics(family, family.build("linear", data, 0), data)
    with pytest.raises(AssertionError, match="evaluate"):
        check_scores(family, family.evaluate(family.build("linear", data, 0), data), "family 'broken'")


CHECKS = {
    "unseeded": (lambda f, data: check_build(f, "linear", data, "family 'broken'"), "same seed must give identical"),
    "batch": (
        lambda f, data: check_example_inputs(f, data, "family 'broken'"),
        r"example_inputs\(data, 3\) must have 3",
    ),
}


@pytest.mark.parametrize("broken", sorted(CHECKS))
def test_checks_catch_a_broken_family(broken: str) -> None:
    check, promise = CHECKS[broken]
    data = BrokenFamily().load_data("toy", "linear", None, 0, True)
    check(BrokenFamily(), data)  # the intact toy passes
    with pytest.raises(AssertionError, match=promise):
        check(BrokenFamily(broken), data)
