"""Every SEW model by name: the presets prunelib builds or trains, a ``save_pretrained`` directory, or a hub id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from prunelib.families.sew.models import SEW_MINI, SEW_TINY, build_processor, build_sew, load_pretrained
from prunelib.families.sew.train import SpeechTrainConfig, trained_fsdd_model


def load_speech_model(
    name_or_path: str | Path,
    seed: int = 0,
    data_root: Path | str | None = None,
    cache_dir: Path | str | None = None,
) -> tuple[torch.nn.Module, Any]:
    """One entry point for every speech model; returns ``(model, processor)`` in eval mode.

    Args:
        name_or_path: ``"sew-tiny"`` (exact SEW-tiny architecture, random weights from ``seed``),
            ``"sew-mini"`` (:data:`SEW_MINI`, random weights from ``seed``),
            ``"sew-fsdd"`` (the small SEW trained on FSDD, trained once then cached), an existing
            directory (``from_pretrained``), or anything else as a hub id.
        seed: weight seed for ``"sew-tiny"``.
        data_root: data root holding ``fsdd/`` for ``"sew-fsdd"`` (default: ``$PRUNELIB_DATA_DIR``).
        cache_dir: cache root for ``"sew-fsdd"`` (default: ``$PRUNELIB_CACHE_DIR`` or ``~/.cache/prunelib``).

    Raises:
        OSError: a hub id that cannot be fetched (offline or unknown).
    """
    if isinstance(name_or_path, (str, Path)) and str(name_or_path) in ("sew-tiny", "sew-mini"):
        return build_sew(SEW_TINY if str(name_or_path) == "sew-tiny" else SEW_MINI, seed), build_processor()
    if isinstance(name_or_path, (str, Path)) and str(name_or_path) == "sew-fsdd":
        return trained_fsdd_model(SpeechTrainConfig(), data_root=data_root, cache_dir=cache_dir)
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path must be a str or Path, got {type(name_or_path).__name__}")
    return load_pretrained(name_or_path)
