"""speech-eval and FSDD digits as Whisper reads them: every utterance, its transcript and its 30 s log-mel features."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from prunelib.families.datadir import DataError
from prunelib.families.whisper.data import fsdd_digits, load_whisper_data, log_mel, read_audiofolder

ROOT = Path(os.environ.get("PRUNELIB_DATA_DIR", Path(__file__).resolve().parents[4] / "shared" / "data"))
needs_data = pytest.mark.skipif(not (ROOT / "speech-eval").is_dir(), reason=f"no speech-eval under {ROOT}")


@needs_data
def test_speech_eval_reads_all_seven_utterances_at_16_khz_mono() -> None:
    utts = read_audiofolder(ROOT / "speech-eval")
    assert len(utts) == 7 and sum(len(u.text.split()) for u in utts) == 129
    jfk = next(u for u in utts if u.id == "jfk")
    assert jfk.audio.ndim == 1 and 10.5 < jfk.duration_s < 11.5  # 44.1 kHz stereo, downmixed and resampled
    assert jfk.text.startswith("and so my fellow americans")


@needs_data
def test_fsdd_digits_are_drawn_by_the_seed_from_the_test_takes() -> None:
    a, b, c = fsdd_digits(ROOT, 2, seed=0), fsdd_digits(ROOT, 2, seed=0), fsdd_digits(ROOT, 2, seed=1)
    assert [u.id for u in a] == [u.id for u in b] != [u.id for u in c]
    assert len(a) == 20 and {u.text for u in a} == {
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
    }
    assert all(int(u.id.split("_")[2]) < 5 for u in a)  # official test takes 0-4
    assert a[0].text == "zero" and a[0].id.startswith("0_")


def test_features_are_80_mel_bins_over_30_seconds(tiny_en) -> None:
    _, processor = tiny_en
    from prunelib.families.sew.data import Utterance

    feats = log_mel(
        processor,
        [Utterance("a", np.zeros(16000, np.float32), "x"), Utterance("b", np.ones(8000, np.float32) * 0.1, "y")],
    )
    assert feats.shape == (2, 80, 3000) and feats.dtype.is_floating_point
    assert not np.allclose(feats[0].numpy(), feats[1].numpy())


def write_folder(folder: Path, rows: str, audio: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.csv").write_text(rows)
    for name, samples in audio.items():
        sf.write(folder / name, samples, 16000)
    return folder


def test_a_malformed_audiofolder_is_named(tmp_path) -> None:
    with pytest.raises(DataError, match="metadata.csv"):
        read_audiofolder(tmp_path)
    folder = write_folder(tmp_path / "a", "file_name,text\nx.wav,hello\n", {})
    with pytest.raises(DataError, match=r"lacks column\(s\) \['transcription'\]"):
        read_audiofolder(folder)
    folder = write_folder(tmp_path / "b", "file_name,transcription\nx.wav,\n", {"x.wav": np.zeros(16000)})
    with pytest.raises(DataError, match="line 2: empty transcription for 'x.wav'"):
        read_audiofolder(folder)
    folder = write_folder(tmp_path / "c", "file_name,transcription\nmissing.wav,hello\n", {})
    with pytest.raises(DataError, match="line 2: .*missing.wav does not exist"):
        read_audiofolder(folder)
    folder = write_folder(tmp_path / "d", "file_name,transcription\nx.wav,hello\n", {"x.wav": np.zeros(16000)})
    assert [u.text for u in read_audiofolder(folder)] == ["hello"]


def test_a_data_set_needs_a_root_and_a_known_name(tiny_en, tmp_path) -> None:
    with pytest.raises(DataError, match="needs a data root"):
        load_whisper_data("speech-eval", None, tiny_en[1], 0, False)
    with pytest.raises(DataError, match="not 'librispeech'"):
        load_whisper_data("librispeech", tmp_path, tiny_en[1], 0, False)
    with pytest.raises(DataError, match="speech-eval"):
        load_whisper_data("speech-eval", tmp_path, tiny_en[1], 0, False)
