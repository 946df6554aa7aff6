"""Images from the MLP family's readers: same split, same pixels, image-shaped; missing folders named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from prunelib.families.cnn.data import DATASETS, as_images, load_images, subset
from prunelib.families.datadir import DATA_DIR_ENV, DataError
from prunelib.families.mlp.data import DEBIAN_FASHION_MNIST, Splits


def test_mnist5k_is_the_mlp_split_as_images(mnist5k: Splits) -> None:
    images = load_images("mnist5k", None, 0)
    for flat, image, n in ((mnist5k.train, images.train, 3500), (mnist5k.dev, images.dev, 500), (mnist5k.test, images.test, 1000)):  # fmt: skip
        assert image.x.shape == (n, 1, 28, 28) and image.x.is_contiguous()
        assert torch.equal(image.x.flatten(1), flat.x) and torch.equal(image.y, flat.y)
    assert images.num_classes == 10 and images.name == "mnist5k"


def test_as_images_rejects_rows_that_are_not_28_by_28(make_splits: Callable[..., Splits]) -> None:
    with pytest.raises(DataError, match="has 12 values per example, not 784 pixels"):
        as_images(make_splits(features=12))


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(DataError, match=r"no dataset 'sst2'") as info:
        load_images("sst2", None, 0)
    assert all(repr(name) in str(info.value) for name in DATASETS)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_a_missing_idx_folder_is_named(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError, match="has no folder") as info:
        load_images(name, tmp_path, 0)
    assert str(tmp_path / name) in str(info.value)


def write_idx_root(root: Path, write_idx: Callable[..., Path], name: str, n_train: int = 60, n_test: int = 10) -> Path:
    """``root/name`` with tiny 28x28 IDX files; image i is filled with i and its label is i % 10."""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        ids = np.arange(n, dtype=np.uint8)
        write_idx(root / name / f"{stem}-images-idx3-ubyte.gz", np.repeat(ids, 28 * 28).reshape(n, 28, 28))
        write_idx(root / name / f"{stem}-labels-idx1-ubyte.gz", ids % 10)
    return root


def test_a_missing_idx_file_is_named(tmp_path: Path, write_idx: Callable[..., Path]) -> None:
    root = write_idx_root(tmp_path, write_idx, "fashion-mnist")
    (root / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing IDX file t10k-labels-idx1-ubyte") as info:
        load_images("fashion-mnist", root, 0)
    assert str(root / "fashion-mnist") in str(info.value)


def test_idx_files_become_images(tmp_path: Path, write_idx: Callable[..., Path]) -> None:
    splits = load_images("mnist", write_idx_root(tmp_path, write_idx, "mnist"), 0, test_subset=6)
    assert (splits.train.x.shape, splits.dev.x.shape, splits.test.x.shape) == ((50, 1, 28, 28), (10, 1, 28, 28), (6, 1, 28, 28))  # fmt: skip
    for split in (splits.train, splits.test):  # every pixel of image i reads i, and its label is i % 10
        assert torch.equal(split.x, split.x[:, :, :1, :1].expand_as(split.x))
    assert len({float(v) for v in splits.train.x[:, 0, 0, 0]}) == 50


def test_subset_keeps_the_image_shape() -> None:
    small = subset(load_images("mnist5k", None, 0), 100, 20, seed=1)
    assert (small.train.x.shape, small.test.x.shape, small.dev.x.shape) == ((100, 1, 28, 28), (20, 1, 28, 28), (500, 1, 28, 28))  # fmt: skip


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason=f"{DEBIAN_FASHION_MNIST} is absent (Debian package dataset-fashion-mnist)"
)
def test_fashion_mnist_from_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    splits = load_images("fashion-mnist", None, 0, train_subset=100, test_subset=50)
    assert (splits.train.x.shape, splits.dev.x.shape, splits.test.x.shape) == ((100, 1, 28, 28), (6000, 1, 28, 28), (50, 1, 28, 28))  # fmt: skip


def test_a_label_out_of_range_is_refused_at_load_time(tmp_path: Path, write_idx: Callable[..., Path]) -> None:
    """Not an IndexError once training has started: the file and row are named when the data is read."""
    root = write_idx_root(tmp_path, write_idx, "mnist")
    labels = write_idx(root / "mnist" / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 10] + [3] * 6, np.uint8))
    with pytest.raises(DataError, match=f"{labels}: row 3 has label 10, expected an integer in 0..9"):
        load_images("mnist", root, 0)
