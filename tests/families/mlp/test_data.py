"""Data: the stratified seeded split, IDX and GLUE readers on small files, real SST-2, clear errors."""

from __future__ import annotations

import gzip
import re
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunelib.families.mlp.config import DataConfig
from prunelib.families.mlp.data import (
    DATA_DIR_ENV,
    DATASETS,
    DEBIAN_FASHION_MNIST,
    MNIST_MEAN,
    MNIST_STD,
    PAD,
    UNK,
    DataError,
    Split,
    Splits,
    build_vocab,
    encode,
    load_data,
    mnist5k_path,
    read_glue_tsv,
    read_idx,
    read_mnist5k_csv,
    resolve_data_dir,
)


def row_keys(split: Split) -> Counter:
    """Each example as bytes (pixels + label), counted: a multiset to compare splits by."""
    return Counter(x.numpy().tobytes() + bytes([int(y)]) for x, y in zip(split.x, split.y))


def same_split(a: Split, b: Split) -> bool:
    return torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


# ---------------------------------------------------------------- names, roots, errors
def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'cifar10'") as info:
        load_data(DataConfig("cifar10"))
    assert all(repr(name) in str(info.value) for name in DATASETS)
    assert issubclass(DataError, ValueError)


def test_resolve_data_dir_prefers_the_option_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "opt") == tmp_path / "opt"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv(DATA_DIR_ENV)
    assert resolve_data_dir(None) is None
    assert resolve_data_dir("~/x") == Path.home() / "x"


@pytest.mark.parametrize("name", ["sst2", "mnist"])
def test_no_data_root_names_the_option_and_variable(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError, match=rf"needs a data root.*--data-dir.*{DATA_DIR_ENV}"):
        load_data(DataConfig(name))


def test_missing_data_root_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as info:
        load_data(DataConfig("sst2", str(missing)))
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("name", ["sst2", "mnist", "fashion-mnist"])
def test_missing_dataset_folder_is_named(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError, match="has no folder") as info:
        load_data(DataConfig(name, str(tmp_path)))
    assert str(tmp_path / name) in str(info.value)


@pytest.mark.parametrize("missing", ["train.tsv", "dev.tsv"])
def test_missing_sst2_file_is_named(toy_sst2_root: Path, missing: str) -> None:
    (toy_sst2_root / "sst2" / missing).unlink()
    with pytest.raises(DataError, match="missing SST-2 file") as info:
        load_data(DataConfig("sst2", str(toy_sst2_root)))
    assert str(toy_sst2_root / "sst2" / missing) in str(info.value)


# ---------------------------------------------------------------- GLUE TSV
@pytest.mark.parametrize(
    "bad_row",
    ["no label here", "three\tcolumns\t1", "label two\t2", "label word\tpositive", "", "\t"],
    ids=["no-tab", "extra-column", "label-2", "label-word", "blank-line", "empty-fields"],
)
@pytest.mark.parametrize("which", ["train.tsv", "dev.tsv"])
def test_malformed_row_names_file_and_line(
    tmp_path: Path, write_sst2: Callable[..., Path], bad_row: str, which: str
) -> None:
    rows = ["a fine film\t1", "a dull film\t0", bad_row, "more\t1"]
    good = ["ok\t1", "bad\t0"]
    root = write_sst2(tmp_path, rows if which == "train.tsv" else good, rows if which == "dev.tsv" else good)
    path = root / "sst2" / which
    with pytest.raises(DataError) as info:
        load_data(DataConfig("sst2", str(root)))
    assert str(info.value).startswith(f"{path}:4: ")  # header is line 1, the bad row line 4


def test_wrong_header_names_line_1(tmp_path: Path, write_sst2: Callable[..., Path]) -> None:
    root = write_sst2(tmp_path, ["x\t1"], ["y\t0"], header="text\tlabel")
    with pytest.raises(DataError, match=r"train\.tsv:1: expected header"):
        load_data(DataConfig("sst2", str(root)))


@pytest.mark.parametrize("content", ["", "sentence\tlabel\n"], ids=["empty", "header-only"])
def test_empty_tsv_is_rejected(tmp_path: Path, content: str) -> None:
    path = tmp_path / "train.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_glue_tsv(path)


def test_read_glue_tsv_lowercases_and_splits(tmp_path: Path) -> None:
    path = tmp_path / "dev.tsv"
    path.write_text('sentence\tlabel\nA "Quoted" Film , really \t1\nbad\t0\n', encoding="utf-8")
    assert read_glue_tsv(path) == ([["a", '"quoted"', "film", ",", "really"], ["bad"]], [1, 0])


def test_build_vocab_reserves_pad_and_unk_then_orders_by_frequency() -> None:
    vocab = build_vocab([["b", "a", "c"], ["a", "c"], ["a"]])
    assert vocab == ("<pad>", "<unk>", "a", "c", "b")
    assert vocab[PAD] == "<pad>" and vocab[UNK] == "<unk>"
    assert build_vocab([["b", "a", "c"], ["a", "c"]], min_count=2) == ("<pad>", "<unk>", "a", "c")


def test_encode_pads_truncates_and_maps_unknown_words_to_unk() -> None:
    vocab = ("<pad>", "<unk>", "good", "film")
    ids = encode([["good", "film"], ["new", "good", "film", "film"], []], vocab, max_len=3)
    assert ids.dtype == torch.long
    assert ids.tolist() == [[2, 3, 0], [1, 2, 3], [1, 0, 0]]


def test_toy_sst2_builds_the_vocabulary_from_the_train_split_only(toy_sst2_root: Path) -> None:
    splits = load_data(DataConfig("sst2", str(toy_sst2_root)))
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (14, 2, 4)
    assert splits.num_classes == 2 and splits.vocab[:2] == ("<pad>", "<unk>")
    train_words = {splits.vocab[i] for i in splits.train.x.unique().tolist() if i != PAD}
    assert set(splits.vocab[2:]) == train_words
    index = {w: i for i, w in enumerate(splits.vocab)}
    # dev.tsv is the test split, in file order: unseen words are <unk>, rows padded with 0
    assert len(splits.vocab) == 2 + 4 + 14  # movie, film, good, bad, and the first words of 14 train rows
    assert splits.test.x[1, :3].tolist() == [index["movie"], index["bad"], UNK]
    assert splits.test.x[3, :2].tolist() == [UNK, UNK]
    assert (splits.test.x[:, 3:] == PAD).all()


# ---------------------------------------------------------------- SST-2, the real files
def test_real_sst2_vocab_padding_and_unknown_words(sst2_full: Splits, sst2_root: Path) -> None:
    splits = sst2_full
    vocab = splits.vocab
    assert vocab[PAD] == "<pad>" and vocab[UNK] == "<unk>" and len(set(vocab)) == len(vocab)
    assert splits.num_classes == 2 and splits.vocab_size == len(vocab)
    assert len(splits.train) + len(splits.dev) == 67_349 and len(splits.test) == 872
    assert set(splits.train.y.unique().tolist()) == {0, 1}
    # every vocabulary word occurs in the train split, and nothing there is unknown
    train_ids = set(splits.train.x.unique().tolist())
    assert train_ids >= set(range(2, len(vocab)))
    assert UNK not in train_ids
    # the dev share, carved out of train.tsv, has words the vocabulary never saw
    assert int((splits.dev.x == UNK).sum()) > 0
    # the test split is GLUE dev.tsv in file order: id = vocab index or <unk>, then padding 0
    sentences, labels = read_glue_tsv(sst2_root / "sst2" / "dev.tsv")
    index = {w: i for i, w in enumerate(vocab)}
    assert splits.test.y.tolist() == labels
    unknown = 0
    for row, sent in zip(splits.test.x.tolist(), sentences):
        expected = [index.get(w, UNK) for w in sent]
        unknown += expected.count(UNK)
        assert row == expected + [PAD] * (splits.in_features - len(sent))
    assert unknown > 0


def test_sst2_subsets_are_seeded_and_drawn_from_the_full_splits(sst2_small: Splits, sst2_full: Splits) -> None:
    assert (len(sst2_small.train), len(sst2_small.test)) == (2000, 300)
    assert sst2_small.vocab == sst2_full.vocab and same_split(sst2_small.dev, sst2_full.dev)
    full_rows = {tuple(r) for r in sst2_full.test.x.tolist()}
    assert all(tuple(r) in full_rows for r in sst2_small.test.x.tolist())


# ---------------------------------------------------------------- MNIST-5k
def test_mnist5k_sizes_and_per_class_counts(mnist5k: Splits) -> None:
    assert (mnist5k.name, mnist5k.num_classes, mnist5k.in_features, mnist5k.vocab) == ("mnist5k", 10, 784, ())
    for split, per_class in ((mnist5k.train, 350), (mnist5k.dev, 50), (mnist5k.test, 100)):
        assert split.x.shape == (per_class * 10, 784) and split.x.dtype == torch.float32
        assert torch.bincount(split.y, minlength=10).tolist() == [per_class] * 10


def test_mnist5k_splits_partition_the_file(mnist5k: Splits) -> None:
    images, labels = read_mnist5k_csv(mnist5k_path())
    assert images.shape == (5000, 784) and images.dtype == np.uint8
    source = Split(
        (torch.from_numpy(images.astype(np.float32) / 255.0) - MNIST_MEAN) / MNIST_STD, torch.from_numpy(labels)
    )
    parts = [row_keys(s) for s in (mnist5k.train, mnist5k.dev, mnist5k.test)]
    assert parts[0] + parts[1] + parts[2] == row_keys(source)  # nothing lost, nothing duplicated
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_mnist5k_split_is_deterministic_per_seed(mnist5k: Splits) -> None:
    again = load_data(DataConfig("mnist5k", seed=0))
    other = load_data(DataConfig("mnist5k", seed=1))
    for name in ("train", "dev", "test"):
        assert same_split(getattr(again, name), getattr(mnist5k, name))
        assert not same_split(getattr(other, name), getattr(mnist5k, name))
    assert row_keys(other.test) != row_keys(mnist5k.test)  # other examples, not just another order


def test_mnist5k_fractions_and_subsets() -> None:
    splits = load_data(DataConfig("mnist5k", dev_fraction=0.2, test_fraction=0.1, train_subset=123, test_subset=45))
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (123, 1000, 45)
    big = load_data(DataConfig("mnist5k", train_subset=10**6))
    assert len(big.train) == 3500
    with pytest.raises(DataError, match="subset size must be >= 1"):
        load_data(DataConfig("mnist5k", train_subset=0))


def test_read_mnist5k_csv_rejects_other_shapes(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(DataError, match="expected 785") as info:
        read_mnist5k_csv(path)
    assert str(path) in str(info.value)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_mnist5k_csv(path)


# ---------------------------------------------------------------- IDX files
def make_idx_root(
    root: Path, write_idx: Callable[..., Path], n_train: int = 60, n_test: int = 20, gz: bool = True
) -> Path:
    """``root/mnist`` with tiny IDX files; image i is filled with i and its label is i % 10."""
    folder = root / "mnist"
    suffix = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        ids = np.arange(n, dtype=np.uint8)
        write_idx(folder / f"{stem}-images-idx3-ubyte{suffix}", np.repeat(ids, 4 * 4).reshape(n, 4, 4))
        write_idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", ids % 10)
    return root


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_idx_loader_keeps_images_and_labels_paired(tmp_path: Path, write_idx: Callable[..., Path], gz: bool) -> None:
    root = make_idx_root(tmp_path, write_idx, gz=gz)
    splits = load_data(DataConfig("mnist", str(root)))
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (50, 10, 20)
    assert splits.in_features == 16 and splits.num_classes == 10
    assert torch.bincount(splits.dev.y, minlength=10).tolist() == [1] * 10
    for split in (splits.train, splits.dev, splits.test):
        pixel = torch.round((split.x[:, 0] * MNIST_STD + MNIST_MEAN) * 255).long()
        assert torch.equal(pixel % 10, split.y)
        assert torch.equal(split.x, split.x[:, :1].expand_as(split.x))
    assert sorted(torch.round((splits.test.x[:, 0] * MNIST_STD + MNIST_MEAN) * 255).long().tolist()) == list(range(20))


def test_read_idx_round_trips_gzip_and_plain(tmp_path: Path, write_idx: Callable[..., Path]) -> None:
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    for name in ("a-idx3-ubyte", "b-idx3-ubyte.gz"):
        out = read_idx(write_idx(tmp_path / name, array))
        assert out.shape == (2, 3, 5) and np.array_equal(out, array)


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    "magic", [b"\x00\x00\x0d\x01", b"\x08\x00\x08\x01", b"PK\x03\x04"], ids=["float-type", "nonzero-lead", "zip"]
)
def test_read_idx_rejects_bad_magic(tmp_path: Path, write_idx: Callable[..., Path], suffix: str, magic: bytes) -> None:
    path = write_idx(tmp_path / f"labels{suffix}", np.zeros(3), magic=magic)
    with pytest.raises(DataError, match="bad magic") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["plain", "gzip"])
def test_read_idx_rejects_a_size_mismatch(tmp_path: Path, write_idx: Callable[..., Path], suffix: str) -> None:
    too_long = write_idx(tmp_path / f"long{suffix}", np.zeros((2, 3)), extra=b"\x00")
    with pytest.raises(DataError, match=r"declares shape \(2, 3\) \(6 bytes\) but holds 7"):
        read_idx(too_long)
    raw = bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(4)
    too_short = tmp_path / f"short{suffix}"
    too_short.write_bytes(gzip.compress(raw) if suffix else raw)
    with pytest.raises(DataError, match="holds 4") as info:
        read_idx(too_short)
    assert str(too_short) in str(info.value)


@pytest.mark.parametrize(
    "name, content",
    [
        ("header.gz", gzip.compress(bytes([0, 0, 8, 3, 0, 0]), mtime=0)),
        ("header", bytes([0, 0, 8, 2, 0])),
        ("notgzip.gz", b"\x00\x00\x08\x01\x00\x00\x00\x00"),
        ("truncated.gz", gzip.compress(bytes(100), mtime=0)[:20]),
        ("empty", b""),
    ],
    ids=["short-header-gzip", "short-header", "not-gzip", "truncated-gzip", "empty"],
)
def test_read_idx_rejects_truncated_or_unreadable_files(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_idx_file_is_named(tmp_path: Path, write_idx: Callable[..., Path]) -> None:
    root = make_idx_root(tmp_path, write_idx)
    (root / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing IDX file t10k-labels-idx1-ubyte \(or t10k-labels-idx1-ubyte\.gz\)"):
        load_data(DataConfig("mnist", str(root)))


def test_images_and_labels_of_different_count_are_rejected(tmp_path: Path, write_idx: Callable[..., Path]) -> None:
    root = make_idx_root(tmp_path, write_idx)
    write_idx(root / "mnist" / "train-labels-idx1-ubyte.gz", np.zeros(59))
    with pytest.raises(DataError, match="train images and labels differ in count"):
        load_data(DataConfig("mnist", str(root)))


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason=f"{DEBIAN_FASHION_MNIST} is absent (Debian package dataset-fashion-mnist)"
)
def test_fashion_mnist_from_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    splits = load_data(DataConfig("fashion-mnist", test_subset=500))
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (54_000, 6_000, 500)
    assert splits.in_features == 784 and splits.num_classes == 10
    assert torch.bincount(splits.dev.y, minlength=10).tolist() == [600] * 10
    pixels = splits.train.x[:100] * MNIST_STD + MNIST_MEAN
    assert float(pixels.min()) >= -1e-6 and float(pixels.max()) <= 1 + 1e-6


# ---------------------------------------------------------------- labels and lengths checked at load time
def test_idx_label_out_of_range_names_the_file_and_row(tmp_path: Path, write_idx: Callable[..., Path]) -> None:
    """A label of 200 used to pass loading and end in an IndexError once training started."""
    root = make_idx_root(tmp_path, write_idx, gz=False)
    labels = np.arange(60, dtype=np.uint8) % 10
    labels[17] = 200
    path = write_idx(root / "mnist" / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match=re.escape(f"{path}: row 17 has label 200")):
        load_data(DataConfig("mnist", str(root)))


def test_mnist5k_csv_label_or_pixel_out_of_range_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv.gz"
    good = ",".join(["0"] * 784)
    path.write_bytes(gzip.compress(f"{good},3\n{good},12\n".encode()))
    with pytest.raises(DataError, match=re.escape(f"{path}: row 2 has label 12,")):
        read_mnist5k_csv(path)
    path.write_bytes(gzip.compress(f"{good},3\n{','.join(['300'] * 784)},1\n".encode()))
    with pytest.raises(DataError, match=re.escape(f"{path}: row 2, column 1 holds 300,")):
        read_mnist5k_csv(path)


def test_one_very_long_sst2_row_is_cut_to_max_tokens(tmp_path: Path, write_sst2: Callable[..., Path]) -> None:
    """One 5,000-word row used to set the padded width of every sentence of the data set."""
    rows = [f"{w} film\t{i % 2}" for i, w in enumerate(["good", "bad", "fine", "dull"] * 5)]
    root = write_sst2(tmp_path, [*rows, " ".join(["long"] * 5000) + "\t1"], rows[:4])
    with pytest.warns(UserWarning, match=re.escape(f"{root / 'sst2' / 'train.tsv'}: 1 sentences longer than")):
        splits = load_data(DataConfig("sst2", str(root), max_tokens=16))
    assert splits.in_features == 16 and splits.train.x.shape[1] == splits.test.x.shape[1] == 16
    default = load_data(DataConfig("sst2", str(write_sst2(tmp_path / "short", rows, rows[:4]))))
    assert default.in_features == 2  # the longest row, when under the cap: nothing padded beyond it
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        DataConfig("sst2", max_tokens=0)


# ---------------------------------------------------------------- fuzzing: read correctly or refused by name
def _refused_by_name(exc: DataError, path: Path) -> None:
    assert str(path) in str(exc), str(exc)


@settings(max_examples=80, deadline=None)
@given(raw=st.binary(max_size=64), gz=st.booleans())
def test_fuzz_read_idx_arbitrary_bytes(raw: bytes, gz: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("x-idx.gz" if gz else "x-idx")
        path.write_bytes(gzip.compress(raw) if gz else raw)
        try:
            array = read_idx(path)
        except DataError as exc:
            _refused_by_name(exc, path)
            return
        ndim = raw[3]
        assert array.dtype == np.uint8 and array.ndim == ndim
        assert array.tobytes() == raw[4 + 4 * ndim :]


@settings(max_examples=40, deadline=None)
@given(
    n_train=st.integers(0, 30),
    n_test=st.integers(0, 8),
    side=st.integers(1, 4),
    train_labels=st.lists(st.integers(0, 255), max_size=30),
    test_labels=st.lists(st.integers(0, 255), max_size=8),
)
def test_fuzz_idx_data_set_loads_with_valid_labels_or_is_refused(
    n_train: int, n_test: int, side: int, train_labels: list[int], test_labels: list[int]
) -> None:
    """Any counts, shapes and label values: a data set whose every label is 0-9, or a DataError naming the folder."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mnist"
        for stem, n, labels in (("train", n_train, train_labels), ("t10k", n_test, test_labels)):
            _write_idx_file(folder / f"{stem}-images-idx3-ubyte", np.zeros((n, side, side), np.uint8))
            _write_idx_file(folder / f"{stem}-labels-idx1-ubyte", np.asarray(labels, np.uint8))
        try:
            splits = load_data(DataConfig("mnist", tmp))
        except DataError as exc:
            _refused_by_name(exc, folder)
            return
        assert n_train == len(train_labels) and n_test == len(test_labels)
        assert max(train_labels + test_labels) <= 9
        assert len(splits.train) + len(splits.dev) == n_train and len(splits.test) == n_test
        assert splits.in_features == side * side


def _write_idx_file(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
    )


@settings(max_examples=80, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: f"sentence\tlabel\n{t}".encode())))
def test_fuzz_read_glue_tsv(raw: bytes) -> None:
    """Arbitrary bytes, or a valid header then arbitrary text: rows of tokens and 0/1 labels, or a DataError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.tsv"
        path.write_bytes(raw)
        try:
            sentences, labels = read_glue_tsv(path)
        except DataError as exc:
            _refused_by_name(exc, path)
            return
        assert len(sentences) == len(labels) >= 1 and set(labels) <= {0, 1}
        assert all(isinstance(tok, str) and tok for sent in sentences for tok in sent)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.lists(st.sampled_from(["a", "b", "film", "ünï", "x" * 30]), max_size=40), st.integers(0, 1)),
        min_size=1,
        max_size=30,
    ),
    cap=st.integers(1, 20),
)
def test_fuzz_sst2_width_never_exceeds_max_tokens(rows: list[tuple[list[str], int]], cap: int) -> None:
    lines = [f"{' '.join(words)}\t{label}" for words, label in rows]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "sst2"
        folder.mkdir()
        for name, body in (("train.tsv", lines), ("dev.tsv", lines[:3])):
            (folder / name).write_text("\n".join(["sentence\tlabel", *body]) + "\n", encoding="utf-8")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                splits = load_data(DataConfig("sst2", tmp, max_tokens=cap))
            except DataError as exc:
                _refused_by_name(exc, Path(tmp) / "sst2")
                return
        longest = max(len(words) for words, _ in rows)
        assert splits.in_features == min(max(longest, 1), cap)
        assert splits.train.x.shape[1] == splits.test.x.shape[1] == splits.in_features
