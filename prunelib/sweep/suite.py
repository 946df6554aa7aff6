"""What the bench suite runs: its options turned into sweeps, for any family.

Pure: the pytest plugin reads the ``--prune-*`` options and hands their raw values here, so the
mapping from command line to :class:`~prunelib.sweep.spec.SweepSpec` is testable without pytest.

Which (family, data set, model) triples run:

* ``--prune-datasets DATASET:MODEL,...`` on the command line: each pair goes to the first
  family that reads the data set and builds the model (the ``--prune-family`` ones first);
* else, with ``--prune-family``: each named family's default pair;
* else the ini value of ``prune_datasets`` (``mnist5k:lenet300``).

Methods: ``--prune-methods`` from the command line, else the family's bench methods (SEW's
retraining takes minutes per step, so its default is the two one-shot methods), else the ini
value. Amount and iterations default per family (the lab's 33 % x 10 for the MLP, 10 % x 10 for
speech; quick mode: fewer, bigger steps).
"""

from __future__ import annotations

from dataclasses import dataclass

from prunelib.config import check_fraction
from prunelib.deploy.precision import check_precision
from prunelib.deploy.runtimes import RUNTIMES
from prunelib.families.registry import family_for, get_family
from prunelib.pruning.schedules import LAB_METHODS, SCHEDULES, get_schedule
from prunelib.pruning.structured import DEFAULT_RULE, UnitRule
from prunelib.sweep.spec import SweepSpec


class OptionError(ValueError):
    """A bench option with a bad value; the message names the option and the value."""


@dataclass(frozen=True)
class Triple:
    """One (family, data set, model) of a run."""

    family: str
    dataset: str
    model: str

    @property
    def id(self) -> str:
        from pathlib import Path

        return f"{self.dataset}-{Path(self.model).name}"


@dataclass(frozen=True)
class SuiteOptions:
    """The ``--prune-*`` options, parsed."""

    data_dir: str | None = None
    triples: tuple[Triple, ...] = (Triple("mlp", "mnist5k", "lenet300"),)
    methods: tuple[str, ...] | None = None  # None: each family's bench methods
    iterations: int | None = None  # None: each family's default
    amount: float | None = None
    seed: int = 0  # the first of seeds
    seeds: tuple[int, ...] = (0,)  # --prune-seeds (or the one --prune-seed): every sweep runs once per seed
    rewind_epoch: int = 1  # --prune-rewind-epoch: late rewinding's epoch
    scheduler: str | None = None  # --prune-scheduler: local:N or tcp://host:port (None: build serially)
    runtimes: tuple[str, ...] = ("torch", "onnxruntime")
    batches: tuple[int, ...] = (1, 256)
    precisions: tuple[str, ...] = ("fp16", "int8")
    threads: int = 1  # intra-op threads of every bench test: the first of --prune-threads
    timing_threads: tuple[int, ...] = (1,)  # every --prune-threads value: inference is timed at each
    cooldown_s: float = 0.0  # --prune-cooldown: wait up to this long before each timed benchmark
    cooldown_below_c: float = 65.0  # --prune-cooldown-below: until the SoC is below this (°C)
    quick: bool = False
    embeddings: bool = False
    unit_rule: UnitRule = DEFAULT_RULE  # --prune-unit-criterion/-scope/-round, structured methods
    max_tokens: int | None = None  # --prune-max-tokens: cap on a token data set's sequences (None: the family's)
    default_methods: tuple[str, ...] = LAB_METHODS  # the ini's prune_methods


def split_list(option: str, text: object) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``; an empty list is an error naming ``option``."""
    items = tuple(part.strip() for part in str(text).split(",") if part.strip())
    if not items:
        raise OptionError(f"{option} needs at least one value, got {text!r}")
    return items


def _choices(option: str, values: tuple[str, ...], known: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    for v in values:
        if v not in known:
            raise OptionError(f"{option}: unknown value {v!r}; choose from {list(known)}")
    return values


def _int(option: str, text: object, minimum: int) -> int:
    try:
        value = int(str(text))
    except (TypeError, ValueError):
        raise OptionError(f"{option} must be an integer, got {text!r}") from None
    if value < minimum:
        raise OptionError(f"{option} must be >= {minimum}, got {value}")
    return value


def _number(option: str, text: object, low: float, high: float) -> float:
    try:
        value = float(str(text))
    except ValueError:
        raise OptionError(f"{option} must be a number, got {text!r}") from None
    if not low <= value <= high:
        raise OptionError(f"{option} must lie in [{low:g}, {high:g}], got {value:g}")
    return value


def parse_seeds(
    seed: object, seeds: object, flags: tuple[str, str] = ("--prune-seed", "--prune-seeds")
) -> tuple[int, ...]:
    """``--prune-seeds 0,1,2`` or ``--prune-seed N`` (not both) -> the distinct seeds, in order; default ``(0,)``.

    ``flags`` name the two options in messages (the CLI's are ``--seed`` and ``--seeds``).
    """
    one, many = flags
    if seed is not None and seeds is not None:
        raise OptionError(f"{one} {seed} and {many} {seeds}: give one ({many} takes a list)")
    if seeds is not None:
        return tuple(dict.fromkeys(_int(many, s, 0) for s in split_list(many, seeds)))
    return (_int(one, seed if seed is not None else 0, 0),)


def parse_scheduler(text: object) -> str | None:
    """``local:N`` (N >= 1) or ``tcp://host:port``, checked for form only (reaching it is the cluster's job)."""
    if text is None:
        return None
    value = str(text).strip()
    kind, sep, rest = value.partition(":")
    if kind == "local" and sep:
        _int("--prune-scheduler local:N", rest, 1)
        return value
    if kind in ("tcp", "tls") and rest.startswith("//") and len(rest) > 2:
        return value
    raise OptionError(f"--prune-scheduler: {value!r} is neither local:N (e.g. local:2) nor tcp://host:port")


def parse_triples(datasets: object, families: tuple[str, ...]) -> tuple[Triple, ...]:
    """``"mnist5k:lenet300,fsdd:sew-fsdd"`` -> triples, each pair resolved to its family."""
    out = []
    for item in split_list("--prune-datasets", datasets):
        dataset, sep, model = item.partition(":")
        if not sep or not dataset or not model:
            raise OptionError(f"--prune-datasets: {item!r} is not DATASET:MODEL (e.g. mnist5k:lenet300)")
        try:
            out.append(Triple(family_for(dataset, model, families), dataset, model))
        except ValueError as exc:
            raise OptionError(f"--prune-datasets: {exc}") from None
    return tuple(out)


def parse_options(raw: dict[str, object]) -> SuiteOptions:
    """Validate raw option values (``None`` = unset) into :class:`SuiteOptions`.

    ``raw`` keys: the option names without ``--prune-`` (``datasets``, ``family``, ...); values
    from the command line. ``ini_datasets`` and ``ini_methods`` carry the ini defaults.
    """

    def get(key: str) -> object:
        value = raw.get(key)
        return None if value in (None, "") else value

    quick = bool(get("quick"))
    families = split_list("--prune-family", get("family")) if get("family") else ()
    for name in families:
        try:
            get_family(name)
        except ValueError as exc:
            raise OptionError(f"--prune-family: {exc}") from None
    if get("datasets") is not None:
        triples = parse_triples(get("datasets"), families)
    elif families:
        triples = tuple(Triple(name, *get_family(name).default_pair) for name in families)
    else:
        triples = parse_triples(get("ini_datasets") or "mnist5k:lenet300", ())
    amount = None
    if get("amount") is not None:
        try:
            amount = check_fraction("--prune-amount", float(str(get("amount"))))
        except ValueError as exc:
            raise OptionError(
                str(exc) if "fraction" in str(exc) else f"--prune-amount must be a number, got {get('amount')!r}"
            ) from None
    methods = get("methods")
    ini_methods = get("ini_methods")
    ini_methods = (
        _choices("prune_methods (ini)", split_list("prune_methods", ini_methods), list(SCHEDULES))
        if ini_methods
        else LAB_METHODS
    )
    precisions = split_list("--prune-precisions", get("precisions") or "fp16,int8")
    for p in precisions:
        try:
            check_precision(p)
        except ValueError as exc:
            raise OptionError(f"--prune-precisions: {exc}") from None
    batches = tuple(_int("--prune-batches", b, 1) for b in split_list("--prune-batches", get("batches") or "1,256"))
    threads = tuple(
        dict.fromkeys(_int("--prune-threads", n, 1) for n in split_list("--prune-threads", get("threads") or 1))
    )
    unit_round = _int("--prune-unit-round", get("unit_round") or 1, 1)
    try:
        unit_rule = UnitRule(str(get("unit_criterion") or "l2"), str(get("unit_scope") or "layer"), unit_round)
    except ValueError as exc:
        flag = "--prune-unit-criterion" if "criterion" in str(exc) else "--prune-unit-scope"
        raise OptionError(f"{flag}: {exc}") from None
    seeds = parse_seeds(get("seed"), get("seeds"))
    return SuiteOptions(
        data_dir=str(get("data_dir")) if get("data_dir") else None,
        triples=triples,
        methods=_choices("--prune-methods", split_list("--prune-methods", methods), list(SCHEDULES))
        if methods
        else None,
        iterations=_int("--prune-iterations", get("iterations"), 1) if get("iterations") is not None else None,
        amount=amount,
        seed=seeds[0],
        seeds=seeds,
        rewind_epoch=_int("--prune-rewind-epoch", get("rewind_epoch"), 0) if get("rewind_epoch") is not None else 1,
        scheduler=parse_scheduler(get("scheduler")),
        runtimes=_choices(
            "--prune-runtimes", split_list("--prune-runtimes", get("runtimes") or "torch,onnxruntime"), RUNTIMES
        ),
        batches=tuple(dict.fromkeys(batches)),
        precisions=precisions,
        threads=threads[0],
        timing_threads=threads,
        cooldown_s=_number("--prune-cooldown", get("cooldown") or 0, 0.0, 3600.0),
        cooldown_below_c=_number("--prune-cooldown-below", get("cooldown_below") or 65, 1.0, 149.0),
        quick=quick,
        embeddings=bool(get("embeddings")),
        unit_rule=unit_rule,
        max_tokens=_int("--prune-max-tokens", get("max_tokens"), 1) if get("max_tokens") is not None else None,
        default_methods=ini_methods,
    )


def methods_for(opts: SuiteOptions, triple: Triple) -> tuple[str, ...]:
    """The methods run on ``triple``: the command line's, else the family's bench methods, else the ini's."""
    if opts.methods is not None:
        return opts.methods
    return get_family(triple.family).bench_methods or opts.default_methods


def sweep_specs(opts: SuiteOptions) -> list[SweepSpec]:
    """One spec per (triple, method, seed), in option order; the family's schedule defaults fill the gaps."""
    specs = []
    for t in opts.triples:
        family = get_family(t.family)
        amount = opts.amount if opts.amount is not None else (family.quick_amount if opts.quick else family.amount)
        if opts.iterations is not None:
            iterations = opts.iterations
        else:
            iterations = family.quick_iterations if opts.quick else family.iterations
        for method, seed in ((m, s) for m in methods_for(opts, t) for s in opts.seeds):
            rule = opts.unit_rule if get_schedule(method).structured else UnitRule()
            specs.append(
                SweepSpec(
                    t.family,
                    t.dataset,
                    t.model,
                    method,
                    amount,
                    iterations,
                    seed=seed,
                    rewind_epoch=opts.rewind_epoch if get_schedule(method).late else 1,
                    quick=opts.quick,
                    embeddings=opts.embeddings,
                    data_dir=opts.data_dir,
                    unit_criterion=rule.criterion,
                    unit_scope=rule.scope,
                    unit_round=rule.round_to,
                    max_tokens=opts.max_tokens if t.dataset in family.token_datasets else None,
                )  # fmt: skip
            )
    return specs


def metric_floor(family_name: str, dataset: str, model: str, quick: bool) -> float | None:
    """The dense metric the gate demands of (dataset, model), or ``None`` when the family names none."""
    floors = get_family(family_name).floors.get((dataset, model))
    return None if floors is None else floors[1 if quick else 0]
