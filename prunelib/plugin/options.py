"""The bench suite's ``--prune-*`` pytest options: names, help, and how a value is read.

Registered by the root ``conftest.py``; a value comes from the command line, else from the ini
setting of the same name in ``pyproject.toml``, else prunelib's default.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

#: (option, ini name, help). Values left unset fall back to the ini value in pyproject.toml, then to prunelib's default.
OPTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "--prune-datasets",
        "prune_datasets",
        "comma list of DATASET:MODEL pairs, e.g. mnist5k:lenet300,sst2:sst2-mlp,fsdd:sew-fsdd (default mnist5k:lenet300)",
    ),
    (
        "--prune-family",
        "prune_family",
        "comma list of families to load: registered names (`python -m prunelib families`) or MODULE:CALLABLE "
        "from your repository; without --prune-datasets each runs its default data set and model",
    ),
    (
        "--prune-methods",
        "prune_methods",
        "comma list of pruning methods (default no-retrain,imp-rewind,imp-finetune,random; also imp-late-rewind, "
        "imp-lr-rewind, structured-no-retrain, structured-imp-rewind, structured-imp-finetune, layerwise)",
    ),
    (
        "--prune-iterations",
        "prune_iterations",
        "pruning steps after the dense model (default 10; 5 with --prune-quick)",
    ),
    (
        "--prune-amount",
        "prune_amount",
        "fraction of the remaining weights pruned per step (default 0.33; 0.5 with --prune-quick)",
    ),
    ("--prune-seed", "prune_seed", "seed of data split, init, batch order and random masks (default 0)"),
    (
        "--prune-seeds",
        "prune_seeds",
        "comma list of seeds, e.g. 0,1,2: every sweep runs once per seed (test ids end in -s<seed>); not with --prune-seed",
    ),
    (
        "--prune-rewind-epoch",
        "prune_rewind_epoch",
        "imp-late-rewind rewinds survivors to the weights after this many epochs of dense training (default 1)",
    ),
    (
        "--prune-scheduler",
        "prune_scheduler",
        "build every sweep on Dask before timing: local:N (a LocalCluster of N processes) or tcp://host:8786 "
        "(a running cluster); needs prunelib[cluster] (default: serial, in the test process)",
    ),
    (
        "--prune-unit-criterion",
        "prune_unit_criterion",
        "structured methods rank units by: l2 (all coupled weights) or bn-scale (BatchNorm |gamma|) (default l2)",
    ),
    (
        "--prune-unit-scope",
        "prune_unit_scope",
        "structured methods count units per layer (each group loses the amount) or global (default layer)",
    ),
    (
        "--prune-unit-round",
        "prune_unit_round",
        "structured methods round the units each group keeps to a multiple of N, e.g. 8 for SIMD-friendly widths (default 1)",
    ),
    (
        "--prune-max-tokens",
        "prune_max_tokens",
        "token data sets (sst2) cut every sentence to at most N tokens, so one long row cannot set the padded "
        "width and memory of all (default 64; SST-2's longest row has 52)",
    ),
    (
        "--prune-runtimes",
        "prune_runtimes",
        "runtimes timed: torch, onnxruntime, torch-sparse, executorch (pip install prunelib[executorch]) (default torch,onnxruntime)",
    ),
    ("--prune-batches", "prune_batches", "batch sizes timed: latency at 1 and a throughput batch (default 1,256)"),
    (
        "--prune-precisions",
        "prune_precisions",
        "value precisions measured besides fp32: fp16, int8 (default fp16,int8)",
    ),
    (
        "--prune-threads",
        "prune_threads",
        "intra-op threads for torch, ONNX Runtime and ExecuTorch, recorded in every result (default 1); a comma "
        "list (e.g. 1,4 on a Pi 4) times inference at each",
    ),
    (
        "--prune-cooldown",
        "prune_cooldown",
        "seconds to wait at most, before each timed benchmark, for the SoC to cool below --prune-cooldown-below (default 0: off)",
    ),
    (
        "--prune-cooldown-below",
        "prune_cooldown_below",
        "SoC temperature in °C that --prune-cooldown waits for (default 65)",
    ),
    (
        "--prune-reports",
        "prune_reports",
        "folder receiving one report folder per run plus a 'latest' link (default reports/)",
    ),
    (
        "--prune-history",
        "prune_history",
        "folder of the runs-over-time dashboard (index.html), redrawn at the end of every run from --prune-reports "
        "and pytest-benchmark's storage; each report links to it (needs prunelib[history]; default: off)",
    ),
    (
        "--prune-cache-dir",
        "prune_cache_dir",
        "checkpoint cache (default $PRUNELIB_CACHE_DIR/bench or ~/.cache/prunelib/bench)",
    ),
)


def add_options(parser: pytest.Parser) -> None:
    """Register the ``prunelib`` option group and its ini settings."""
    group = parser.getgroup("prunelib", "prunelib pruning benchmarks")
    group.addoption(
        "--prune-data-dir",
        default=os.environ.get("PRUNELIB_DATA_DIR"),
        help="data root holding one folder per data set (sst2/, fsdd/, mnist/, ...); default $PRUNELIB_DATA_DIR",
    )
    for flag, ini, text in OPTIONS:
        group.addoption(flag, default=None, help=text)
        parser.addini(ini, help=text, default=None)
    group.addoption(
        "--prune-embeddings",
        action="store_true",
        default=False,
        help="unstructured pruning also prunes embedding tables (off: embeddings stay dense, as in the lab)",
    )
    group.addoption(
        "--prune-keep-hostname",
        action="store_true",
        default=False,
        help="keep the host name (pytest-benchmark's machine_info.node) in the JSON and the report (off: dropped)",
    )
    group.addoption(
        "--prune-quick",
        action="store_true",
        default=False,
        help="CI gate: fewer iterations (5 x 50 %%) and epochs; asserts correctness, use with --benchmark-disable",
    )


def prune_option(config: pytest.Config, flag: str) -> Any:
    """A ``--prune-*`` value: the command line, else the ini value, else ``None``."""
    value = config.getoption(flag)
    if value is None:
        ini = dict((f, i) for f, i, _ in OPTIONS).get(flag)
        value = config.getini(ini) if ini else None
    return value or None
