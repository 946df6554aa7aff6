"""Every saved run of the bench as one tidy table: run x benchmark x metric.

Sources, read only (nothing is ever written into them):

- pytest-benchmark storage folders (``--benchmark-autosave`` / ``--benchmark-save``:
  ``.benchmarks/<machine>/NNNN_<commit>.json``);
- ``--benchmark-json`` files;
- the suite's report folders (``reports/<UTC time>-<id>/benchmark.json`` beside a ``README.md``),
  whose JSON also holds the entries pytest-benchmark dropped (untimed tests, see
  :func:`prunelib.report.writer.saved_run`).

A folder is searched recursively (symbolic links such as ``reports/latest`` are not followed, and
half-written ``.partial-*`` report folders are skipped). A file that is not valid JSON or not a
pytest-benchmark run gets a warning naming it and is skipped. The same run found twice (its
autosaved file and its report folder) is kept once, with its report folder: two files are one run
when they share machine, commit and every timed entry's median.

**Machine.** pytest-benchmark's storage folder name (``Linux-CPython-3.11-64bit``) does not tell a
Pi from a laptop, and the host name is dropped by default (``--prune-keep-hostname``), so a run's
machine is ``<CPU brand> · <architecture> · <OS>`` from ``machine_info`` (py-cpuinfo's
``brand_raw``, else prunelib's ``cpu_model``; ``machine``; ``system``), e.g.
``Cortex-A72 · aarch64 · Linux``; the storage folder name only when none of those is recorded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from prunelib.report.compare import RunFileError, key_of, load_run
from prunelib.report.rows import benchmark_entries, benchmark_rows
from prunelib.report.writer import saved_run
from prunelib.results.schema import row_metrics

#: (metric column, kind) of the tidy table besides the family's own metric (kind ``quality``).
METRICS: tuple[tuple[str, str], ...] = (
    ("latency_median_s", "latency"),
    ("latency_iqr_s", "latency"),
    ("latency_q1_s", "latency"),
    ("latency_q3_s", "latency"),
    ("latency_mean_s", "latency"),
    ("latency_std_s", "latency"),
    ("latency_min_s", "latency"),
    ("latency_max_s", "latency"),
    ("rounds", "latency"),
    ("disk_dense_bytes", "size"),
    ("disk_sparse_bytes", "size"),
    ("disk_compact_bytes", "size"),
    ("disk_bound_bytes", "size"),
    ("sparsity", "sparsity"),
    ("sparsity_model", "sparsity"),
    ("neuron_sparsity", "sparsity"),
)
#: Per-run columns of every row (and of :attr:`History.runs`).
RUN_COLUMNS: tuple[str, ...] = (
    "run",
    "datetime",
    "commit",
    "dirty",
    "machine",
    "storage",
    "source",
    "report",
    "torch_version",
    "onnxruntime_version",
    "prunelib_version",
)
#: Per-benchmark columns of every row.
BENCH_COLUMNS: tuple[str, ...] = (
    "benchmark",
    "group",
    "dataset",
    "model",
    "method",
    "iteration",
    "runtime",
    "batch_size",
    "precision",
    "threads",
    "throttled",
)
COLUMNS: tuple[str, ...] = (*RUN_COLUMNS, *BENCH_COLUMNS, "metric", "kind", "value", "higher_is_better")
#: Folders never searched: half-written report folders, the latest-link staging, tool folders.
SKIP_PREFIXES: tuple[str, ...] = (".partial-", ".latest-", ".git", ".venv", "__pycache__", "node_modules")


class HistoryInputError(ValueError):
    """A path that cannot be read at all (missing); the message names it."""


@dataclass(frozen=True)
class RunFile:
    """A JSON file to read: where it sits (report folder, pytest-benchmark storage folder)."""

    path: Path
    report: Path | None = None
    storage: str | None = None


@dataclass(frozen=True)
class History:
    """The tidy ``table`` (:data:`COLUMNS`), one row per run in ``runs`` (oldest first), the raw timed rounds
    per ``(run, benchmark)`` where a file kept them (``--benchmark-json``, ``--benchmark-save-data``), and
    the ``warnings`` of skipped files."""

    table: pd.DataFrame
    runs: pd.DataFrame
    rounds: dict[tuple[str, str], tuple[float, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _skipped(name: str) -> bool:
    return name.startswith(SKIP_PREFIXES)


def classify(path: Path) -> RunFile:
    """A JSON file with its report folder (``benchmark.json`` beside a ``README.md``) or storage folder
    (``NNNN_*.json``: the parent folder's name is pytest-benchmark's machine id)."""
    if path.name == "benchmark.json" and (path.parent / "README.md").is_file():
        return RunFile(path, report=path.parent)
    stem = path.name.split("_", 1)[0]
    if len(stem) == 4 and stem.isdigit() and "_" in path.name:
        return RunFile(path, storage=path.parent.name)
    return RunFile(path)


def find_sources(paths: Sequence[Path | str]) -> list[RunFile]:
    """The JSON files under ``paths`` (files as given, folders searched), each once, in a stable order.

    Raises:
        HistoryInputError: a path that does not exist.
    """
    found: dict[Path, RunFile] = {}
    for item in paths:
        p = Path(item)
        if p.is_file():
            files = [p]
        elif p.is_dir():
            files = []
            for top, dirs, names in os.walk(p):  # followlinks=False: reports/latest is not read twice
                dirs[:] = sorted(d for d in dirs if not _skipped(d))
                files += [Path(top) / n for n in sorted(names) if n.endswith(".json")]
        else:
            raise HistoryInputError(f"no such file or folder: {p}")
        for f in files:
            found.setdefault(f.resolve(), classify(f))
    return list(found.values())


def machine_id(machine_info: Any, storage: str | None = None) -> str:
    """``<CPU brand> · <architecture> · <OS>`` of a run (see the module's notes), else ``storage``."""
    info: dict[str, Any] = machine_info if isinstance(machine_info, dict) else {}
    cpu = info.get("cpu") if isinstance(info.get("cpu"), dict) else {}
    ours = info.get("prunelib") if isinstance(info.get("prunelib"), dict) else {}
    brand = (cpu or {}).get("brand_raw") or (ours or {}).get("cpu_model") or info.get("processor")
    arch = info.get("machine") or (ours or {}).get("machine")
    system = info.get("system")
    if not (brand or arch or system):
        return storage or "unknown machine"
    return " · ".join(str(v or "?") for v in (brand, arch, system))


def _version(bench: dict[str, Any], key: str, package: str) -> str:
    """``extra_info[key]`` of the first entry holding it, else prunelib's machine description, else ``n/a``."""
    for entry in benchmark_entries(bench):
        extra = entry.get("extra_info")
        if isinstance(extra, dict) and extra.get(key) not in (None, "", "n/a"):
            return str(extra[key])
    info = bench.get("machine_info") if isinstance(bench.get("machine_info"), dict) else {}
    ours = (info or {}).get("prunelib")
    versions = ours.get("versions") if isinstance(ours, dict) else None
    return str(versions.get(package, "n/a")) if isinstance(versions, dict) else "n/a"


def _when(bench: dict[str, Any]) -> pd.Timestamp | None:
    try:
        ts = pd.Timestamp(str(bench.get("datetime") or ""))
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT:
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _fingerprint(bench: dict[str, Any], machine: str, commit: str, when: pd.Timestamp) -> tuple[Any, ...]:
    """One run's identity across the files it was saved as (see the module's notes)."""
    timed = sorted(
        (str(e.get("fullname")), float(e["stats"]["median"]))
        for e in benchmark_entries(bench)
        if isinstance(e.get("stats"), dict) and isinstance(e["stats"].get("median"), (int, float))
    )
    return (machine, commit, tuple(timed)) if timed else (machine, commit, when.isoformat())


def read_run(src: RunFile) -> tuple[dict[str, Any] | None, str | None]:
    """``(run, None)`` for a pytest-benchmark run, else ``(None, warning naming the file)``."""
    try:
        bench = load_run(src.path)
    except RunFileError as exc:
        return None, f"skipped {src.path}: {exc}"
    if not isinstance(bench.get("machine_info"), dict) or _when(bench) is None:
        return None, f"skipped {src.path}: not a pytest-benchmark run (no machine_info or no datetime)"
    return saved_run(bench)[0], None


def _run_record(bench: dict[str, Any], src: RunFile) -> dict[str, Any]:
    commit = bench.get("commit_info") if isinstance(bench.get("commit_info"), dict) else {}
    return {
        "datetime": _when(bench),
        "commit": str((commit or {}).get("id") or "unknown"),
        "dirty": bool((commit or {}).get("dirty")),
        "machine": machine_id(bench.get("machine_info"), src.storage),
        "storage": src.storage or "",
        "source": str(src.path),
        "report": str(src.report) if src.report else "",
        "torch_version": _version(bench, "torch_version", "torch"),
        "onnxruntime_version": _version(bench, "onnxruntime_version", "onnxruntime"),
        "prunelib_version": _version(bench, "prunelib_version", "prunelib"),
    }


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "1.0")


def _rows_of(run: dict[str, Any], bench: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, tuple[float, ...]]]:
    """The tidy rows of one run, and its raw rounds per benchmark."""
    rows = benchmark_rows(bench)
    if rows.empty:
        return [], {}
    keys = [key_of(r) or f"name:{r['name']}" for _, r in rows.iterrows()]
    rows = rows.assign(benchmark=keys).drop_duplicates("benchmark", keep="first")
    quality = row_metrics(rows)
    out: list[dict[str, Any]] = []
    for (_, row), (_, q) in zip(rows.iterrows(), quality.iterrows()):
        base = dict(run)
        for c in BENCH_COLUMNS:
            v = row.get(c)
            base[c] = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
        base["precision"] = base["precision"] or "fp32"
        base["throttled"] = _flag(row.get("throttled"))
        values: list[tuple[str, str, Any, bool | None]] = [
            (q["name"], "quality", q["value"], bool(q["higher_is_better"]))
        ]
        values += [(m, kind, pd.to_numeric(row.get(m), errors="coerce"), None) for m, kind in METRICS]
        for metric, kind, value, higher in values:
            if value is not None and not pd.isna(value):
                out.append({**base, "metric": metric, "kind": kind, "value": float(value), "higher_is_better": higher})
    rounds: dict[str, tuple[float, ...]] = {}
    by_name = {str(e.get("fullname")): e for e in benchmark_entries(bench)}
    for key, fullname in zip(rows["benchmark"], rows["fullname"]):
        data = (by_name.get(str(fullname), {}).get("stats") or {}).get("data")
        if isinstance(data, list) and len(data) >= 2:
            rounds[key] = tuple(float(x) for x in data if isinstance(x, (int, float)))
    return out, rounds


def _label(when: pd.Timestamp, commit: str) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S} {commit[:7]}"


def build_history(paths: Sequence[Path | str]) -> History:
    """Read every run under ``paths`` into a :class:`History` (runs sorted by time, then source).

    Raises:
        HistoryInputError: a path that does not exist.
    """
    warnings: list[str] = []
    kept: dict[tuple[Any, ...], tuple[dict[str, Any], dict[str, Any]]] = {}
    for src in find_sources(paths):
        bench, warning = read_run(src)
        if bench is None:
            warnings.append(str(warning))
            continue
        run = _run_record(bench, src)
        key = _fingerprint(bench, run["machine"], run["commit"], run["datetime"])
        if key in kept:
            old, old_bench = kept[key]
            merged = {k: old[k] or run[k] for k in ("storage", "report")}
            if run["report"] and not old["report"]:  # the report folder's JSON also holds untimed entries
                kept[key] = ({**run, **merged}, bench)
            else:
                kept[key] = ({**old, **merged}, old_bench)
            continue
        kept[key] = (run, bench)
    ordered = sorted(kept.values(), key=lambda rb: (rb[0]["datetime"], rb[0]["source"]))
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    rounds: dict[tuple[str, str], tuple[float, ...]] = {}
    seen: dict[str, int] = {}
    for run, bench in ordered:
        name = _label(run["datetime"], run["commit"])
        seen[name] = seen.get(name, 0) + 1
        run = {"run": name if seen[name] == 1 else f"{name} #{seen[name]}", **run}
        runs.append(run)
        these, kept_rounds = _rows_of(run, bench)
        rows += these
        rounds.update({(run["run"], k): v for k, v in kept_rounds.items()})
    table = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    return History(
        table=table,
        runs=pd.DataFrame.from_records(runs, columns=list(RUN_COLUMNS)),
        rounds=rounds,
        warnings=tuple(warnings),
    )


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, benchmark) with a column per metric (the dashboard's shape)."""
    if table.empty:
        return pd.DataFrame(columns=[*RUN_COLUMNS, *BENCH_COLUMNS, "metric_name", "metric_value", "higher_is_better"])
    ids = [*RUN_COLUMNS, *BENCH_COLUMNS]
    first = table.drop_duplicates(["run", "benchmark"]).set_index(["run", "benchmark"])[
        [c for c in ids if c not in ("run", "benchmark")]
    ]
    values = table.pivot_table(index=["run", "benchmark"], columns="metric", values="value", aggfunc="first")
    quality = table[table["kind"] == "quality"].drop_duplicates(["run", "benchmark"]).set_index(["run", "benchmark"])
    out = first.join(values).join(
        quality[["metric", "value", "higher_is_better"]].rename(
            columns={"metric": "metric_name", "value": "metric_value"}
        )
    )
    return out.reset_index().sort_values(["datetime", "benchmark"], kind="stable").reset_index(drop=True)
