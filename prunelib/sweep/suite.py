"""What the bench suite runs: its options turned into sweeps, and the floors its correctness gates assert.

Pure: the root ``conftest.py`` registers the pytest options and hands their values here, so the
mapping from command line to :class:`~prunelib.sweep.cache.SweepSpec` is testable without pytest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from prunelib.config import DataConfig, MeasureConfig, PruneConfig, TrainConfig, check_fraction, default_train_config
from prunelib.deploy.precision import check_precision
from prunelib.deploy.runtimes import RUNTIMES
from prunelib.families.mlp.data import DATASETS
from prunelib.families.mlp.models import PRESETS
from prunelib.pruning.schedules import SCHEDULES
from prunelib.sweep.cache import SweepSpec

SPEECH_DATASETS = ("fsdd", "librispeech")
LAB_METHODS = ("no-retrain", "imp-rewind", "imp-finetune", "random")
#: Quick mode (the CI gate): fewer, bigger steps and shorter training; same code paths.
QUICK_AMOUNT, QUICK_ITERATIONS = 0.5, 5
#: Dense accuracy the gate demands of a full run, and of a quick run (shorter training).
ACCURACY_FLOORS: dict[tuple[str, str], tuple[float, float]] = {
    ("mnist5k", "lenet300"): (0.94, 0.92),
    ("mnist5k", "mlp1m"): (0.94, 0.92),
    ("mnist", "lenet300"): (0.97, 0.95),
    ("fashion-mnist", "lenet300"): (0.85, 0.80),
    ("sst2", "sst2-mlp"): (0.80, 0.70),
}


class OptionError(ValueError):
    """A bench option with a bad value; the message names the option and the value."""


@dataclass(frozen=True)
class SuiteOptions:
    """The ``--prune-*`` options, parsed."""

    data_dir: str | None = None
    pairs: tuple[tuple[str, str], ...] = (("mnist5k", "lenet300"),)
    methods: tuple[str, ...] = LAB_METHODS
    iterations: int = 10
    amount: float = 0.33
    seed: int = 0
    runtimes: tuple[str, ...] = ("torch", "onnxruntime")
    batches: tuple[int, ...] = (1, 256)
    precisions: tuple[str, ...] = ("fp16", "int8")
    threads: int = 1
    quick: bool = False


def split_list(option: str, text: str) -> tuple[str, ...]:
    """``"a, b,c"`` → ``("a", "b", "c")``; an empty list is an error naming ``option``."""
    items = tuple(part.strip() for part in str(text).split(",") if part.strip())
    if not items:
        raise OptionError(f"{option} needs at least one value, got {text!r}")
    return items


def _choices(option: str, values: tuple[str, ...], known: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    for v in values:
        if v not in known:
            raise OptionError(f"{option}: unknown value {v!r}; choose from {list(known)}")
    return values


def _int(option: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise OptionError(f"{option} must be an integer, got {text!r}") from None
    if value < minimum:
        raise OptionError(f"{option} must be >= {minimum}, got {value}")
    return value


def parse_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """``"mnist5k:lenet300,sst2:sst2-mlp"`` → pairs; speech pairs name a model preset or a path/hub id."""
    pairs = []
    for item in split_list("--prune-datasets", text):
        dataset, sep, model = item.partition(":")
        if not sep or not dataset or not model:
            raise OptionError(f"--prune-datasets: {item!r} is not DATASET:MODEL (e.g. mnist5k:lenet300)")
        if dataset not in (*DATASETS, *SPEECH_DATASETS):
            raise OptionError(
                f"--prune-datasets: unknown dataset {dataset!r}; choose from {[*DATASETS, *SPEECH_DATASETS]}"
            )
        if dataset in DATASETS and model not in PRESETS:
            raise OptionError(f"--prune-datasets: unknown model {model!r} for {dataset}; choose from {sorted(PRESETS)}")
        pairs.append((dataset, model))
    return tuple(pairs)


def parse_options(raw: dict[str, object]) -> SuiteOptions:
    """Validate raw option strings (``None`` = default) into :class:`SuiteOptions`."""
    base = SuiteOptions()
    get = lambda key, default: default if raw.get(key) in (None, "") else raw[key]  # noqa: E731
    quick = bool(raw.get("quick") or False)
    amount_text = get("amount", QUICK_AMOUNT if quick else base.amount)
    try:
        amount = check_fraction("--prune-amount", float(amount_text))
    except (TypeError, ValueError) as exc:
        raise OptionError(
            str(exc) if "fraction" in str(exc) else f"--prune-amount must be a number, got {amount_text!r}"
        ) from None
    for p in (precisions := split_list("--prune-precisions", get("precisions", ",".join(base.precisions)))):
        try:
            check_precision(p)
        except ValueError as exc:
            raise OptionError(f"--prune-precisions: {exc}") from None
    batches = tuple(_int("--prune-batches", b, 1) for b in split_list("--prune-batches", get("batches", "1,256")))
    return SuiteOptions(
        data_dir=str(raw["data_dir"]) if raw.get("data_dir") else None,
        pairs=parse_pairs(get("datasets", "mnist5k:lenet300")),
        methods=_choices(
            "--prune-methods", split_list("--prune-methods", get("methods", ",".join(base.methods))), list(SCHEDULES)
        ),
        iterations=_int("--prune-iterations", get("iterations", QUICK_ITERATIONS if quick else base.iterations), 1),
        amount=amount,
        seed=_int("--prune-seed", get("seed", 0), 0),
        runtimes=_choices(
            "--prune-runtimes", split_list("--prune-runtimes", get("runtimes", "torch,onnxruntime")), RUNTIMES
        ),
        batches=tuple(dict.fromkeys(batches)),
        precisions=precisions,
        threads=_int("--prune-threads", get("threads", 1), 1),
        quick=quick,
    )


def train_config(dataset: str, quick: bool) -> TrainConfig:
    """The data set's fixed hyperparameters; quick mode trains for fewer epochs."""
    cfg = default_train_config(dataset)
    return replace(cfg, epochs=max(1, cfg.epochs * 2 // 5)) if quick else cfg


def data_config(dataset: str, opts: SuiteOptions) -> DataConfig:
    """Where and how to load ``dataset``; quick mode subsamples the big sets."""
    big = dataset in ("mnist", "fashion-mnist", "sst2")
    return DataConfig(
        dataset,
        opts.data_dir,
        opts.seed,
        train_subset=20_000 if (opts.quick and big) else None,
        test_subset=2_000 if (opts.quick and big) else None,
    )


def sweep_specs(opts: SuiteOptions) -> list[SweepSpec]:
    """One spec per (Part-I data set/model, method), in option order."""
    specs = []
    for dataset, model in opts.pairs:
        if dataset in SPEECH_DATASETS:
            continue
        for method in opts.methods:
            specs.append(
                SweepSpec(
                    data=data_config(dataset, opts),
                    model=model,
                    train=train_config(dataset, opts.quick),
                    prune=PruneConfig(method, opts.amount, opts.iterations),
                    measure=MeasureConfig(threads=opts.threads),
                    seed=opts.seed,
                )
            )
    return specs


#: Speech sweeps (amount, iterations, utterances scored): the lab's 10 % x 10, or 30 % x 3 in quick mode.
SPEECH_FULL, SPEECH_QUICK = (0.1, 10, None), (0.3, 3, 40)


#: Speech sweeps the bench suite runs per speech pair: the lab's global magnitude pruning, and
#: structured pruning shrunk for real (IMP retrains for minutes per step: ``python -m prunelib sweep``).
SPEECH_BENCH_METHODS = ("no-retrain", "structured-no-retrain")


def speech_specs(opts: SuiteOptions) -> list:
    """One :class:`~prunelib.sweep.speechcache.SpeechSweepSpec` per (speech pair, :data:`SPEECH_BENCH_METHODS`),
    pair by pair: the lab's Part II sweep (10 % per step; for structured methods, 10 % of each
    layer's remaining units)."""
    from prunelib.sweep.speechcache import SpeechSweepSpec

    amount, iterations, count = SPEECH_QUICK if opts.quick else SPEECH_FULL
    return [
        SpeechSweepSpec(d, m, method, amount, iterations, opts.seed, count)
        for d, m in opts.pairs
        if d in SPEECH_DATASETS
        for method in SPEECH_BENCH_METHODS
    ]


def accuracy_floor(dataset: str, model: str, quick: bool) -> float | None:
    """The dense accuracy the gate demands, or ``None`` when no floor is known for the pair."""
    floors = ACCURACY_FLOORS.get((dataset, model))
    return None if floors is None else floors[1 if quick else 0]
