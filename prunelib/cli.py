"""``python -m prunelib``: run a pruning sweep, compare benchmark runs.

Every bad input ends in one line ``prunelib: error: ...`` and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prunelib.config import DataConfig, MeasureConfig, PruneConfig, RunConfig, check_fraction, default_train_config
from prunelib.data import DATASETS, DataError
from prunelib.fileio import write_text_atomic
from prunelib.models import PRESETS
from prunelib.quantize import PRECISIONS
from prunelib.runtime import RUNTIMES
from prunelib.schedules import SCHEDULES
from prunelib.tables import to_markdown, wide_table

#: One phrase per pruning schedule, for --help.
METHOD_HELP: dict[str, str] = {
    "no-retrain": "global |w| pruning, no retraining",
    "imp-rewind": "iterative magnitude pruning, survivors rewound to init and retrained (lottery ticket)",
    "imp-finetune": "iterative magnitude pruning, survivors retrained from where they are",
    "random": "random weights, no retraining (baseline)",
    "structured-no-retrain": "whole hidden neurons by L2 norm of their weights, no retraining; deployed physically smaller",
    "structured-imp-rewind": "whole hidden neurons by L2, survivors rewound to init and retrained",
    "structured-imp-finetune": "whole hidden neurons by L2, survivors retrained from where they are",
}

#: One phrase per runtime, for --help.
RUNTIME_HELP: dict[str, str] = {
    "torch": "PyTorch, dense kernels",
    "onnxruntime": "the model exported to ONNX, run by ONNX Runtime on the CPU",
    "torch-sparse": "PyTorch with each Linear run as sparse CSR or dense, whichever is measured faster here (fp32/fp16 only)",
}

#: One phrase per precision, for --help.
PRECISION_HELP: dict[str, str] = {
    "fp32": "weights as trained",
    "fp16": "weights stored in half precision, computed in fp32",
    "int8": "dynamic int8 inference (torch quantize_dynamic; ONNX Runtime quantize_dynamic, QInt8 weights)",
}


def _choices(helps: dict[str, str], names) -> str:
    return "; ".join(f"{n}: {helps.get(n, n)}" for n in names)


class CliError(ValueError):
    """A user error the CLI reports in one line."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`CliError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(message)


def _fraction(text: str) -> float:
    try:
        return check_fraction("--amount", float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if "fraction" in str(exc) else f"not a number: {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train, prune N times by one method, measure every iteration",
        description="Train the model densely, then prune it --iterations times by --method, measuring "
        "after every step the model as deployed (pruning made permanent, structured models physically "
        "shrunk, values at --precision): accuracy, latency on --runtime, parameter counts, sizes on disk "
        "(dense, the lab's sparse COO, compact) and FLOPs. Writes OUT/results.csv, OUT/results.md "
        "(the lab's table plus compact size and FLOPs) and OUT/initial.safetensors.",
    )
    p.add_argument("--dataset", default="mnist5k", help=f"data set name, one of {list(DATASETS)} (default: mnist5k, embedded)")
    p.add_argument("--model", default="lenet300", help=f"model preset, one of {sorted(PRESETS)} (default: lenet300)")
    p.add_argument("--method", default="no-retrain", help=f"pruning schedule (default: no-retrain). {_choices(METHOD_HELP, SCHEDULES)}")
    p.add_argument("--iterations", type=_positive_int, default=10, help="pruning steps after the dense model (default: 10)")
    p.add_argument("--amount", type=_fraction, default=0.33, help="fraction of the REMAINING weights (hidden neurons, for structured methods) pruned per step, 0 < A < 1 (default: 0.33)")
    p.add_argument("--seed", type=int, default=0, help="fixes the data split, initial weights, batch order and random masks (default: 0)")
    p.add_argument("--data-dir", default=None, help="data root holding one folder per data set, e.g. ../shared/data (default: $PRUNELIB_DATA_DIR)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="training epochs, also per IMP retraining (default: per data set)")
    p.add_argument("--train-subset", type=_positive_int, default=None, help="train on at most this many examples (seeded), for quick runs")
    p.add_argument("--runtime", default="torch", help=f"runtime timed for latency (default: torch). {_choices(RUNTIME_HELP, RUNTIMES)}")
    p.add_argument("--precision", default="fp32", help=f"value precision the model is deployed, evaluated, stored (compact size) and timed at (default: fp32). {_choices(PRECISION_HELP, PRECISIONS)}")
    p.add_argument("--latency-runs", type=_positive_int, default=100, help="timed calls per latency figure, after 10 warm-up calls (default: 100)")
    p.add_argument("--threads", type=_positive_int, default=None, help="intra-op threads for torch and ONNX Runtime (default: library default)")
    p.add_argument("--initial-weights", type=Path, default=None, help="safetensors file of initial weights to start from and rewind to (e.g. an earlier run's initial.safetensors)")
    p.add_argument("--out", type=Path, required=True, help="output directory; must not already hold a results.csv (runs are never overwritten)")
    p.set_defaults(handler=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from safetensors.torch import save_file

    from prunelib.checkpoint import read_tensors
    from prunelib.data import load_data
    from prunelib.fileio import write_atomic
    from prunelib.pruning import initial_state
    from prunelib.schedules import get_schedule, model_spec, run_sweep
    from prunelib.train import init_model

    get_schedule(args.method)
    if args.model not in PRESETS:
        raise CliError(f"unknown model {args.model!r}; choose one of {sorted(PRESETS)}")
    if args.runtime not in RUNTIMES:
        raise CliError(f"unknown runtime {args.runtime!r}; choose one of {list(RUNTIMES)}")
    if args.precision not in PRECISIONS:
        raise CliError(f"unknown precision {args.precision!r}; choose one of {list(PRECISIONS)}")
    if args.dataset not in DATASETS:
        raise CliError(f"unknown dataset {args.dataset!r}; choose one of {list(DATASETS)}")
    out: Path = args.out
    if (out / "results.csv").exists():
        raise CliError(f"{out / 'results.csv'} exists: choose a new --out (earlier runs are never overwritten)")
    train_cfg = default_train_config(args.dataset)
    if args.epochs is not None:
        train_cfg = replace(train_cfg, epochs=args.epochs)
    cfg = RunConfig(
        data=DataConfig(args.dataset, args.data_dir, args.seed, train_subset=args.train_subset),
        model=args.model,
        train=train_cfg,
        prune=PruneConfig(args.method, args.amount, args.iterations),
        measure=MeasureConfig(runs=max(args.latency_runs, 2), threads=args.threads, runtime=args.runtime, precision=args.precision),
        seed=args.seed,
    )
    splits = load_data(cfg.data)
    if args.initial_weights is not None:
        initial = read_tensors(args.initial_weights)
    else:
        initial = initial_state(init_model(model_spec(cfg.model, splits), cfg.seed))
    df = run_sweep(cfg, splits=splits, initial=initial)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "initial.safetensors", lambda p: save_file(initial, str(p)))
    write_text_atomic(out / "results.csv", df.to_csv(index=False))
    title = (f"# {args.dataset} / {args.model} / {args.method} (amount {args.amount}, seed {args.seed})"
             f" — {args.runtime}, {args.precision}\n\n")
    table = to_markdown(wide_table(df))
    write_text_atomic(out / "results.md", title + table)
    print(table, end="")
    print(f"wrote {out / 'results.csv'} and {out / 'results.md'}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m prunelib", description="prunelib: prune small networks, measure what it buys.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_sweep_parser(sub)
    sub.add_parser("compare", help="compare pytest-benchmark runs (accuracy, latency, size); see 'compare --help'", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        from prunelib.compare import main as compare_main

        return compare_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (CliError, DataError, ValueError, FileNotFoundError) as exc:
        print(f"prunelib: error: {exc}", file=sys.stderr)
        return 2
