"""The build stage on Dask: a LocalCluster fills the cache exactly as a serial run does."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch

from prunelib.storage import entries
from prunelib.sweep.cache import prepare_sweep
from prunelib.sweep.cluster import ClusterMissing, build_all, distributed_module, local_workers
from prunelib.sweep.loaded import load
from prunelib.sweep.spec import SweepSpec

#: Two methods sharing one dense model (the workers race for it), one step each, quick MNIST-5k.
SPECS = [SweepSpec("mlp", "mnist5k", "lenet300", m, 0.5, 1, quick=True) for m in ("imp-rewind", "random")]


def test_a_scheduler_is_local_n_or_an_address() -> None:
    assert local_workers("local:2") == 2 and local_workers("tcp://10.0.0.5:8786") is None
    for bad in ("local:0", "local:x", "local", "host:8786", "tcp:/x"):
        with pytest.raises(ValueError, match="scheduler"):
            local_workers(bad)


def test_without_dask_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ClusterMissing, match=r"prunelib\[cluster\]"):
        distributed_module()


def cache_contents(root: Path) -> dict[str, dict]:
    """Every entry of a cache by folder name: its files' sha256 (checkpoints with their masks, metrics.csv)."""
    out = {}
    for folder in sorted(root.glob("*-*")):
        if folder.is_dir() and not folder.name.startswith("."):
            manifest = entries.read_manifest(folder)
            out[folder.name] = {"files": manifest["files"], "kind": manifest["kind"]}
    return out


def test_a_local_cluster_builds_what_a_serial_run_builds(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    log = io.StringIO()
    built = build_all(SPECS, tmp_path / "dask", "local:2", out=log)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (and the bench's default --prune-threads)
    try:
        serial = [prepare_sweep(s, load(s), tmp_path / "serial") for s in SPECS]
    finally:
        torch.set_num_threads(threads)
    dask, plain = cache_contents(tmp_path / "dask"), cache_contents(tmp_path / "serial")
    assert sorted(v["kind"] for v in dask.values()) == ["dense", "sweep", "sweep"]  # one dense entry, shared
    assert dask == plain  # same keys, same masks and weights (file hashes), same metrics.csv
    assert [Path(b.folder).name for b in built] == [a.folder.name for a in serial]
    assert [list(b.rows) for b in built] == [[a.row(k) for k in (0, 1)] for a in serial]
    assert json.dumps(built[0].rows[1]["accuracy"]) == json.dumps(serial[0].row(1)["accuracy"])
    text = log.getvalue()
    assert "dashboard http" in text and "[2/2]" in text and "local:2" in text


def failing(spec: SweepSpec, root: str, threads: int):
    raise ValueError(f"no data for {spec.label}")


def test_a_failed_build_names_its_sweep(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    with pytest.raises(RuntimeError, match=r"building mnist5k-lenet300-imp-rewind \(seed 0\) on Dask failed"):
        build_all(SPECS[:1], tmp_path, "local:1", out=io.StringIO(), task=failing)
