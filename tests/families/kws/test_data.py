"""FSDD as keyword-spotting data: the split by take, labels, feature shapes, seeding, caching, errors."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunelib.families.contract import fingerprint
from prunelib.families.datadir import DataError
from prunelib.families.kws.data import (
    DEV_TAKES,
    FEATURES,
    Features,
    extract,
    fit_window,
    fsdd_features,
    load_fsdd,
    subset,
)
from prunelib.families.sew.data import dataset_folder, list_fsdd
from tests.families.kws.fake import FAKE_TAKES, real_fsdd, synthetic, write_fsdd


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fsdd(tmp_path_factory.mktemp("kws-data"))


# ---------------------------------------------------------------- features
def test_default_features_are_hello_edges_49_by_10_mfccs() -> None:
    assert (FEATURES.kind, FEATURES.frames, FEATURES.coeffs) == ("mfcc", 49, 10)
    assert FEATURES.n_fft == 320 and FEATURES.hop_length == 160  # 40 ms windows every 20 ms at 8 kHz


@pytest.mark.parametrize("bad", [{"kind": "wav"}, {"n_fft": 0}, {"hop_length": 0}, {"n_mfcc": 41}, {"n_fft": 9000}])
def test_features_reject_invalid_settings(bad: dict) -> None:
    with pytest.raises(ValueError):
        Features(**bad)


def test_fit_window_centres_pads_crops_and_peak_normalises() -> None:
    short = fit_window(np.full(4, 0.5, np.float32), 10)
    assert short.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]
    long = fit_window(np.arange(1, 21, dtype=np.float32), 10)
    assert long.tolist() == pytest.approx((np.arange(6, 16) / 15).tolist())
    assert fit_window(np.zeros(3, np.float32), 5).tolist() == [0.0] * 5  # silence stays silence


def test_extract_shapes_and_rows_are_independent() -> None:
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((3, FEATURES.clip_samples)).astype(np.float32) * 0.1
    together = extract(windows)
    assert together.shape == (3, 49, 10) and together.dtype == np.float32
    alone = extract(windows[1:2])
    np.testing.assert_allclose(alone[0], together[1], rtol=1e-5, atol=1e-4)  # no per-batch reference level
    log_mel = extract(windows, dataclasses.replace(FEATURES, kind="log-mel"))
    assert log_mel.shape == (3, 49, 40)
    with pytest.raises(ValueError, match="shape"):
        extract(windows[:, :100])


# ---------------------------------------------------------------- the split, labels and standardisation
def test_fake_folder_splits_by_take(fake_root: Path) -> None:
    data = load_fsdd(fake_root, seed=0)
    speakers, per_split = 2, {"test": 5, "dev": DEV_TAKES, "train": FAKE_TAKES - 5 - DEV_TAKES}
    assert len(data.test_y) == speakers * 10 * per_split["test"]
    assert len(data.dev_y) == speakers * 10 * per_split["dev"]
    assert len(data.train_y) == speakers * 10 * per_split["train"]
    for y in (data.train_y, data.dev_y, data.test_y):
        assert torch.bincount(y, minlength=10).tolist() == [len(y) // 10] * 10  # every digit equally
    assert data.test_x.shape[1:] == (1, 49, 10) and data.input_shape == (49, 10)

    recordings = list_fsdd(dataset_folder(fake_root, "fsdd"))
    raw = torch.from_numpy(fsdd_features(recordings).copy())
    test_rows = [i for i, r in enumerate(recordings) if r.take < 5]
    expected = ((raw[test_rows] - data.mean) / data.std).unsqueeze(1)
    assert torch.allclose(data.test_x, expected), "the test split is exactly the takes 0-4, in list order"
    assert data.test_y.tolist() == [recordings[i].digit for i in test_rows]


def test_features_are_standardised_by_the_train_split(fake_root: Path) -> None:
    data = load_fsdd(fake_root, seed=0)
    flat = data.train_x.squeeze(1).reshape(-1, data.input_shape[1])
    assert torch.allclose(flat.mean(0), torch.zeros(10), atol=1e-4)
    assert torch.allclose(flat.std(0), torch.ones(10), atol=1e-3)
    silence = (torch.from_numpy(extract(np.zeros((1, 8000), np.float32)))[0, 0] - data.mean) / data.std
    assert torch.allclose(data.silence, silence)


def test_loading_is_seeded(fake_root: Path) -> None:
    a, b, c = load_fsdd(fake_root, 0), load_fsdd(fake_root, 0), load_fsdd(fake_root, 1)
    assert fingerprint(a) == fingerprint(b)
    assert torch.equal(a.test_y, c.test_y), "the test split never depends on the seed"
    assert not torch.equal(a.dev_x, c.dev_x) or not torch.equal(a.dev_y, c.dev_y), "the dev takes do"


def test_features_are_cached_until_a_file_changes(tmp_path: Path) -> None:
    root = write_fsdd(tmp_path, speakers=("carol",))
    recordings = list_fsdd(dataset_folder(root, "fsdd"))
    first = fsdd_features(recordings)
    assert fsdd_features(recordings) is first and not first.flags.writeable
    path = recordings[0].path
    sf.write(path, np.full(900, 0.2, np.float32), 8000, subtype="PCM_16")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    again = fsdd_features(recordings)
    assert again is not first and not np.array_equal(again[0], first[0])


# ---------------------------------------------------------------- the real data
def test_real_fsdd_official_split() -> None:
    data = load_fsdd(real_fsdd(), seed=0)
    assert (len(data.train_y), len(data.dev_y), len(data.test_y)) == (2400, 300, 300)
    assert torch.bincount(data.test_y).tolist() == [30] * 10  # 6 speakers x takes 0-4 per digit
    assert data.test_x.shape == (300, 1, 49, 10)
    assert torch.isfinite(data.train_x).all()


# ---------------------------------------------------------------- subsets
def test_subset_is_seeded_and_keeps_dev() -> None:
    data = synthetic(40)
    cut = subset(data, 10, 7, seed=3)
    assert (len(cut.train_y), len(cut.test_y), len(cut.dev_y)) == (10, 7, len(data.dev_y))
    assert fingerprint(cut) == fingerprint(subset(data, 10, 7, seed=3))
    assert fingerprint(cut) != fingerprint(subset(data, 10, 7, seed=4))
    assert subset(data, None, None, 0) is data or fingerprint(subset(data, None, None, 0)) == fingerprint(data)
    with pytest.raises(DataError, match=">= 1"):
        subset(data, 0, None, 0)


# ---------------------------------------------------------------- clear errors
def test_no_data_root_is_an_error() -> None:
    with pytest.raises(DataError, match="PRUNELIB_DATA_DIR"):
        load_fsdd(None, 0)


def test_missing_fsdd_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "fsdd")):
        load_fsdd(tmp_path, 0)


def test_empty_recordings_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=f"no FSDD recordings .* in {folder}"):
        load_fsdd(tmp_path, 0)


def test_unreadable_wav_is_named(tmp_path: Path) -> None:
    root = write_fsdd(tmp_path, speakers=("dave",))
    bad = root / "fsdd" / "recordings" / "3_dave_7.wav"
    bad.write_bytes(b"not a wav file at all")
    with pytest.raises(ValueError, match=f"{bad} is not a readable audio file"):
        load_fsdd(root, 0)


def test_empty_wav_is_named(tmp_path: Path) -> None:
    root = write_fsdd(tmp_path, speakers=("erin",))
    empty = root / "fsdd" / "recordings" / "4_erin_2.wav"
    sf.write(empty, np.zeros(0, np.float32), 8000, subtype="PCM_16")
    with pytest.raises(DataError, match=f"{empty} is empty"):
        load_fsdd(root, 0)


def test_a_folder_without_train_takes_is_named(tmp_path: Path) -> None:
    root = write_fsdd(tmp_path, speakers=("finn",), takes=5 + DEV_TAKES)  # every train take goes to dev
    with pytest.raises(DataError, match=f"{root / 'fsdd'} has .*0 train"):
        load_fsdd(root, 0)


def test_read_clip_downmixes_stereo_and_names_unreadable_files(tmp_path: Path) -> None:
    from prunelib.families.kws.data import read_clip

    tone = np.sin(np.linspace(0, 60, 800)).astype(np.float32)
    sf.write(tmp_path / "right.wav", np.stack([np.zeros_like(tone), tone], axis=1), 8000, subtype="FLOAT")
    np.testing.assert_allclose(read_clip(tmp_path / "right.wav"), tone / 2, atol=1e-6)
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "junk.wav"))):
        read_clip(tmp_path / "junk.wav")


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(max_size=400), keep_header=st.booleans())
def test_fuzz_read_clip_reads_audio_or_refuses_it_by_name(raw: bytes, keep_header: bool) -> None:
    """Any bytes after (or instead of) a valid WAV header: 8 kHz mono audio, or a DataError naming the file."""
    from prunelib.families.kws.data import read_clip

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "4_erin_2.wav"
        if keep_header:
            sf.write(path, np.zeros(8, np.float32), 8000, subtype="PCM_16")
            raw = path.read_bytes()[:44] + raw
        path.write_bytes(raw)
        try:
            audio = read_clip(path)
        except DataError as exc:
            assert str(path) in str(exc)
            return
        assert audio.ndim == 1 and len(audio) >= 1 and audio.dtype == np.float32 and np.isfinite(audio).all()
