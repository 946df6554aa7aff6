"""A synthetic history of bench runs in pytest-benchmark's formats, for the history tests and the README's screenshot.

``write_history(root, runs=N)`` writes, under ``root``:

- ``.benchmarks/Linux-CPython-3.11-64bit/NNNN_<commit>.json``: autosaved runs of a Pi 4 (aarch64),
  summaries only (as ``--benchmark-autosave`` saves them: no raw rounds);
- ``reports/<time>-<id>/{benchmark.json,README.md}``: the same Pi runs' report folders (the
  report's JSON is generated a moment later, so its ``datetime`` differs; the timings are equal);
- ``laptop/run-N.json``: ``--benchmark-json`` files of an x86-64 laptop, raw rounds included.

The Pi's latency creeps up 25 % at its third run (a change), and imp-rewind's accuracy at the last
iteration falls 3 points at its last run (another); the laptop's ONNX Runtime gets 30 % faster at
its third run (a change with a Mann-Whitney p-value: its files keep the rounds).
"""

from __future__ import annotations

import copy
import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tests.report.test_writer import make_bench, make_entry

PI_METHODS = ("no-retrain", "imp-rewind")
LAPTOP_METHODS = ("imp-rewind",)
ITERATIONS = 3
RUNTIMES = ("torch", "onnxruntime")
START = datetime(2026, 5, 1, 22, 0, tzinfo=timezone.utc)
STORAGE = "Linux-CPython-3.11-64bit"


def laptop_info() -> dict[str, Any]:
    return {
        "machine": "x86_64",
        "python_version": "3.11.7",
        "system": "Linux",
        "release": "6.1.0",
        "cpu": {"brand_raw": "Intel(R) Core(TM) i7-1165G7", "count": 8, "arch_string_raw": "x86_64"},
        "prunelib": {"cpu_model": "Intel(R) Core(TM) i7-1165G7", "versions": {"prunelib": "0.1.0", "torch": "2.13.0"}},
    }


def rounds_around(median: float, n: int = 40) -> list[float]:
    """``n`` deterministic rounds whose median is ``median`` and IQR about 4 % of it."""
    return [median * (1 + 0.04 * math.sin(1.7 * i) + (0.3 if i % 17 == 16 else 0.0)) for i in range(n)]


def run_bench(index: int, *, machine: str, when: datetime, rounds: bool) -> dict[str, Any]:
    methods = PI_METHODS if machine == "pi" else LAPTOP_METHODS
    creep = 1.25 if machine == "pi" and index >= 2 else 1.0
    entries = []
    for m in methods:
        for it in range(ITERATIONS):
            for rt in RUNTIMES:
                e = make_entry(method=m, iteration=it, runtime=rt, batch_size=1)
                x = e["extra_info"]
                x["metric"], x["higher_is_better"] = "accuracy", True
                x["disk_compact_bytes"] = int(x["disk_sparse_bytes"] * 0.6)
                x["precision"] = "fp32"
                x["accuracy"] = round(x["accuracy"] - 0.001 * index, 6)
                if machine == "pi" and m == "imp-rewind" and it == ITERATIONS - 1 and index == 3:
                    x["accuracy"] -= 0.03
                s = e["stats"]
                scale = creep * (0.35 if machine == "laptop" else 1.0) * (1 + 0.004 * index)
                if machine == "laptop" and rt == "onnxruntime" and index >= 2:
                    scale *= 0.7
                for k in ("min", "max", "mean", "median", "q1", "q3", "iqr", "stddev"):
                    if isinstance(s.get(k), (int, float)):
                        s[k] = s[k] * scale
                s["iqr"] = s["q3"] - s["q1"]
                if rounds:
                    s["data"] = rounds_around(s["median"])
                entries.append(e)
    bench = make_bench(entries, when=when.isoformat())
    bench["commit_info"] = {"id": f"{index + 1:x}{'abc1234def' * 4}"[:40], "dirty": False, "branch": "main"}
    if machine == "laptop":
        bench["machine_info"] = laptop_info()
    else:
        bench["machine_info"].pop("node", None)
        bench["machine_info"]["prunelib"] = {
            "cpu_model": "Raspberry Pi 4 Model B Rev 1.4",
            "versions": {"prunelib": "0.1.0"},
        }
    return bench


def write_history(root: Path, runs: int = 4, laptop_runs: int = 3) -> dict[str, Path]:
    """Write the history (see the module) under ``root``; returns its folders."""
    storage = root / ".benchmarks" / STORAGE
    reports = root / "reports"
    laptop = root / "laptop"
    for folder in (storage, reports, laptop):
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(runs):
        when = START + timedelta(days=i)
        bench = run_bench(i, machine="pi", when=when, rounds=False)
        commit = bench["commit_info"]["id"]
        (storage / f"{i + 1:04d}_{commit}.json").write_text(json.dumps(bench, indent=1))
        report = copy.deepcopy(bench)
        report["datetime"] = (when + timedelta(seconds=2)).isoformat()
        folder = reports / f"{when + timedelta(seconds=3):%Y%m%dT%H%M%SZ}-{commit[:6]}"
        folder.mkdir()
        (folder / "benchmark.json").write_text(json.dumps(report, indent=1))
        (folder / "README.md").write_text(f"# Pruning run report\n\nrun {i}\n")
    for i in range(laptop_runs):
        when = START + timedelta(days=i, hours=3)
        (laptop / f"run-{i}.json").write_text(json.dumps(run_bench(i, machine="laptop", when=when, rounds=True)))
    return {"storage": root / ".benchmarks", "reports": reports, "laptop": laptop}
