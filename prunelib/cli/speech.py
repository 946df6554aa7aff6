"""The speech side of ``python -m prunelib sweep`` and ``sensitivity``: data set, model, sweep, sensitivity.

Kept apart from :mod:`prunelib.cli.main` so Part I never imports transformers.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pandas as pd

#: Folders tried, in order, for ``--dataset librispeech`` under the data root.
LIBRISPEECH_FOLDERS = ("librispeech", "librispeech-mini", "LibriSpeech/test-clean", "test-clean")


def data_root(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir``, else ``$PRUNELIB_DATA_DIR``; a clear error when neither names a directory."""
    from prunelib.families.sew.data import default_data_root

    root = Path(data_dir).expanduser() if data_dir else default_data_root()
    if root is None or not root.is_dir():
        raise FileNotFoundError(
            f"speech data root {root or '(unset)'} is not a directory: pass --data-dir or set PRUNELIB_DATA_DIR"
        )
    return root


def librispeech_folder(root: Path) -> Path:
    """The LibriSpeech split folder under ``root`` (or ``root`` itself when it is one)."""
    for name in LIBRISPEECH_FOLDERS:
        if (root / name).is_dir():
            return root / name
    if any(p.is_dir() for p in root.glob("*/*")) and list(root.glob("*/*/*.trans.txt")):
        return root
    raise FileNotFoundError(
        f"no LibriSpeech folder under {root}: expected one of {list(LIBRISPEECH_FOLDERS)} "
        "holding speaker/chapter/*.flac and *.trans.txt"
    )


def eval_set(dataset: str, root: Path, seed: int, count: int | None) -> list[Any]:
    """The utterances a speech model is scored on: seeded FSDD test utterances, or LibriSpeech."""
    from prunelib.families.sew.data import fsdd_utterances, read_librispeech
    from prunelib.families.sew.sweep import FSDD_TEST_COUNT

    if dataset == "fsdd":
        return fsdd_utterances(root, "test", count or FSDD_TEST_COUNT, seed=seed)
    if dataset == "librispeech":
        return read_librispeech(librispeech_folder(root), subset=count)
    raise ValueError(f"unknown speech dataset {dataset!r}; choose fsdd or librispeech")


def speech_sweep(args: argparse.Namespace) -> pd.DataFrame:
    """Rows 0..N of a speech sweep (``wer`` in place of accuracy) for the parsed ``sweep`` arguments."""
    from prunelib.deploy.runtimes import CTC_RUNTIMES
    from prunelib.families.sew.models import load_speech_model
    from prunelib.families.sew.sweep import (
        SPEECH_METHODS,
        SpeechMeasureConfig,
        SpeechPruneConfig,
        fsdd_sweep,
        run_sweep,
    )
    from prunelib.pruning.schedules import get_schedule

    if args.method not in SPEECH_METHODS:
        raise ValueError(f"speech models take --method {list(SPEECH_METHODS)}, not {args.method!r}")
    if args.precision != "fp32" or args.runtime not in CTC_RUNTIMES:
        raise ValueError(f"speech sweeps run at --precision fp32 on --runtime {' or '.join(CTC_RUNTIMES)}")
    retrains = get_schedule(args.method).retrain
    if retrains and (args.dataset, args.model) != ("fsdd", "sew-fsdd"):
        raise ValueError(f"{args.method} retrains on FSDD: only with --dataset fsdd --model sew-fsdd")
    root = data_root(args.data_dir)
    prune_cfg = SpeechPruneConfig(args.method, args.amount, args.iterations, seed=args.seed)
    measure_cfg = SpeechMeasureConfig(
        runtime=args.runtime, threads=args.threads, runs=max(2, min(args.latency_runs, 20))
    )
    if (args.dataset, args.model) == ("fsdd", "sew-fsdd"):
        return fsdd_sweep(
            prune_cfg, measure_cfg, data_root=root, test_count=args.eval_count or 200, test_seed=args.seed
        )
    model, processor = load_speech_model(args.model, seed=args.seed, data_root=root)
    return run_sweep(model, processor, eval_set(args.dataset, root, args.seed, args.eval_count), prune_cfg, measure_cfg)


def speech_sensitivity(args: argparse.Namespace, levels: list[float]) -> pd.DataFrame:
    """WER per (component group, sparsity) for the parsed ``sensitivity`` arguments."""
    from prunelib.families.sew.models import load_speech_model
    from prunelib.families.sew.sweep import wer_sensitivity

    root = data_root(args.data_dir)
    model, processor = load_speech_model(args.model, seed=args.seed, data_root=root)
    return wer_sensitivity(model, processor, eval_set(args.dataset, root, args.seed, args.eval_count), levels)
