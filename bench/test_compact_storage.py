"""Compact sparse storage of every checkpoint: size against the entropy bound, load time, exact round trip.

The lab's COO file grew with pruning; the compact container must stay within 1.10x of the
entropy bound (plus 4 KiB) and below dense at every iteration. Each row also lands in the
report's ``compact-storage`` table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from prunelib.measure.thermal import read_board, thermal_extra_info
from prunelib.plugin.records import extra_info, record_extra
from prunelib.storage.compact import load_compact, save_compact
from prunelib.storage.lab import disk_dense_bytes, disk_sparse_bytes
from prunelib.storage.modelfile import model_tensors
from prunelib.sweep.cache import load_model

BOUND_FACTOR, FILE_OVERHEAD = 1.10, 4096
#: The file's JSON header names every tensor (shape, dtype, encoding): bytes the entropy bound does not
#: count. Negligible for the lab's MLPs (9 entries); a small model with many tensors (a tiny SEW: ~50) needs it.
HEADER_PER_TENSOR = 256


def test_compact_storage(benchmark, checkpoint_case, suite, tmp_path: Path, request) -> None:
    spec, k = checkpoint_case
    sweep = suite.sweep(spec)
    model = load_model(sweep, suite.loaded(spec), k)
    tensors = model_tensors(model)
    stats = save_compact(tensors, tmp_path / "model.prunelib", "fp32")
    dense, coo = disk_dense_bytes(model), disk_sparse_bytes(model)
    ratio = stats.disk_compact_bytes / stats.disk_bound_bytes
    print(
        f"\n{spec.label} it{k:02d}: compact {stats.disk_compact_bytes:,} B, bound {stats.disk_bound_bytes:,} B, "
        f"ratio {ratio:.3f}; dense {dense:,} B; lab COO {coo:,} B"
    )
    record_extra(
        request.config,
        "compact-storage",
        pd.DataFrame(
            [
                {
                    "dataset": spec.dataset,
                    "model": spec.model,
                    "method": spec.method,
                    "iteration": k,
                    "sparsity": sweep.row(k)["sparsity"],
                    "disk_compact_bytes": stats.disk_compact_bytes,
                    "disk_bound_bytes": stats.disk_bound_bytes,
                    "compact_over_bound": round(ratio, 4),
                    "disk_dense_bytes": dense,
                    "disk_sparse_bytes": coo,
                }
            ]
        ),
    )
    allowance = FILE_OVERHEAD + HEADER_PER_TENSOR * len(stats.entries)
    assert stats.disk_compact_bytes <= BOUND_FACTOR * stats.disk_bound_bytes + allowance
    assert stats.disk_compact_bytes < dense, "the compact file must never be larger than dense"

    before = read_board()
    loaded = benchmark(load_compact, tmp_path / "model.prunelib")
    board = thermal_extra_info(before, read_board())
    assert loaded.keys() == tensors.keys()
    for name, t in tensors.items():
        assert loaded[name].dtype == t.dtype and torch.equal(loaded[name], t), f"{name} changed in the round trip"
    benchmark.group = f"{spec.dataset}-{spec.model}-compact-load"
    info = extra_info(
        spec,
        k,
        {**sweep.row(k), "disk_compact_bytes": stats.disk_compact_bytes, "disk_bound_bytes": stats.disk_bound_bytes},
        runtime="compact-load",
        batch_size=1,
        threads=suite.opts.threads,
    )
    benchmark.extra_info.update({**info, **board})
