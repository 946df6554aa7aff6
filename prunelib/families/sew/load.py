"""Every SEW model by name: the presets prunelib builds or trains, a ``save_pretrained`` directory, or a hub id.

The hub is asked only for a name written as a hub id, ``hf:org/name`` (``hf:org/name@revision`` pins
a revision); anything else is loaded with ``local_files_only=True``, so a misspelt name is an error
naming it, never a network request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from prunelib.families.sew.models import SEW_MINI, SEW_TINY, build_processor, build_sew, load_pretrained
from prunelib.families.sew.train import SpeechTrainConfig, trained_fsdd_model

#: A model name starting with this is a Hugging Face hub id: the only names the hub is asked for.
HUB_PREFIX = "hf:"
PRESET_NAMES = ("sew-tiny", "sew-mini", "sew-fsdd")


def hub_id(name: str) -> tuple[str, str | None] | None:
    """``"hf:org/name@rev"`` -> ``("org/name", "rev")``; ``"hf:org/name"`` -> ``("org/name", None)``; else None.

    Raises:
        ValueError: ``hf:`` followed by something that is not ``org/name``.
    """
    if not name.startswith(HUB_PREFIX):
        return None
    repo, _, revision = name[len(HUB_PREFIX) :].partition("@")
    org, sep, model = repo.partition("/")
    if not (sep and org and model) or "/" in model or (_ and not revision):
        raise ValueError(f"speech model {name!r}: a hub id reads hf:org/name or hf:org/name@revision")
    return repo, revision or None


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
            directory (``from_pretrained``), ``hf:org/name[@revision]`` (from the hub), or a hub id
            already in the local Hugging Face cache (``org/name``, never downloaded).
        seed: weight seed for ``"sew-tiny"``.
        data_root: data root holding ``fsdd/`` for ``"sew-fsdd"`` (default: ``$PRUNELIB_DATA_DIR``).
        cache_dir: cache root for ``"sew-fsdd"`` (default: ``$PRUNELIB_CACHE_DIR`` or ``~/.cache/prunelib``).

    Raises:
        OSError: a name that is none of these (it names it), or an ``hf:`` id the hub cannot provide.
    """
    if isinstance(name_or_path, (str, Path)) and str(name_or_path) in ("sew-tiny", "sew-mini"):
        return build_sew(SEW_TINY if str(name_or_path) == "sew-tiny" else SEW_MINI, seed), build_processor()
    if isinstance(name_or_path, (str, Path)) and str(name_or_path) == "sew-fsdd":
        return trained_fsdd_model(SpeechTrainConfig(), data_root=data_root, cache_dir=cache_dir)
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path must be a str or Path, got {type(name_or_path).__name__}")
    hub = hub_id(str(name_or_path)) if isinstance(name_or_path, str) else None
    if hub is not None:
        return load_pretrained(hub[0], local_files_only=False, revision=hub[1])
    if not Path(name_or_path).is_dir() and "/" not in str(name_or_path):
        raise OSError(
            f"no speech model {str(name_or_path)!r}: not one of {list(PRESET_NAMES)}, not a directory "
            f"(write hf:org/name for a Hugging Face hub id)"
        )
    return load_pretrained(name_or_path, local_files_only=True)
