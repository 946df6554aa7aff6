"""The CNN family's fixed training hyper-parameters, per data set (dense training and every IMP retraining)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hparams:
    """Adam on cross-entropy, its step size annealed from ``lr`` to 0 (cosine) over ``epochs``.

    IMP retrains with exactly these after every pruning step (rewound or not), so each retraining
    is a whole run of the schedule.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"invalid CNN training hyper-parameters: {self}")


#: Per data set, (full, quick). Quick mode trains fewer epochs, mostly on fewer examples
#: (``family.QUICK_SUBSETS``), in smaller batches: ResNet-8's BatchNorm statistics need the steps
#: (MNIST-5k, 1,500 images, 4 epochs: 0.92 at batch 64, 0.95 at 32; LeNet-5 0.94-0.95 either way).
HPARAMS: dict[str, tuple[Hparams, Hparams]] = {
    "mnist5k": (Hparams(epochs=10), Hparams(epochs=4, batch_size=32)),
    "mnist": (Hparams(epochs=6), Hparams(epochs=3, batch_size=32)),
    "fashion-mnist": (Hparams(epochs=6), Hparams(epochs=3, batch_size=32)),
}


def hparams_for(dataset: str, quick: bool) -> Hparams:
    """The hyper-parameters of ``dataset`` (full or quick); ``ValueError`` for a data set without any."""
    if dataset not in HPARAMS:
        raise ValueError(f"the CNN family has no hyper-parameters for dataset {dataset!r}; known: {sorted(HPARAMS)}")
    return HPARAMS[dataset][1 if quick else 0]
