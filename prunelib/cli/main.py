"""``python -m prunelib``: run a pruning sweep, a sensitivity analysis, compare benchmark runs.

Every bad input ends in one line ``prunelib: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prunelib.config import DataConfig, MeasureConfig, PruneConfig, RunConfig, check_fraction, default_train_config
from prunelib.deploy.precision import PRECISIONS
from prunelib.deploy.runtimes import RUNTIMES
from prunelib.families.mlp.data import DATASETS, DataError
from prunelib.families.mlp.models import PRESETS
from prunelib.fileio import write_text_atomic
from prunelib.pruning.schedules import SCHEDULES
from prunelib.results.tables import to_markdown, wide_table

#: One phrase per pruning schedule, for --help.
METHOD_HELP: dict[str, str] = {
    "no-retrain": "global |w| pruning, no retraining",
    "imp-rewind": "iterative magnitude pruning, survivors rewound to init and retrained (lottery ticket)",
    "imp-finetune": "iterative magnitude pruning, survivors retrained from where they are",
    "random": "random weights, no retraining (baseline)",
    "structured-no-retrain": "whole units by L2 norm of their weights (MLP: hidden neurons; SEW: feed-forward units, attention heads, conv channels), no retraining; deployed physically smaller",
    "structured-imp-rewind": "whole units by L2, survivors rewound to init and retrained",
    "structured-imp-finetune": "whole units by L2, survivors retrained from where they are",
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


SPEECH_DATASETS = ("fsdd", "librispeech")
#: The model each data set gets when --model is not given.
DEFAULT_MODELS = {
    "mnist5k": "lenet300",
    "mnist": "lenet300",
    "fashion-mnist": "lenet300",
    "sst2": "sst2-mlp",
    "fsdd": "sew-fsdd",
    "librispeech": "asapp/sew-tiny-100k-ft-ls100h",
}
#: Fraction pruned per step when --amount is not given: the lab's 33 % (Part I) and 10 % (speech).
DEFAULT_AMOUNT, SPEECH_AMOUNT = 0.33, 0.1


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
    _add_data_and_model(p)
    p.add_argument(
        "--method",
        default="no-retrain",
        help=f"pruning schedule (default: no-retrain). {_choices(METHOD_HELP, SCHEDULES)}",
    )
    p.add_argument(
        "--iterations", type=_positive_int, default=10, help="pruning steps after the dense model (default: 10)"
    )
    p.add_argument(
        "--amount",
        type=_fraction,
        default=None,
        help="fraction of the REMAINING weights (of each layer's remaining units, for structured methods) pruned per step, 0 < A < 1 (default: 0.33; 0.1 for speech, as the lab)",
    )
    p.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="training epochs, also per IMP retraining (default: per data set)",
    )
    p.add_argument(
        "--train-subset",
        type=_positive_int,
        default=None,
        help="train on at most this many examples (seeded), for quick runs",
    )
    p.add_argument(
        "--eval-count",
        type=_positive_int,
        default=None,
        help="speech only: utterances scored (default: 200 FSDD test utterances; every LibriSpeech utterance found)",
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
    p.add_argument(
        "--latency-runs",
        type=_positive_int,
        default=100,
        help="timed calls per latency figure, after 10 warm-up calls (default: 100)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
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


def _add_data_and_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default="mnist5k",
        help=f"data set name, one of {[*DATASETS, *SPEECH_DATASETS]} (default: mnist5k, embedded)",
    )
    p.add_argument(
        "--model",
        default=None,
        help=f"model: a preset {sorted(PRESETS)} for Part I; for speech 'sew-fsdd' (small SEW trained "
        "here on FSDD, cached), 'sew-tiny' (exact SEW-tiny, random weights), a save_pretrained directory or a hub id "
        f"(default per data set: {DEFAULT_MODELS})",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="data root holding one folder per data set, e.g. ../shared/data (default: $PRUNELIB_DATA_DIR)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="fixes the data split, initial weights, batch order and random masks (default: 0)",
    )


def _resolve(args: argparse.Namespace) -> None:
    """Fill per-data-set defaults and reject unknown names before any work starts."""
    if args.dataset not in (*DATASETS, *SPEECH_DATASETS):
        raise CliError(f"unknown dataset {args.dataset!r}; choose one of {[*DATASETS, *SPEECH_DATASETS]}")
    args.model = args.model or DEFAULT_MODELS[args.dataset]
    if args.dataset not in SPEECH_DATASETS and args.model not in PRESETS:
        raise CliError(f"unknown model {args.model!r} for {args.dataset}; choose one of {sorted(PRESETS)}")
    if getattr(args, "amount", "absent") is None:
        args.amount = SPEECH_AMOUNT if args.dataset in SPEECH_DATASETS else DEFAULT_AMOUNT


def run_sweep_command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from safetensors.torch import save_file

    from prunelib.families.mlp.data import load_data
    from prunelib.families.mlp.train import init_model
    from prunelib.fileio import write_atomic
    from prunelib.pruning.criteria import initial_state
    from prunelib.pruning.schedules import get_schedule, model_spec, run_sweep
    from prunelib.storage.checkpoint import read_tensors

    get_schedule(args.method)
    _resolve(args)
    if args.runtime not in RUNTIMES:
        raise CliError(f"unknown runtime {args.runtime!r}; choose one of {list(RUNTIMES)}")
    if args.precision not in PRECISIONS:
        raise CliError(f"unknown precision {args.precision!r}; choose one of {list(PRECISIONS)}")
    out: Path = args.out
    if (out / "results.csv").exists():
        raise CliError(f"{out / 'results.csv'} exists: choose a new --out (earlier runs are never overwritten)")
    if args.dataset in SPEECH_DATASETS:
        from prunelib.cli.speech import speech_sweep

        df = speech_sweep(args)
        return _write_results(out, df, _title(args))
    train_cfg = default_train_config(args.dataset)
    if args.epochs is not None:
        train_cfg = replace(train_cfg, epochs=args.epochs)
    cfg = RunConfig(
        data=DataConfig(args.dataset, args.data_dir, args.seed, train_subset=args.train_subset),
        model=args.model,
        train=train_cfg,
        prune=PruneConfig(args.method, args.amount, args.iterations),
        measure=MeasureConfig(
            runs=max(args.latency_runs, 2), threads=args.threads, runtime=args.runtime, precision=args.precision
        ),
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
    return _write_results(out, df, _title(args))


def _title(args: argparse.Namespace) -> str:
    return (
        f"# {args.dataset} / {args.model} / {args.method} (amount {args.amount}, seed {args.seed})"
        f" — {args.runtime}, {args.precision}\n\n"
    )


def _write_results(out: Path, df, title: str) -> int:
    """``results.csv`` and the lab's markdown table, atomically; the table also goes to stdout."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.csv", df.to_csv(index=False))
    table = to_markdown(wide_table(df))
    write_text_atomic(out / "results.md", title + table)
    print(table, end="")
    print(f"wrote {out / 'results.csv'} and {out / 'results.md'}", file=sys.stderr)
    return 0


def add_sensitivity_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sensitivity",
        help="prune one layer group at a time to rising sparsity; accuracy or WER per group",
        description="Train (Part I) or load (speech) the dense model, then prune one group of weights at a time "
        "by magnitude to each --levels sparsity, everything else dense, and score it. Part I groups: each Linear "
        "layer. Speech groups: feature-extractor convolutions, attention projections, feed-forward layers and each "
        "transformer layer by index. Writes OUT/sensitivity.csv (group, sparsity, accuracy|wer), "
        "OUT/sensitivity.md (table and summary) and OUT/sensitivity.png.",
    )
    _add_data_and_model(p)
    p.add_argument(
        "--levels",
        default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
        help="comma list of group sparsities in [0, 1) (default: 0,0.1,...,0.9)",
    )
    p.add_argument(
        "--eval-count",
        type=_positive_int,
        default=None,
        help="speech only: utterances scored (default: 200 FSDD test utterances; every LibriSpeech utterance)",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory; must not already hold a sensitivity.csv")
    p.set_defaults(handler=run_sensitivity_command)


def _levels(text: str) -> list[float]:
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
    from prunelib.report.writer import sensitivity_summary

    _resolve(args)
    levels = _levels(args.levels)
    out: Path = args.out
    if (out / "sensitivity.csv").exists():
        raise CliError(f"{out / 'sensitivity.csv'} exists: choose a new --out (earlier runs are never overwritten)")
    if args.dataset in SPEECH_DATASETS:
        from prunelib.cli.speech import speech_sensitivity

        frame = speech_sensitivity(args, levels)
    else:
        frame = _mlp_sensitivity(args, levels)
    metric = "wer" if "wer" in frame else "accuracy"
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "sensitivity.csv", frame.to_csv(index=False))
    summary = sensitivity_summary(frame, metric)
    title = f"{args.dataset} / {args.model}: sensitivity"
    write_text_atomic(out / "sensitivity.md", f"# {title}\n\n{summary}\n\n" + to_markdown(frame))
    plots.save_png(plots.sensitivity_figure(frame, metric, title), out / "sensitivity.png")
    print(summary)
    print(f"wrote {out / 'sensitivity.csv'}, {out / 'sensitivity.md'} and {out / 'sensitivity.png'}", file=sys.stderr)
    return 0


def _mlp_sensitivity(args: argparse.Namespace, levels: list[float]):
    from prunelib.families.mlp.data import load_data
    from prunelib.families.mlp.train import evaluate
    from prunelib.pruning.schedules import model_spec, train_dense
    from prunelib.sweep.sensitivity import mlp_groups, sensitivity

    splits = load_data(DataConfig(args.dataset, args.data_dir, args.seed))
    model, _ = train_dense(model_spec(args.model, splits), splits, default_train_config(args.dataset), args.seed)
    return sensitivity(model, mlp_groups(model), lambda m: evaluate(m, splits.test), levels, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m prunelib", description="prunelib: prune small networks, measure what it buys.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_sweep_parser(sub)
    add_sensitivity_parser(sub)
    sub.add_parser(
        "compare", help="compare pytest-benchmark runs (accuracy, latency, size); see 'compare --help'", add_help=False
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        from prunelib.report.compare import main as compare_main

        return compare_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (CliError, DataError, ValueError, OSError) as exc:
        print(f"prunelib: error: {exc}", file=sys.stderr)
        return 2
