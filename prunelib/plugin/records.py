"""What bench tests record for the report, beside pytest-benchmark's own JSON.

pytest-benchmark drops every entry (``extra_info`` included) under ``--benchmark-disable``, as
in the CI gate; the bench suite keeps its own copy of each entry's ``extra_info`` so the report
still has accuracy, sparsity and sizes, and extra tables (e.g. sensitivity) travel the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest

from prunelib.results.schema import CHECKPOINT_KEYS
from prunelib.sweep.spec import SweepSpec


@dataclass
class Records:
    """Entries in pytest-benchmark's JSON shape (without stats) and extra tables by name."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, pd.DataFrame] = field(default_factory=dict)


RECORDS = pytest.StashKey[Records]()


def records_of(config: pytest.Config) -> Records:
    """The session's :class:`Records`, created on first use."""
    if RECORDS not in config.stash:
        config.stash[RECORDS] = Records()
    return config.stash[RECORDS]


def record_entry(config: pytest.Config, node: pytest.Item, group: str | None, extra_info: dict[str, Any]) -> None:
    """Keep a benchmark's identity and ``extra_info`` (a copy) for the report."""
    records_of(config).entries.append(
        {"name": node.name, "fullname": node.nodeid, "group": group, "extra_info": dict(extra_info), "stats": None}
    )


def record_extra(config: pytest.Config, name: str, frame: pd.DataFrame) -> None:
    """Add ``frame`` to the report's extra tables under ``name``, appending to an existing one."""
    extras = records_of(config).extras
    extras[name] = frame if name not in extras else pd.concat([extras[name], frame], ignore_index=True)


def merge_entries(bench: dict[str, Any], records: Records) -> dict[str, Any]:
    """``bench`` plus the recorded entries pytest-benchmark did not keep (e.g. under --benchmark-disable)."""
    timed = bench.get("benchmarks") or []
    have = {e.get("fullname") for e in timed if isinstance(e, dict)}
    missing = [e for e in records.entries if e["fullname"] not in have]
    return {**bench, "benchmarks": [*timed, *missing]}


def records_to_json(bench: dict[str, Any], records: Records) -> dict[str, Any]:
    """The entries ``bench`` lacks and the extra tables, as plain JSON, so a saved JSON rebuilds the whole report.

    Stored under :data:`prunelib.report.writer.RECORDS_KEY`; :func:`~prunelib.report.writer.saved_run` reads it back.
    """
    timed = {e.get("fullname") for e in bench.get("benchmarks") or [] if isinstance(e, dict)}
    return {
        "entries": [e for e in records.entries if e["fullname"] not in timed],
        "extras": {
            name: json.loads(frame.to_json(orient="split", index=False)) for name, frame in records.extras.items()
        },
    }


def session_bench(session: pytest.Session, records: Records) -> dict[str, Any]:
    """The session's pytest-benchmark JSON dict with the recorded entries merged in."""
    from prunelib.report.rows import bench_from_session

    return merge_entries(bench_from_session(session), records)


def versions() -> dict[str, str]:
    """``torch_version`` and ``onnxruntime_version`` as the extra_info contract names them."""
    from prunelib.measure.machine import package_versions

    found = package_versions(("torch", "onnxruntime"))
    return {"torch_version": found.get("torch", "n/a"), "onnxruntime_version": found.get("onnxruntime", "n/a")}


def extra_info(
    spec: SweepSpec,
    iteration: int,
    metrics: dict[str, Any],
    *,
    runtime: str,
    batch_size: int,
    threads: int,
    precision: str = "fp32",
) -> dict[str, Any]:
    """The ``extra_info`` of one benchmark (:data:`prunelib.results.schema.EXTRA_INFO_KEYS`).

    ``metrics`` is the cached static-metrics row of the checkpoint (the family's metric,
    sparsity, parameter counts, sizes on disk, flops); timing is pytest-benchmark's own. The
    metric's value sits under its own name (``accuracy``, ``wer``, ...), named by ``metric``.
    """
    metric = spec.resolve().metric
    return {
        "family": spec.family,
        "dataset": spec.dataset,
        "model": spec.model,
        "method": spec.method,
        "iteration": int(iteration),
        "amount": float(spec.amount),
        "metric": metric.name,
        "higher_is_better": metric.higher_is_better,
        metric.name: metrics.get(metric.name),
        **{k: metrics[k] for k in CHECKPOINT_KEYS if k in metrics},
        "runtime": runtime,
        "batch_size": int(batch_size),
        "threads": int(threads),
        "seed": int(spec.seed),
        "precision": precision,
        **versions(),
    }
