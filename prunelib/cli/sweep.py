"""``python -m prunelib sweep`` and ``sensitivity``: one family's model pruned step by step, or group by group."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from prunelib.cli.args import (
    CliError,
    Parser,
    add_family_args,
    at_least_two,
    count,
    fraction,
    hparams_of,
    positive,
    resolve_family,
)
from prunelib.cli.outputs import Outputs
from prunelib.deploy.precision import PRECISIONS
from prunelib.deploy.runtimes import RUNTIMES
from prunelib.families.contract import Family
from prunelib.fileio import check_output_dir, write_text_atomic
from prunelib.pruning.schedules import SCHEDULES
from prunelib.pruning.structured import UNIT_CRITERIA, UNIT_SCOPES
from prunelib.results.tables import to_markdown, wide_table
from prunelib.sweep.loaded import Loaded, load
from prunelib.sweep.spec import SweepSpec
from prunelib.sweep.suite import OptionError, parse_seeds

#: One phrase per pruning schedule, for --help.
METHOD_HELP: dict[str, str] = {
    "no-retrain": "global |w| pruning, no retraining",
    "imp-rewind": "iterative magnitude pruning, survivors rewound to init and retrained (lottery ticket)",
    "imp-finetune": "iterative magnitude pruning, survivors retrained from where they are",
    "imp-late-rewind": "IMP, survivors rewound to their dense weights at --rewind-epoch, retrained",
    "imp-lr-rewind": "IMP, survivors kept, retrained replaying the dense learning-rate schedule",
    "random": "random weights, no retraining (baseline)",
    "layerwise": "|w| pruning of the same fraction in every layer, no retraining",
    "structured-no-retrain": "whole units by the L2 norm of their weights (MLP: hidden neurons; SEW: feed-forward units, attention heads, conv channels), no retraining; deployed physically smaller",
    "structured-imp-rewind": "whole units by L2, survivors rewound to init and retrained",
    "structured-imp-finetune": "whole units by L2, survivors retrained from where they are",
}
RUNTIME_HELP: dict[str, str] = {
    "torch": "PyTorch, dense kernels",
    "onnxruntime": "the model exported to ONNX, run by ONNX Runtime on the CPU",
    "torch-sparse": "PyTorch with each Linear run as sparse CSR or dense, whichever is measured faster here (fp32/fp16 only)",
}
PRECISION_HELP: dict[str, str] = {
    "fp32": "weights as trained",
    "fp16": "weights stored in half precision, computed in fp32",
    "int8": "dynamic int8 inference (torch quantize_dynamic; ONNX Runtime quantize_dynamic, QInt8 weights)",
}


def _choices(helps: dict[str, str], names) -> str:
    return "; ".join(f"{n}: {helps.get(n, n)}" for n in names)


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train, prune N times by one method or several, measure every iteration",
        description="Build and train the family's model, then prune it --iterations times by each --method, "
        "measuring after every step the model as deployed (pruning made permanent, structured models physically "
        "shrunk, values at --precision): the family's metric, latency on --runtime, parameter counts, sizes on "
        "disk (dense, the lab's sparse COO, compact) and FLOPs. Writes OUT/results.csv, OUT/results.md "
        "(the lab's table plus compact size and FLOPs) and OUT/initial.safetensors (several methods: one "
        "folder OUT/METHOD each), and the lab's plots of the metric against sparsity, disk size and latency, "
        "one line per method, in OUT/plots/.",
    )
    add_family_args(p)
    p.add_argument(
        "--method",
        default="no-retrain",
        help=f"pruning schedule, or a comma list of them (default: no-retrain). {_choices(METHOD_HELP, SCHEDULES)}",
    )
    p.set_defaults(seed=None)  # --seed and --seeds exclude each other: unset is told from 0
    p.add_argument(
        "--seeds",
        default=None,
        metavar="S,S,...",
        help="comma list of seeds, e.g. 0,1,2: every method runs once per seed, into OUT/seed<S>/ (not with --seed)",
    )
    p.add_argument(
        "--rewind-epoch",
        type=count,
        default=1,
        help="imp-late-rewind rewinds survivors to the weights after this many dense epochs (default: 1)",
    )
    p.add_argument(
        "--iterations", type=count, default=None, help="pruning steps after the dense model (default: the family's, 10)"
    )
    p.add_argument(
        "--amount",
        type=fraction,
        default=None,
        help="fraction of the REMAINING weights (of each group's remaining units, for structured methods) pruned "
        "per step, 0 < A < 1 (default: the family's: 0.33 for the MLP, 0.1 for speech, as the lab)",
    )
    p.add_argument("--embeddings", action="store_true", help="unstructured pruning also prunes embedding tables")
    p.add_argument(
        "--unit-criterion",
        choices=UNIT_CRITERIA,
        default="l2",
        help="structured methods rank units by l2 (all coupled weights) or bn-scale (BatchNorm |gamma|)",
    )
    p.add_argument(
        "--unit-scope",
        choices=UNIT_SCOPES,
        default="layer",
        help="structured methods remove the amount of each layer's units, or of all units ranked together",
    )
    p.add_argument(
        "--unit-round",
        type=positive,
        default=1,
        metavar="N",
        help="structured methods round the units each group keeps to a multiple of N (e.g. 8: widths that suit "
        "the runtime's SIMD blocks; default 1, no rounding)",
    )
    p.add_argument(
        "--runtime",
        default="torch",
        help=f"runtime timed for latency (default: torch). {_choices(RUNTIME_HELP, RUNTIMES)}",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        help=f"value precision the model is deployed, evaluated, stored (compact size) and timed at (default: fp32). {_choices(PRECISION_HELP, PRECISIONS)}",
    )
    p.add_argument("--batch", type=positive, default=1, help="batch size timed (default: 1)")
    p.add_argument(
        "--latency-runs",
        type=at_least_two,
        default=None,
        help="timed calls per latency figure, at least 2, after 10 warm-up calls (default: 100; a family whose "
        "one call takes seconds sets its own, e.g. whisper: 5 after 1)",
    )
    p.add_argument(
        "--threads",
        type=positive,
        default=None,
        help="intra-op threads for torch and ONNX Runtime (default: library default)",
    )
    p.add_argument(
        "--initial-weights",
        type=Path,
        default=None,
        help="safetensors file of initial weights to start from and rewind to (e.g. an earlier run's initial.safetensors)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output directory; must not already hold a results.csv (runs are never overwritten)",
    )
    p.set_defaults(handler=run_sweep_command)


def _loaded(family: Family, spec: SweepSpec, args: argparse.Namespace) -> Loaded:
    """Load ``spec``'s data, cut to ``--train-subset``/``--eval-count``, with ``--hparam`` applied."""
    loaded = load(spec)
    data = loaded.data
    if args.train_subset is not None or args.eval_count is not None:
        data = family.subset(data, args.train_subset, args.eval_count, spec.seed)
    return dataclasses.replace(loaded, data=data, hparams=hparams_of(family, args))


def run_sweep_command(args: argparse.Namespace) -> int:
    from prunelib.sweep.runner import Timing

    family = resolve_family(args)
    warmup, runs = family.timing or (Timing.warmup, Timing.runs)
    runs = args.latency_runs if args.latency_runs is not None else runs
    timing = Timing(args.runtime, args.precision, args.threads, runs, warmup, batch=args.batch)
    methods = list(dict.fromkeys(m.strip() for m in str(args.method).split(",") if m.strip()))
    if not methods:
        raise CliError(f"--method needs at least one method, got {args.method!r}")
    for method in methods:
        if method not in SCHEDULES:
            raise CliError(f"--method: unknown method {method!r}; choose from {', '.join(SCHEDULES)}")
        reason = family.supports(method=method, runtime=args.runtime, precision=args.precision, dataset=args.dataset)
        if reason:
            raise CliError(reason)
    seeds = seeds_of(args.seed, args.seeds)
    out: Path = args.out
    bases = {s: out if len(seeds) == 1 else out / f"seed{s}" for s in seeds}
    folders = {(s, m): bases[s] if len(methods) == 1 else bases[s] / m for s in seeds for m in methods}
    for folder in [*folders.values(), *(b / "plots" for b in bases.values())]:
        taken = folder / ("results.csv" if folder.name != "plots" else "metric-vs-sparsity.png")
        if taken.exists():
            raise CliError(f"{taken} exists: choose a new --out (earlier runs are never overwritten)")
    check_output_dir(out, "--out")  # an unwritable --out fails now, not after the sweep
    hparams_of(family, args)  # a bad --hparam fails before any data is read
    outputs = Outputs(out)
    for seed in seeds:
        frames = {
            m: _sweep_one(family, args, m, seed, timing, outputs, folders[seed, m].relative_to(out)) for m in methods
        }
        title = f"{args.dataset} / {args.model}" + (f" (seed {seed})" if len(seeds) > 1 else "")
        plots = bases[seed].relative_to(out) / "plots"
        _write_plots(outputs, frames, family.metric.name, title, plots)
        print(f"wrote the lab's plots to {(outputs.rescue or out) / plots}", file=sys.stderr)
    return outputs.status()


def seeds_of(seed: int | None, seeds: str | None) -> list[int]:
    """``--seed N`` or ``--seeds 0,1,2`` (not both) -> the distinct seeds in order; default ``[0]``."""
    try:
        return list(parse_seeds(seed, seeds, ("--seed", "--seeds")))
    except OptionError as exc:
        raise CliError(str(exc)) from None


def _sweep_one(
    family: Family, args: argparse.Namespace, method: str, seed: int, timing: Any, outputs: Outputs, folder: Path
) -> pd.DataFrame:
    """One method's sweep into ``folder`` of ``outputs``: results.csv, results.md, initial.safetensors. Returns its rows."""
    from safetensors.torch import save_file

    from prunelib.fileio import write_atomic
    from prunelib.storage.checkpoint import read_tensors
    from prunelib.sweep.runner import run_sweep

    structured = SCHEDULES[method].structured  # the unit rule is a structured method's
    spec = SweepSpec(
        args.family, args.dataset, args.model, method,
        args.amount if args.amount is not None else family.amount,
        args.iterations if args.iterations is not None else family.iterations,
        seed=seed, embeddings=args.embeddings, precision=args.precision, data_dir=args.data_dir,
        unit_criterion=args.unit_criterion if structured else "l2", unit_scope=args.unit_scope if structured else "layer",
        unit_round=args.unit_round if structured else 1, max_tokens=args.max_tokens,
        rewind_epoch=args.rewind_epoch if SCHEDULES[method].late else 1,
    )  # fmt: skip
    initial = read_tensors(args.initial_weights) if args.initial_weights is not None else None
    frame, init = run_sweep(spec, _loaded(family, spec, args), timing, initial)
    outputs.save(folder / "initial.safetensors", lambda p: write_atomic(p, lambda tmp: save_file(init, str(tmp))))
    title = (
        f"# {spec.dataset} / {spec.model} / {spec.method} (family {spec.family}, amount {spec.amount}, "
        f"seed {spec.seed}) — {timing.runtime}, {timing.precision}\n\n"
    )
    csv = outputs.save(folder / "results.csv", lambda p: write_text_atomic(p, frame.to_csv(index=False)))
    table = to_markdown(wide_table(frame, family.metric))
    md = outputs.save(folder / "results.md", lambda p: write_text_atomic(p, title + table))
    print(title + table, end="")
    print(f"wrote {csv} and {md}", file=sys.stderr)
    return frame


def _write_plots(
    outputs: Outputs, frames: dict[str, pd.DataFrame], metric: str, title: str, folder: Path = Path("plots")
) -> None:
    """The lab's three plots, one line per method: the metric against sparsity, disk size and latency."""
    from prunelib.report import plots

    rows = pd.concat([f.assign(method=m) for m, f in frames.items()], ignore_index=True)
    for name, draw in (
        ("metric-vs-sparsity", plots.metric_vs_sparsity_figure),
        ("metric-vs-disk", plots.metric_vs_disk_figure),
        ("metric-vs-latency", plots.metric_vs_latency_figure),
    ):
        outputs.save(folder / f"{name}.png", functools.partial(plots.save_png, draw(rows, metric, title)))


def add_sensitivity_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sensitivity",
        help="prune one layer group at a time to rising sparsity; the family's metric per group",
        description="Build and train (or load) the family's dense model, then prune one group of weights at a time "
        "by magnitude to each --levels sparsity, everything else dense, and score it. Groups come from the family: "
        "each Linear layer of an MLP; a SEW model's feature-extractor convolutions, attention projections, "
        "feed-forward layers and each transformer layer. Writes OUT/sensitivity.csv (group, sparsity, metric), "
        "OUT/sensitivity.md (table and summary) and OUT/sensitivity.png.",
    )
    add_family_args(p)
    p.add_argument(
        "--levels",
        default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
        help="comma list of group sparsities in [0, 1) (default: 0,0.1,...,0.9)",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory; must not already hold a sensitivity.csv")
    p.set_defaults(handler=run_sensitivity_command)


def levels_of(text: str) -> list[float]:
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CliError(f"--levels must be numbers separated by commas, got {text!r}") from None
    bad = [v for v in levels if not 0.0 <= v < 1.0]
    if not levels or bad:
        raise CliError(f"--levels must be sparsities in [0, 1), got {text!r}")
    return levels


def run_sensitivity_command(args: argparse.Namespace) -> int:
    from prunelib.report import plots
    from prunelib.results.sensitivity import sensitivity_summary
    from prunelib.sweep.sensitivity import family_sensitivity

    family = resolve_family(args)
    levels = levels_of(args.levels)
    out: Path = args.out
    if (out / "sensitivity.csv").exists():
        raise CliError(f"{out / 'sensitivity.csv'} exists: choose a new --out (earlier runs are never overwritten)")
    check_output_dir(out, "--out")
    spec = SweepSpec(
        args.family, args.dataset, args.model, "no-retrain", family.amount, 0, seed=args.seed, data_dir=args.data_dir,
        max_tokens=args.max_tokens,
    )  # fmt: skip
    loaded = _loaded(family, spec, args)
    model = loaded.fresh(spec)
    family.train(model, loaded.data, loaded.hparams, spec.seed, "dense")
    frame = family_sensitivity(family, model.eval(), loaded.data, levels, seed=args.seed)
    outputs = Outputs(out)
    csv = outputs.save("sensitivity.csv", lambda p: write_text_atomic(p, frame.to_csv(index=False)))
    summary = sensitivity_summary(frame, family.metric)
    title = f"{args.dataset} / {args.model}: sensitivity"
    md = outputs.save(
        "sensitivity.md", lambda p: write_text_atomic(p, f"# {title}\n\n{summary}\n\n" + to_markdown(frame))
    )
    figure = plots.sensitivity_figure(frame, family.metric.name, title)
    png = outputs.save("sensitivity.png", lambda p: plots.save_png(figure, p))
    print(summary)
    print(f"wrote {csv}, {md} and {png}", file=sys.stderr)
    return outputs.status()


__all__ = ["Parser", "add_sensitivity_parser", "add_sweep_parser"]
