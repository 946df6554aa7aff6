"""Parametrization and session state of the bench suite: which sweeps run, and their cached checkpoints.

Test ids read ``<dataset>-<model>-<method>-it<k>-<runtime>-b<batch>``. Everything expensive
(training, every checkpoint of every schedule) comes from :mod:`prunelib.sweep.cache`, built once per
configuration and reused by later runs, so a warm run only re-times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from prunelib.deploy.runtimes import CTC_RUNTIMES
from prunelib.families.mlp.data import DataError, Splits, load_data
from prunelib.plugin.options import prune_option
from prunelib.sweep.cache import SweepArtifacts, SweepSpec, default_cache_root, prepare_sweep
from prunelib.sweep.suite import OptionError, SuiteOptions, parse_options, speech_specs, sweep_specs

RAW_OPTIONS = ("datasets", "methods", "iterations", "amount", "seed", "runtimes", "batches", "precisions", "threads")


@dataclass(frozen=True)
class InferenceCase:
    """One timed configuration: a checkpoint of a sweep, a runtime and a batch size."""

    spec: SweepSpec
    iteration: int
    runtime: str
    batch: int

    @property
    def id(self) -> str:
        return f"{self.spec.label}-it{self.iteration:02d}-{self.runtime}-b{self.batch}"


@dataclass
class Suite:
    """Parsed options plus per-session memo of loaded data and prepared sweeps."""

    opts: SuiteOptions
    cache_root: Path
    specs: list[SweepSpec]
    _splits: dict[Any, Splits] = field(default_factory=dict)
    _sweeps: dict[SweepSpec, SweepArtifacts] = field(default_factory=dict)

    def splits(self, spec: SweepSpec) -> Splits:
        if spec.data not in self._splits:
            try:
                self._splits[spec.data] = load_data(spec.data)
            except DataError as exc:
                pytest.skip(
                    f"{spec.data.name}: data not available ({exc}); pass --prune-data-dir or set PRUNELIB_DATA_DIR"
                )
        return self._splits[spec.data]

    def sweep(self, spec: SweepSpec) -> SweepArtifacts:
        if spec not in self._sweeps:
            self._sweeps[spec] = prepare_sweep(spec, self.splits(spec), self.cache_root)
        return self._sweeps[spec]


SUITE = pytest.StashKey[Suite]()


def suite_of(config: pytest.Config) -> Suite:
    if SUITE not in config.stash:
        raw = {name: prune_option(config, f"--prune-{name}") for name in RAW_OPTIONS}
        raw["data_dir"] = config.getoption("--prune-data-dir")
        raw["quick"] = config.getoption("--prune-quick")
        try:
            opts = parse_options(raw)
        except OptionError as exc:
            raise pytest.UsageError(str(exc)) from None
        cache = prune_option(config, "--prune-cache-dir")
        config.stash[SUITE] = Suite(opts, Path(cache) if cache else default_cache_root(), sweep_specs(opts))
    return config.stash[SUITE]


def _iterations(spec: SweepSpec) -> range:
    return range(spec.prune.iterations + 1)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    suite = suite_of(metafunc.config)
    opts = suite.opts
    if "inference_case" in metafunc.fixturenames:
        cases = [
            InferenceCase(spec, k, runtime, batch)
            for spec in suite.specs
            for k in _iterations(spec)
            for runtime in opts.runtimes
            for batch in opts.batches
        ]
        metafunc.parametrize("inference_case", cases, ids=[c.id for c in cases])
    if "sweep_spec" in metafunc.fixturenames:
        metafunc.parametrize("sweep_spec", suite.specs, ids=[s.label for s in suite.specs])
    if "checkpoint_case" in metafunc.fixturenames:
        cases = [(spec, k) for spec in suite.specs for k in _iterations(spec)]
        metafunc.parametrize("checkpoint_case", cases, ids=[f"{s.label}-it{k:02d}" for s, k in cases])
    if "precision_case" in metafunc.fixturenames:
        cases = [
            (spec, k, precision)
            for spec in suite.specs
            for k in sorted({0, spec.prune.iterations // 2, spec.prune.iterations})
            for precision in opts.precisions
        ]
        metafunc.parametrize("precision_case", cases, ids=[f"{s.label}-it{k:02d}-{p}" for s, k, p in cases])
    if {"speech_case", "speech_spec", "speech_model_spec"} & set(metafunc.fixturenames):
        specs = speech_specs(opts)
        runtimes = [r for r in opts.runtimes if r in CTC_RUNTIMES]
        cases = [(s, k, r) for s in specs for k in range(s.iterations + 1) for r in runtimes]
        if "speech_case" in metafunc.fixturenames:
            metafunc.parametrize("speech_case", cases, ids=[f"{s.label}-it{k:02d}-{r}" for s, k, r in cases])
        elif "speech_spec" in metafunc.fixturenames:
            metafunc.parametrize("speech_spec", specs, ids=[s.label for s in specs])
        else:  # one spec per speech model, for what does not depend on the schedule (sensitivity)
            per_model = [s for s in specs if s.method == "no-retrain"]
            metafunc.parametrize(
                "speech_model_spec", per_model, ids=[f"{s.dataset}-{Path(s.model).name}" for s in per_model]
            )
    if "pair" in metafunc.fixturenames:
        pairs = [p for p in opts.pairs if any((s.data.name, s.model) == p for s in suite.specs)]
        metafunc.parametrize("pair", pairs, ids=[f"{d}-{m}" for d, m in pairs])


@pytest.fixture(scope="session")
def suite(pytestconfig: pytest.Config) -> Suite:
    """The session's :class:`Suite` (options, data, cached sweeps)."""
    return suite_of(pytestconfig)


@pytest.fixture(autouse=True)
def _threads(suite: Suite) -> None:
    """Every bench test runs with the configured intra-op threads (recorded in ``extra_info``)."""
    torch.set_num_threads(suite.opts.threads)
