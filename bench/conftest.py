"""Parametrization and session state of the bench suite: which sweeps run, and their cached checkpoints.

Test ids read ``<dataset>-<model>-<method>-it<k>-<runtime>-b<batch>`` (families timed at batch
sizes) or ``<dataset>-<model>-<method>-it<k>-<runtime>`` (families timed on one fixed example,
such as a clip of audio). Everything expensive (training, every checkpoint of every schedule)
comes from :mod:`prunelib.sweep.cache`, built once per configuration and reused by later runs,
so a warm run only re-times. Every stage talks to the model through its family.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from prunelib.deploy.runtimes import runtime_missing
from prunelib.families.contract import Family
from prunelib.families.datadir import DataError, data_root
from prunelib.families.registry import get_family
from prunelib.plugin.options import prune_option
from prunelib.sweep.cache import SweepArtifacts, default_cache_root, prepare_sweep
from prunelib.sweep.loaded import Loaded, load
from prunelib.sweep.spec import SweepSpec
from prunelib.sweep.suite import OptionError, SuiteOptions, Triple, parse_options, sweep_specs

RAW_OPTIONS = (
    "datasets",
    "family",
    "methods",
    "iterations",
    "amount",
    "seed",
    "seeds",
    "rewind_epoch",
    "scheduler",
    "runtimes",
    "batches",
    "precisions",
    "threads",
)


@dataclass(frozen=True)
class InferenceCase:
    """One timed configuration: a checkpoint of a sweep, a runtime and a batch size."""

    spec: SweepSpec
    iteration: int
    runtime: str
    batch: int
    threads: int = 1
    several_threads: bool = False  # more than one --prune-threads value: the id names the count
    several_seeds: bool = False  # more than one --prune-seeds value: the id names the seed

    @property
    def id(self) -> str:
        batch = f"-b{self.batch}" if self.spec.resolve().batched else ""
        threads = f"-t{self.threads}" if self.several_threads else ""
        return f"{self.spec.label}-it{self.iteration:02d}-{self.runtime}{batch}{threads}{seed_suffix(self.spec, self.several_seeds)}"


def seed_suffix(spec: SweepSpec, several: bool) -> str:
    """``-s<seed>`` when a run has several seeds (ids of a one-seed run stay as they were)."""
    return f"-s{spec.seed}" if several else ""


#: Starts the one-line failure of every test whose requested data set cannot be read.
DATA_FAILURE = "prunelib: requested data set cannot be read: "


@dataclass
class Suite:
    """Parsed options plus a per-session memo of loaded families and data, and prepared sweeps."""

    opts: SuiteOptions
    cache_root: Path
    specs: list[SweepSpec]
    _loaded: dict[Any, Loaded] = field(default_factory=dict)
    _sweeps: dict[SweepSpec, SweepArtifacts] = field(default_factory=dict)
    _unreadable: dict[Any, str] = field(default_factory=dict)

    def loaded(self, spec: SweepSpec) -> Loaded:
        """Family, data and hyper-parameters of ``spec``, loaded once.

        A requested data set that cannot be read is never a skip: every test that needs it fails
        with one line (no traceback) naming the data set, the file and the problem; it is read
        once, not once per test.
        """
        key = (spec.family, spec.dataset, spec.model, spec.seed, spec.quick, spec.data_dir, spec.max_tokens)
        if key not in self._loaded and key not in self._unreadable:
            try:
                self._loaded[key] = load(spec)
            except DataError as exc:
                self._unreadable[key] = f"{DATA_FAILURE}{spec.dataset}:{spec.model} (family {spec.family}): {exc}"
        if key in self._unreadable:
            pytest.fail(self._unreadable[key], pytrace=False)
        return self._loaded[key]

    def sweep(self, spec: SweepSpec) -> SweepArtifacts:
        if spec not in self._sweeps:
            self._sweeps[spec] = prepare_sweep(spec, self.loaded(spec), self.cache_root)
        return self._sweeps[spec]

    def specs_of(self, triple: Triple) -> list[SweepSpec]:
        return [
            s for s in self.specs if (s.family, s.dataset, s.model) == (triple.family, triple.dataset, triple.model)
        ]


SUITE = pytest.StashKey[Suite]()


def suite_of(config: pytest.Config) -> Suite:
    if SUITE not in config.stash:
        raw: dict[str, object] = {name: config.getoption(f"--prune-{name.replace('_', '-')}") for name in RAW_OPTIONS}
        for name in (
            "runtimes",
            "batches",
            "precisions",
            "threads",
            "iterations",
            "amount",
            "seed",
            "seeds",
            "rewind_epoch",
            "scheduler",
            "unit_criterion",
            "unit_scope",
            "unit_round",
            "max_tokens",
            "cooldown",
            "cooldown_below",
        ):
            raw[name] = prune_option(config, f"--prune-{name.replace('_', '-')}")
        if raw["family"] is None:
            raw["family"] = prune_option(config, "--prune-family")
        raw["ini_datasets"] = config.getini("prune_datasets") or None
        raw["ini_methods"] = config.getini("prune_methods") or None
        raw["data_dir"] = config.getoption("--prune-data-dir")
        raw["quick"] = config.getoption("--prune-quick")
        raw["embeddings"] = config.getoption("--prune-embeddings")
        try:
            opts = parse_options(raw)
            data_root(opts.data_dir)  # a named data dir that does not exist stops the run before collection
        except (OptionError, ValueError) as exc:
            raise pytest.UsageError(f"--prune-data-dir: {exc}" if isinstance(exc, DataError) else str(exc)) from None
        if opts.scheduler is not None:
            from prunelib.sweep.cluster import ClusterMissing, distributed_module

            try:
                distributed_module()
            except ClusterMissing as exc:
                raise pytest.UsageError(f"--prune-scheduler {opts.scheduler}: {exc}") from None
        cache = prune_option(config, "--prune-cache-dir")
        config.stash[SUITE] = Suite(opts, Path(cache) if cache else default_cache_root(), sweep_specs(opts))
    return config.stash[SUITE]


#: One line per unreadable data set -> the number of tests that failed on it (this process's reports).
_unreadable_counts: dict[str, int] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Parse the options and probe every output path once, before collection: one usage error, before any work.

    Skip reasons are always listed in the summary (as with ``-rs``): a skip must say what did not run.
    """
    from prunelib.plugin.outputs import check_outputs

    check_outputs(config, suite_of(config).cache_root)
    if "s" not in config.option.reportchars and "a" not in config.option.reportchars:
        config.option.reportchars += "s"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """With ``--prune-scheduler``: build every sweep on Dask first, once, in the controlling process.

    Runs before pytest-xdist starts its workers and before any test; the timed tests then read the
    cache the cluster filled (timing never runs on the cluster). Sweeps a family cannot run are left
    to their tests' skips; a sweep whose data cannot be read fails in its tests, as without Dask.
    """
    config = session.config
    suite = suite_of(config)
    if suite.opts.scheduler is None or hasattr(config, "workerinput") or config.option.collectonly:
        return
    from prunelib.sweep.cluster import build_all

    specs = [s for s in suite.specs if not s.resolve().supports(method=s.method, dataset=s.dataset)]
    try:
        build_all(specs, suite.cache_root, suite.opts.scheduler, threads=suite.opts.threads)
    except (OSError, ValueError) as exc:  # no scheduler at that address, a bad address
        raise pytest.UsageError(f"--prune-scheduler {suite.opts.scheduler}: {exc}") from None
    except RuntimeError as exc:  # a build failed: its tests build it again and fail with the full error
        print(f"prunelib: {exc}", file=sys.stderr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count the failures on unreadable data sets (the controller sees them under xdist too)."""
    text = report.longreprtext if report.failed else ""
    for line in text.splitlines():
        if line.startswith(DATA_FAILURE):
            _unreadable_counts[line] = _unreadable_counts.get(line, 0) + 1
            break


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    for line, n in _unreadable_counts.items():
        terminalreporter.write_line(f"{line} ({n} tests failed on it)", red=True, bold=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """An unreadable requested data set is bad input: exit 4 (pytest's usage error), not 1 (a gate failed)."""
    if _unreadable_counts and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def _param(value: Any, id: str, reason: str = "") -> Any:
    """A parameter, skipped with ``reason`` when its family cannot run it."""
    return pytest.param(value, id=id, marks=[pytest.mark.skip(reason=reason)] if reason else [])


def _iterations(spec: SweepSpec) -> range:
    return range(spec.iterations + 1)


@dataclass(frozen=True)
class SpeedupCase:
    """One timed case of a family's speed-up pair: ``variant`` (dense or one pruning step) on ``runtime``."""

    family: Family
    runtime: str
    variant: str

    @property
    def id(self) -> str:
        return f"{Path(str(self.family.speedup_pair[1])).name}-{self.variant}-{self.runtime}"  # type: ignore[index]


def speedup_cases(opts: SuiteOptions) -> list[SpeedupCase]:
    """Every case the targets of the run's families need: each target's case and its dense baseline."""
    cases: list[SpeedupCase] = []
    for name in dict.fromkeys(t.family for t in opts.triples):
        family = get_family(name)
        if family.speedup_pair is None:
            continue
        wanted = [(t.baseline, "dense") for t in family.speedup_targets] + [
            (t.runtime, t.variant) for t in family.speedup_targets
        ]
        cases += [SpeedupCase(family, r, v) for r, v in dict.fromkeys(wanted)]
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    suite = suite_of(metafunc.config)
    opts = suite.opts
    names = set(metafunc.fixturenames)

    def sfx(spec: SweepSpec) -> str:
        return seed_suffix(spec, len(opts.seeds) > 1)

    if {"inference_case", "speech_case"} & names:
        batched = "inference_case" in names
        several = len(opts.timing_threads) > 1
        seeds = len(opts.seeds) > 1
        cases = [
            InferenceCase(spec, k, runtime, batch, threads, several, seeds)
            for spec in suite.specs
            if spec.resolve().batched == batched
            for k in _iterations(spec)
            for runtime in opts.runtimes
            for batch in (opts.batches if batched else (1,))
            for threads in opts.timing_threads
        ]
        params = [
            _param(
                c,
                c.id,
                c.spec.resolve().supports(method=c.spec.method, runtime=c.runtime) or runtime_missing(c.runtime),
            )
            for c in cases
        ]
        metafunc.parametrize("inference_case" if batched else "speech_case", params)
    if "sweep_spec" in names:
        metafunc.parametrize(
            "sweep_spec", [_param(s, s.label + sfx(s), s.resolve().supports(method=s.method)) for s in suite.specs]
        )
    if "checkpoint_case" in names:
        cases = [(s, k) for s in suite.specs for k in _iterations(s)]
        metafunc.parametrize(
            "checkpoint_case",
            [
                _param(c, f"{c[0].label}-it{c[1]:02d}{sfx(c[0])}", c[0].resolve().supports(method=c[0].method))
                for c in cases
            ],
        )
    if "precision_case" in names:
        cases = [
            (s, k, p)
            for s in suite.specs
            if s.resolve().batched
            for k in sorted({0, s.iterations // 2, s.iterations})
            for p in opts.precisions
        ]
        metafunc.parametrize(
            "precision_case",
            [
                _param(
                    c,
                    f"{c[0].label}-it{c[1]:02d}-{c[2]}{sfx(c[0])}",
                    c[0].resolve().supports(method=c[0].method, precision=c[2]),
                )
                for c in cases
            ],
        )
    if "speech_spec" in names:
        specs = [s for s in suite.specs if not s.resolve().batched]  # speech: one clip, not a batch of rows
        metafunc.parametrize("speech_spec", [_param(s, s.label + sfx(s)) for s in specs])
    if "speech_model_spec" in names:
        per_model = [s for s in suite.specs if not s.resolve().batched and s.method == "no-retrain"]
        metafunc.parametrize(
            "speech_model_spec", [_param(s, f"{s.dataset}-{Path(s.model).name}{sfx(s)}") for s in per_model]
        )
    if "speedup_case" in names:
        cases = speedup_cases(opts)
        metafunc.parametrize(
            "speedup_case",
            [_param(c, c.id, c.family.supports(runtime=c.runtime) or runtime_missing(c.runtime)) for c in cases],
        )
    own = getattr(metafunc.module, "parametrize_with_suite", None)
    if own is not None:  # a bench module's own cases (bench/test_whisper.py)
        own(metafunc, suite)
    if "pair" in names:
        triples = [t for t in opts.triples if suite.specs_of(t)]
        metafunc.parametrize("pair", [_param(t, t.id) for t in triples])


@pytest.fixture(scope="session")
def suite(pytestconfig: pytest.Config) -> Suite:
    """The session's :class:`Suite` (options, data, cached sweeps)."""
    return suite_of(pytestconfig)


@pytest.fixture(autouse=True)
def _threads(suite: Suite) -> None:
    """Every bench test runs with the configured intra-op threads (recorded in ``extra_info``)."""
    torch.set_num_threads(suite.opts.threads)
