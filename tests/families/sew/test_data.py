"""FSDD utterances and the LibriSpeech reader: shapes, rates, splits, and clear errors."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from prunelib.families.sew.data import (
    DIGIT_WORDS,
    MIN_UTTERANCE_SAMPLES,
    SAMPLE_RATE,
    FsddConfig,
    dataset_folder,
    fsdd_utterances,
    join_digits,
    list_fsdd,
    load_audio,
    read_librispeech,
    read_transcripts,
    resample,
    split_fsdd,
)

from .tiny import write_fake_fsdd

REPO = Path(__file__).resolve().parents[3]


def shared_data() -> Path:
    """``$PRUNELIB_DATA_DIR`` or ``<repo>/../shared/data``; skips the test if absent."""
    root = Path(os.environ.get("PRUNELIB_DATA_DIR") or REPO.parent / "shared" / "data")
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set PRUNELIB_DATA_DIR)")
    return root


def write_librispeech(root: Path, chapters: dict[tuple[str, str], list[str]], rate=16000) -> Path:
    """A LibriSpeech-layout folder; ``chapters[(speaker, chapter)]`` are the transcript texts."""
    for (speaker, chapter), texts in chapters.items():
        folder = root / speaker / chapter
        folder.mkdir(parents=True)
        lines = []
        for i, text in enumerate(texts):
            utt = f"{speaker}-{chapter}-{i:04d}"
            sf.write(folder / f"{utt}.flac", np.zeros(rate // 10, np.float32), rate)
            lines.append(f"{utt} {text}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


# ----------------------------------------------------------------------------- audio


@settings(max_examples=20, deadline=None)
@given(rate=st.sampled_from([8000, 22050, 44100, 16000]), n=st.integers(1, 4000))
def test_resample_length_follows_the_rate_ratio(rate: int, n: int) -> None:
    out = resample(np.zeros(n, np.float32), rate)
    assert out.dtype == np.float32
    assert len(out) == -(-n * SAMPLE_RATE // rate)  # resample_poly: ceil(n * up / down)


def test_resample_8k_keeps_the_tone_frequency() -> None:
    t = np.arange(8000) / 8000
    out = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), 8000)
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * SAMPLE_RATE / len(out)
    assert len(out) == 16000 and abs(peak_hz - 440) <= 1


def test_resample_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="-8000"):
        resample(np.zeros(4), -8000)


def test_load_audio_resamples_and_reports_missing(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros((800, 2), np.float32), 8000)
    assert load_audio(tmp_path / "a.wav").shape == (1600,)
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="bad.wav"):
        load_audio(tmp_path / "bad.wav")


def test_stereo_is_downmixed_so_a_right_channel_recording_survives(tmp_path: Path) -> None:
    """A recording on the right channel only: channel 0 alone would be silence under a real transcript."""
    t = np.arange(1600) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    right_only = np.stack([np.zeros_like(tone), tone], axis=1)
    sf.write(tmp_path / "right.wav", right_only, 16000, subtype="FLOAT")
    sf.write(tmp_path / "right.flac", right_only, 16000)
    for name in ("right.wav", "right.flac"):
        audio = load_audio(tmp_path / name)
        assert audio.shape == (1600,)
        np.testing.assert_allclose(audio, tone / 2, atol=1e-4)  # the mean of the channels
        assert np.abs(audio).max() > 0.2


def test_empty_or_too_short_audio_is_an_error_naming_the_file(tmp_path: Path) -> None:
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 8000)
    with pytest.raises(ValueError, match="empty.wav.*empty"):
        load_audio(tmp_path / "empty.wav")
    sf.write(tmp_path / "short.wav", np.zeros(10, np.float32), 16000)
    assert load_audio(tmp_path / "short.wav").shape == (10,)  # a clip may be short...
    with pytest.raises(ValueError, match="short.wav.*too short.*10 samples"):
        load_audio(tmp_path / "short.wav", min_samples=MIN_UTTERANCE_SAMPLES)  # ...an utterance may not


def test_librispeech_utterance_shorter_than_one_frame_is_an_error(tmp_path: Path) -> None:
    root = write_librispeech(tmp_path, {("1", "2"): ["ONE"]})
    flac = next(root.glob("*/*/*.flac"))
    sf.write(flac, np.zeros(MIN_UTTERANCE_SAMPLES - 1, np.float32), 16000)
    with pytest.raises(ValueError, match=f"{flac.name}.*too short"):
        read_librispeech(root)


def _check_read_or_refused(path: Path) -> np.ndarray | None:
    """``load_audio(path)`` is finite mono float32 audio, or a ValueError naming ``path``; nothing else."""
    try:
        audio = load_audio(path)
    except ValueError as exc:
        assert str(path) in str(exc)
        return None
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) >= 1
    assert np.isfinite(audio).all()
    return audio


@settings(max_examples=60, deadline=None)
@given(
    fmt=st.sampled_from(
        [("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "FLOAT"), ("flac", "PCM_16"), ("flac", "PCM_24")]
    ),
    channels=st.integers(1, 3),
    frames=st.integers(0, 300),
    rate=st.sampled_from([8000, 16000, 44100]),
    seed=st.integers(0, 2**16),
    damage=st.one_of(
        st.none(), st.tuples(st.integers(0, 4000), st.binary(min_size=0, max_size=8)), st.integers(0, 600)
    ),
)
def test_fuzz_wav_and_flac_are_read_correctly_or_refused(
    fmt: tuple[str, str], channels: int, frames: int, rate: int, seed: int, damage: object
) -> None:
    """Valid files of any shape read as the channels' mean; damaged ones are read or refused, by name."""
    ext, subtype = fmt
    data = np.random.default_rng(seed).uniform(-0.9, 0.9, (frames, channels)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"clip.{ext}"
        sf.write(path, data, rate, subtype=subtype, format=ext.upper())
        if damage is None:
            audio = _check_read_or_refused(path)
            if frames == 0:
                assert audio is None
            else:
                assert audio is not None
                expected = resample(data.mean(axis=1), rate, SAMPLE_RATE)
                np.testing.assert_allclose(audio, expected, atol=1e-3 if subtype == "PCM_16" else 1e-5)
            return
        raw = bytearray(path.read_bytes())
        if isinstance(damage, int):  # truncated
            raw = raw[: min(damage, len(raw))]
        else:  # bytes overwritten
            at, patch = damage  # type: ignore[misc]
            at = at % max(len(raw), 1)
            raw[at : at + len(patch)] = patch
        path.write_bytes(bytes(raw))
        _check_read_or_refused(path)


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(max_size=300), ext=st.sampled_from(["wav", "flac"]))
def test_fuzz_arbitrary_bytes_as_audio_are_refused_by_name(raw: bytes, ext: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"noise.{ext}"
        path.write_bytes(raw)
        _check_read_or_refused(path)


# ----------------------------------------------------------------------------- FSDD


def test_fsdd_official_split_on_real_data() -> None:
    recs = list_fsdd(dataset_folder(shared_data(), "fsdd"))
    splits = split_fsdd(recs, FsddConfig(dev_takes=5, seed=0))
    assert len(recs) == 3000
    assert {k: len(v) for k, v in splits.items()} == {"train": 2400, "dev": 300, "test": 300}
    assert {r.take for r in splits["test"]} == set(range(5))
    train_takes, dev_takes = {r.take for r in splits["train"]}, {r.take for r in splits["dev"]}
    assert not train_takes & dev_takes and min(train_takes | dev_takes) == 5
    assert split_fsdd(recs, FsddConfig(seed=0)) == splits  # seeded


def test_list_fsdd_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        list_fsdd(tmp_path / "missing")
    (tmp_path / "recordings").mkdir()
    with pytest.raises(FileNotFoundError, match="no FSDD recordings"):
        list_fsdd(tmp_path)
    (tmp_path / "recordings" / "seven.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="seven.wav"):
        list_fsdd(tmp_path)


def test_dataset_folder_accepts_root_or_folder(tmp_path: Path) -> None:
    write_fake_fsdd(tmp_path)
    assert dataset_folder(tmp_path, "fsdd") == dataset_folder(tmp_path / "fsdd", "fsdd") == tmp_path / "fsdd"
    with pytest.raises(FileNotFoundError, match="librispeech"):
        dataset_folder(tmp_path, "librispeech")


def test_join_digits_transcript_and_silences() -> None:
    clips = [(7, np.ones(100, np.float32)), (3, np.ones(50, np.float32))]
    cfg = FsddConfig(gap_min_s=0.01, gap_max_s=0.01, edge_max_s=0.0, min_duration_s=0.0)
    audio, text = join_digits(clips, np.random.default_rng(0), cfg)
    assert text == "SEVEN THREE"
    assert len(audio) == 150 + 160 and audio[100:260].sum() == 0  # 10 ms gap at 16 kHz
    padded, _ = join_digits(clips, np.random.default_rng(0), dataclasses.replace(cfg, min_duration_s=0.5))
    assert len(padded) == 8000 and padded[310:].sum() == 0  # trailing silence up to 0.5 s


def test_fsdd_utterances_are_seeded_and_in_range(tmp_path: Path) -> None:
    root = write_fake_fsdd(tmp_path)
    cfg = FsddConfig(min_digits=2, max_digits=3, dev_takes=1)
    a = fsdd_utterances(root, "test", 6, seed=1, cfg=cfg)
    b = fsdd_utterances(root, "test", 6, seed=1, cfg=cfg)
    c = fsdd_utterances(root, "test", 6, seed=2, cfg=cfg)
    assert [u.text for u in a] == [u.text for u in b]
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(a, b))
    assert [u.text for u in a] != [u.text for u in c] or any(not np.array_equal(x.audio, y.audio) for x, y in zip(a, c))
    for u in a:
        words = u.text.split()
        assert 2 <= len(words) <= 3 and set(words) <= set(DIGIT_WORDS)
        assert u.audio.dtype == np.float32 and u.duration_s >= 2 * 0.1


def test_fsdd_utterances_validate(tmp_path: Path) -> None:
    root = write_fake_fsdd(tmp_path)
    with pytest.raises(ValueError, match="'valid'"):
        fsdd_utterances(root, "valid", 3)
    with pytest.raises(ValueError, match="0"):
        fsdd_utterances(root, "test", 0)
    with pytest.raises(ValueError, match="min_digits"):
        FsddConfig(min_digits=3, max_digits=2)


# ----------------------------------------------------------------------------- LibriSpeech


def test_read_librispeech_mini() -> None:
    utts = read_librispeech(dataset_folder(shared_data(), "librispeech-mini"))
    assert [u.id for u in utts] == ["2412-153948-0000"]
    assert utts[0].text.startswith("IF THE READER WILL EXCUSE ME")
    assert utts[0].audio.dtype == np.float32 and 11.0 < utts[0].duration_s < 12.5


def test_read_librispeech_order_subset_and_resampling(tmp_path: Path) -> None:
    write_librispeech(tmp_path, {("20", "5"): ["B ONE", "B TWO"], ("3", "7"): ["A ONE"]}, rate=8000)
    utts = read_librispeech(tmp_path)
    assert [u.id for u in utts] == ["20-5-0000", "20-5-0001", "3-7-0000"]  # sorted, stable
    assert all(len(u.audio) == 1600 for u in utts)  # 0.1 s at 8 kHz → 16 kHz
    assert [u.id for u in read_librispeech(tmp_path, subset=2)] == ["20-5-0000", "20-5-0001"]
    with pytest.raises(ValueError, match="subset"):
        read_librispeech(tmp_path, subset=0)


def test_read_librispeech_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="test-clean"):
        read_librispeech(tmp_path / "test-clean")
    with pytest.raises(FileNotFoundError, match="speaker/chapter"):
        read_librispeech(tmp_path)


def test_read_librispeech_missing_transcript(tmp_path: Path) -> None:
    write_librispeech(tmp_path, {("1", "2"): ["HELLO"]})
    (tmp_path / "1" / "2" / "1-2.trans.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"1-2\.trans\.txt"):
        read_librispeech(tmp_path)


@pytest.mark.parametrize("line", ["1-2-0000", "9-9-0000 WRONG CHAPTER", "garbage"])
def test_read_librispeech_malformed_line(tmp_path: Path, line: str) -> None:
    write_librispeech(tmp_path, {("1", "2"): ["HELLO"]})
    trans = tmp_path / "1" / "2" / "1-2.trans.txt"
    trans.write_text(trans.read_text() + line + "\n")
    with pytest.raises(ValueError, match=r"1-2\.trans\.txt:2"):
        read_librispeech(tmp_path)


def test_read_librispeech_missing_audio(tmp_path: Path) -> None:
    write_librispeech(tmp_path, {("1", "2"): ["HELLO", "WORLD"]})
    (tmp_path / "1" / "2" / "1-2-0001.flac").unlink()
    with pytest.raises(FileNotFoundError, match=r"1-2-0001\.flac"):
        read_librispeech(tmp_path)


@settings(max_examples=80, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_fuzz_librispeech_transcripts_are_read_or_refused_by_name(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "19-198.trans.txt"
        path.write_bytes(raw)
        try:
            out = read_transcripts(path)
        except ValueError as exc:
            assert str(path) in str(exc)
            return
        for utt_id, text in out.items():
            assert utt_id.startswith("19-198-") and utt_id[len("19-198-") :].isdigit() and text == text.strip() != ""
