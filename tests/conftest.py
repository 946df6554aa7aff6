"""Shared fixtures of the core tests: the data root, small real data, a trained model, builders.

Session fixtures hold only what is expensive and never mutated (loaded splits, one trained
LeNet); tests that change a model get a deep copy. Builders are session-scoped factories so
hypothesis tests can use them (they keep no state). Nothing here touches global settings.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from prunelib.families.mlp.config import DataConfig, TrainConfig
from prunelib.families.mlp.data import DATA_DIR_ENV, Split, Splits, load_data
from prunelib.families.mlp.models import MLP, ModelSpec
from prunelib.families.mlp.train import init_model, train
from prunelib.pruning.criteria import initial_state

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the count after.

    These models are tiny: a second thread only adds waiting, badly so on a shared 2-core
    machine or under ``-n 2`` (measured: a 10-step train took 1.9 s on 2 threads, 14 ms on 1).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _torch_one_thread() -> Iterator[None]:
    """Every test runs on one torch thread; the count in force before is restored after it."""
    with one_thread():
        yield


# ---------------------------------------------------------------- real data
def shared_data_root() -> Path:
    """``$PRUNELIB_DATA_DIR`` if set, else ``<repo>/../shared/data``."""
    chosen = os.environ.get(DATA_DIR_ENV)
    return Path(chosen).expanduser() if chosen else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared data root; skips with the path it looked at when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"shared data root {root} is absent (set {DATA_DIR_ENV} to the folder holding sst2/)")
    return root


@pytest.fixture(scope="session")
def sst2_root(data_root: Path) -> Path:
    """The data root, provided it holds GLUE SST-2 (``sst2/train.tsv`` and ``sst2/dev.tsv``)."""
    folder = data_root / "sst2"
    if not ((folder / "train.tsv").is_file() and (folder / "dev.tsv").is_file()):
        pytest.skip(f"GLUE SST-2 is absent: expected {folder}/train.tsv and dev.tsv")
    return data_root


@pytest.fixture(scope="session")
def mnist5k() -> Splits:
    """The embedded MNIST-5k, split with seed 0 (3500 / 500 / 1000). Do not mutate."""
    return load_data(DataConfig("mnist5k"))


@pytest.fixture(scope="session")
def sst2_full(sst2_root: Path) -> Splits:
    """All of SST-2 (train.tsv → train + dev, dev.tsv → test), seed 0. Do not mutate."""
    return load_data(DataConfig("sst2", str(sst2_root)))


@pytest.fixture(scope="session")
def sst2_small(sst2_root: Path) -> Splits:
    """SST-2 with 2000 training and 300 test phrases, as the end-to-end test runs it."""
    return load_data(DataConfig("sst2", str(sst2_root), train_subset=2000, test_subset=300))


# ---------------------------------------------------------------- a trained model
LENET_SPEC = ModelSpec("lenet300", 784, 10)
TRAINED_CFG = TrainConfig(epochs=2, batch_size=64)


@pytest.fixture(scope="session")
def _trained_lenet(mnist5k: Splits) -> tuple[MLP, dict[str, torch.Tensor]]:
    with one_thread():
        model = init_model(LENET_SPEC, seed=0)
        init = initial_state(model)
        train(model, mnist5k.train, TRAINED_CFG, seed=0)
    return model, init


@pytest.fixture
def trained_lenet(_trained_lenet: tuple[MLP, dict[str, torch.Tensor]]) -> tuple[MLP, dict[str, torch.Tensor]]:
    """A fresh copy of LeNet-300-100 trained 2 epochs on MNIST-5k, and its initial weights."""
    model, init = _trained_lenet
    return copy.deepcopy(model), {k: v.clone() for k, v in init.items()}


# ---------------------------------------------------------------- builders
def _tiny_mlp(widths: tuple[int, ...], seed: int = 0, levels: int | None = None) -> nn.Sequential:
    """Linear layers ``widths[0] → widths[1] → ...`` (ReLU between) with weights from ``seed``.

    ``levels`` quantises every weight to that many distinct values: ties on purpose.
    """
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        lin = nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            w = torch.rand(fan_out, fan_in, generator=gen) * 2 - 1
            if levels is not None:
                w = (torch.floor((w + 1) / 2 * levels).clamp(max=levels - 1) + 1) / levels  # values in 1/L..1
                w = w * torch.where(torch.rand(w.shape, generator=gen) < 0.5, -1.0, 1.0)
            lin.weight.copy_(w)
            lin.bias.copy_(torch.rand(fan_out, generator=gen) - 0.5)
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@pytest.fixture(scope="session")
def make_mlp() -> Callable[..., nn.Sequential]:
    """Builder: ``make_mlp(widths, seed=0, levels=None)`` → a small ``nn.Sequential`` of Linears."""
    return _tiny_mlp


def _toy_splits(n: int = 64, features: int = 12, classes: int = 3, seed: int = 0) -> Splits:
    """A learnable synthetic classification problem (labels from a fixed random linear map)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(features, classes, generator=gen)

    def split(m: int) -> Split:
        x = torch.randn(m, features, generator=gen)
        return Split(x, (x @ w).argmax(1))

    return Splits("toy", split(n), split(max(n // 4, 1)), split(max(n // 2, 1)), classes, features)


@pytest.fixture(scope="session")
def make_splits() -> Callable[..., Splits]:
    """Builder: ``make_splits(n=64, features=12, classes=3, seed=0)`` → small synthetic :class:`Splits`."""
    return _toy_splits


def _write_idx(path: Path, array: np.ndarray, magic: bytes | None = None, extra: bytes = b"") -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped when ``path`` ends in ``.gz``.

    ``magic`` replaces the first 4 bytes; ``extra`` is appended after the data (a size mismatch).
    """
    array = np.asarray(array, dtype=np.uint8)
    head = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    raw = head + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes() + extra
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


@pytest.fixture(scope="session")
def write_idx() -> Callable[..., Path]:
    """Builder: ``write_idx(path, array, magic=None, extra=b"")`` writes an IDX file (gzip if ``.gz``)."""
    return _write_idx


def _write_sst2(root: Path, train_rows: list[str], dev_rows: list[str], header: str = "sentence\tlabel") -> Path:
    """A data root ``root`` with ``sst2/train.tsv`` and ``sst2/dev.tsv`` made of the given lines."""
    folder = root / "sst2"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.tsv").write_text("\n".join([header, *train_rows]) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("\n".join([header, *dev_rows]) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def write_sst2() -> Callable[..., Path]:
    """Builder: ``write_sst2(root, train_rows, dev_rows)`` → a data root with a tiny GLUE-format SST-2."""
    return _write_sst2


TOY_SST2_TRAIN = [
    f"{w} movie {'good' if i % 2 else 'bad'} film\t{i % 2}"
    for i, w in enumerate("a the one this that an some any each every my your our their his her".split())
]
TOY_SST2_DEV = ["movie good film\t1", "movie bad unseenword\t0", "film\t1", "zzz yyy\t0"]


@pytest.fixture
def toy_sst2_root(tmp_path: Path) -> Path:
    """A tmp data root holding a 16-phrase training file and a 4-phrase dev file in GLUE format."""
    return _write_sst2(tmp_path / "data", TOY_SST2_TRAIN, TOY_SST2_DEV)
