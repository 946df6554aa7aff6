"""The CNN family: LeNet-5 and a ResNet-8 on MNIST-5k, MNIST and Fashion-MNIST images, scored by accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from prunelib.families.cnn.config import Hparams, hparams_for
from prunelib.families.cnn.data import DATASETS, Splits, load_images, subset
from prunelib.families.cnn.models import IMAGE_SHAPE, PRESETS, build_model
from prunelib.families.cnn.train import evaluate, train
from prunelib.families.contract import Family, Metric, Params
from prunelib.families.mlp.family import batch_of
from prunelib.pruning.structured import Structure

#: (train, test) examples a ``--prune-quick`` run keeps, per (data set, model); others whole.
QUICK_SUBSETS: dict[tuple[str, str], tuple[int, int]] = {
    ("mnist5k", "resnet8"): (1_500, 1_000),
    ("mnist", "lenet5"): (10_000, 2_000),
    ("mnist", "resnet8"): (3_000, 1_000),
    ("fashion-mnist", "lenet5"): (10_000, 2_000),
    ("fashion-mnist", "resnet8"): (3_000, 1_000),
}


class CnnFamily(Family):
    """Small image classifiers (:data:`~prunelib.families.cnn.models.PRESETS`) on 1x28x28 digits and clothes."""

    name = "cnn"
    metric = Metric("accuracy", higher_is_better=True)
    datasets = DATASETS
    models = PRESETS
    runtimes = ("torch", "onnxruntime", "torch-sparse", "executorch")
    #: int8 is ONNX Runtime's static QDQ quantization, calibrated on training images (dynamic int8 skips convs).
    int8 = "static"
    #: Dense accuracy a run must reach (full, quick), a few points under the measured (seed 0, one
    #: torch thread): MNIST-5k LeNet-5 0.968 / 0.970, ResNet-8 0.979 / 0.949; Fashion-MNIST LeNet-5
    #: 0.901 / 0.862, ResNet-8 0.917 / 0.804. No MNIST floors: not measured (no MNIST on the machine).
    floors: ClassVar[dict[tuple[str, str], tuple[float, float]]] = {
        ("mnist5k", "lenet5"): (0.95, 0.95),
        ("mnist5k", "resnet8"): (0.96, 0.92),
        ("fashion-mnist", "lenet5"): (0.88, 0.83),
        ("fashion-mnist", "resnet8"): (0.89, 0.76),
    }
    smoke = ("mnist5k", "resnet8")  # the contract tests exercise the residual adds and BatchNorm
    #: Where IMP with rewinding was measured far ahead of one-shot pruning (seed 0): within 1 point of
    #: dense to 87 % sparsity, 0.56-0.90 at 97-98 % where one-shot is at chance, in full and quick
    #: schedules (ResNet-8's full run: 5 x 50 %). Not Fashion-MNIST ResNet-8: no full IMP run yet.
    lottery: ClassVar[tuple[tuple[str, str], ...]] = (
        ("mnist5k", "lenet5"),
        ("mnist5k", "resnet8"),
        ("fashion-mnist", "lenet5"),
    )

    def hparams(self, dataset: str, quick: bool) -> Hparams:
        self.check_dataset(dataset)
        return hparams_for(dataset, quick)

    def load_data(self, dataset: str, model: str, data_dir: Path | None, seed: int, quick: bool) -> Splits:
        self.check_dataset(dataset)
        train_n, test_n = QUICK_SUBSETS.get((dataset, model), (None, None)) if quick else (None, None)
        return load_images(dataset, data_dir, seed, train_n, test_n)

    def subset(self, data: Splits, train: int | None, test: int | None, seed: int) -> Splits:
        return subset(data, train, test, seed)

    def build(self, model: str, data: Splits, seed: int) -> nn.Module:
        self.check_model(model)
        return build_model(model, data.num_classes, seed)

    def train(self, model: nn.Module, data: Splits, hparams: Hparams, seed: int, phase: str) -> None:
        train(model, data.train, hparams, seed, desc="train dense" if phase == "dense" else "retrain")

    def evaluate(self, model: nn.Module, data: Splits) -> dict[str, float]:
        return {"accuracy": evaluate(model, data.test)}

    def example_inputs(self, data: Splits, batch: int) -> torch.Tensor:
        return batch_of(data.test.x, batch)

    def calibration_inputs(self, data: Splits) -> torch.Tensor:
        """Static int8 calibrates on the first 256 training images (never on the test set)."""
        return data.train.x[:256].contiguous()

    def sensitivity_groups(self, model: nn.Module) -> dict[str, Params]:
        """One group per block (``features``, ``hidden``, ``stem``, ``layer1``..., ``classifier``)."""
        groups: dict[str, Params] = {}
        names = {id(m): n for n, m in model.named_modules()}
        for module, param in self.prunable(model):
            groups.setdefault(names[id(module)].split(".")[0], []).append((module, param))
        return groups

    def structure(self, model: nn.Module) -> Structure:
        """Conv channels and hidden neurons are the units, traced on one blank image; the classifier keeps its classes."""
        classifier = model.get_submodule("classifier")
        return Structure(torch.zeros(1, *IMAGE_SHAPE), ignored=(classifier,))
