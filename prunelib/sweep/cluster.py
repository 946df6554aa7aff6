"""The build stage on Dask.distributed: every sweep's train → prune → retrain as one task on a cluster's workers.

Only what is expensive and deterministic runs there: :func:`prunelib.sweep.cache.prepare_sweep` of
each (family, method, seed) spec, which writes the shared checkpoint cache. Its entries are keyed by
content hashes and built under a file lock, renamed into place atomically: when two workers race for
the same entry (two methods sharing one dense model), one builds it and the other reuses it, so the
cache a cluster fills equals the one a serial run fills. Timing never runs here: it runs afterwards
on the device, from the cache (the bench suite's timed tests, ``prunelib sweep``).

``scheduler`` is ``local:N`` (a :class:`distributed.LocalCluster` of N worker processes with one
thread each, on this machine) or the address of a running scheduler (``tcp://host:8786``, e.g. one
that dask-jobqueue started on Slurm). Dask is the optional extra ``prunelib[cluster]``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from prunelib.sweep.spec import SweepSpec

#: What to install when ``dask.distributed`` is missing.
EXTRA = "pip install 'prunelib[cluster]' (dask[distributed])"


class ClusterMissing(RuntimeError):
    """``dask.distributed`` is not installed; the message names the extra."""


@dataclass(frozen=True)
class Built:
    """One sweep built on the cluster: its spec, cache folder and metrics rows (plain values, no timing)."""

    spec: SweepSpec
    folder: str
    rows: tuple[dict[str, Any], ...]


def distributed_module() -> Any:
    """``dask.distributed``, or :class:`ClusterMissing` naming the extra."""
    try:
        import distributed
    except ImportError:
        raise ClusterMissing(f"a Dask scheduler needs dask.distributed: {EXTRA}") from None
    return distributed


def local_workers(scheduler: str) -> int | None:
    """N of ``local:N``; ``None`` for an address; ``ValueError`` for anything else."""
    kind, sep, rest = scheduler.partition(":")
    if kind == "local" and sep:
        if rest.isdigit() and int(rest) >= 1:
            return int(rest)
        raise ValueError(f"scheduler {scheduler!r}: local:N needs N >= 1 worker processes")
    if kind in ("tcp", "tls") and rest.startswith("//") and len(rest) > 2:
        return None
    raise ValueError(f"scheduler {scheduler!r} is neither local:N (e.g. local:2) nor tcp://host:port")


@contextmanager
def client_for(scheduler: str) -> Iterator[Any]:
    """A connected :class:`distributed.Client`: a new LocalCluster for ``local:N`` (closed afterwards), else the address."""
    workers = local_workers(scheduler)
    distributed = distributed_module()
    if workers is None:
        with distributed.Client(scheduler) as client:
            yield client
        return
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    )
    try:
        with distributed.Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def build_one(spec: SweepSpec, cache_root: str, threads: int = 1) -> Built:
    """The task: load ``spec``'s data and build (or reuse) its cache entry. Runs in a worker process.

    ``threads``: torch's intra-op threads, those the serial build would use (the bench's first
    ``--prune-threads``), so a kernel that sums in another order on more threads cannot make the
    cluster's checkpoints differ from a serial run's.
    """
    import torch

    from prunelib.sweep.cache import prepare_sweep
    from prunelib.sweep.loaded import load

    torch.set_num_threads(threads)
    artifacts = prepare_sweep(spec, load(spec), cache_root)
    rows = tuple(artifacts.row(k) for k in range(spec.iterations + 1))
    return Built(spec, str(artifacts.folder), rows)


def build_all(
    specs: Sequence[SweepSpec],
    cache_root: Path | str,
    scheduler: str,
    out: TextIO | None = None,
    threads: int = 1,
    task: Callable[[SweepSpec, str, int], Built] = build_one,
) -> list[Built]:
    """Build every spec's cache entry as one Dask task each; returns them in ``specs`` order.

    Prints the dashboard address and one line per finished task (``[k/n] label seed s``) to
    ``out`` (default stderr). A failing task raises its error here, after the others were given
    the chance to finish (each entry is complete or resumable on its own).
    """
    out = out or sys.stderr
    specs = list(dict.fromkeys(specs))
    distributed = distributed_module()
    with client_for(scheduler) as client:
        print(
            f"prunelib: building {len(specs)} sweeps on Dask ({scheduler}); dashboard {client.dashboard_link}", file=out
        )
        futures = [client.submit(task, s, str(cache_root), threads, key=f"build-{i}-{s.label}-s{s.seed}", pure=False)
                   for i, s in enumerate(specs)]  # fmt: skip
        index = {f.key: i for i, f in enumerate(futures)}
        done: dict[int, Built] = {}
        errors: list[tuple[SweepSpec, BaseException]] = []
        for n, future in enumerate(distributed.as_completed(futures), 1):
            i = index[future.key]
            if future.status == "error":
                errors.append((specs[i], future.exception()))
                print(f"prunelib: [{n}/{len(specs)}] {specs[i].label} seed {specs[i].seed}: FAILED", file=out)
                continue
            done[i] = future.result()
            print(f"prunelib: [{n}/{len(specs)}] {specs[i].label} seed {specs[i].seed} built", file=out)
    if errors:
        spec, exc = errors[0]
        raise RuntimeError(f"building {spec.label} (seed {spec.seed}) on Dask failed: {exc}") from exc
    return [done[i] for i in range(len(specs))]
