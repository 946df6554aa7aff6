"""CLI: every bad input is one line ``prunelib: error: ...`` and exit 2; runs write results, never overwrite."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import save_file

from prunelib.cli.main import main
from prunelib.deploy.precision import PRECISIONS
from prunelib.deploy.runtimes import RUNTIMES
from prunelib.families.mlp.data import DATASETS
from prunelib.families.mlp.models import PRESETS, ModelSpec
from prunelib.families.mlp.train import init_model
from prunelib.pruning.criteria import initial_state
from prunelib.pruning.schedules import SCHEDULES
from prunelib.results.tables import SCHEDULE_COLUMNS, SWEEP_COLUMNS

REPO = Path(__file__).resolve().parents[2]
QUICK = ["--iterations", "1", "--epochs", "1", "--train-subset", "300", "--latency-runs", "2"]
OPTIONS = [
    "--dataset",
    "--model",
    "--method",
    "--iterations",
    "--amount",
    "--seed",
    "--data-dir",
    "--epochs",
    "--train-subset",
    "--runtime",
    "--precision",
    "--latency-runs",
    "--threads",
    "--initial-weights",
    "--out",
]


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``main(argv)`` in-process: (exit status, stdout, stderr), whether it returns or exits."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("prunelib: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("amount", ["0", "1", "0.0", "1.0", "-0.5", "abc"])
def test_amount_outside_0_1_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, amount: str) -> None:
    code, _, err = cli(["sweep", "--amount", amount, "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "amount", amount)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--iterations", "-1"], "iterations"),
        (["--epochs", "two"], "epochs"),
        (["--latency-runs", "1.5"], "latency-runs"),
        ([], "--out"),
    ],
    ids=["negative-iterations", "epochs-not-int", "runs-not-int", "no-out"],
)
def test_other_argument_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], fragment: str
) -> None:
    out = ["--out", str(tmp_path / "run")] if fragment != "--out" else []
    code, _, err = cli(["sweep", *args, *out], capsys)
    assert_one_line_error(code, err, fragment)


@pytest.mark.parametrize(
    "option, value, names",
    [
        ("--dataset", "cifar10", DATASETS),
        ("--model", "resnet18", PRESETS),
        ("--method", "obd", SCHEDULES),
        ("--runtime", "tflite", RUNTIMES),
        ("--precision", "bf16", PRECISIONS),
    ],
)
def test_unknown_names_are_one_line_listing_the_choices(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, value: str, names
) -> None:
    code, _, err = cli(["sweep", option, value, "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, repr(value), *names)
    assert not (tmp_path / "run").exists()


def test_torch_sparse_int8_is_one_line_before_any_training(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(
        ["sweep", "--runtime", "torch-sparse", "--precision", "int8", "--out", str(tmp_path / "run")], capsys
    )
    assert_one_line_error(code, err, "torch-sparse", "int8")
    assert not (tmp_path / "run").exists()


def test_missing_data_dir_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-root"
    code, _, err = cli(
        [
            "sweep",
            "--dataset",
            "sst2",
            "--model",
            "sst2-mlp",
            "--data-dir",
            str(missing),
            "--out",
            str(tmp_path / "run"),
        ],
        capsys,
    )
    assert_one_line_error(code, err, str(missing), "does not exist")


def test_malformed_tsv_row_is_one_line_naming_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, write_sst2: Callable[..., Path]
) -> None:
    root = write_sst2(tmp_path / "data", ["fine\t1", "dull\t0", "broken row without label"], ["ok\t1"])
    code, _, err = cli(
        ["sweep", "--dataset", "sst2", "--model", "sst2-mlp", "--data-dir", str(root), "--out", str(tmp_path / "run")],
        capsys,
    )
    assert_one_line_error(code, err, f"{root / 'sst2' / 'train.tsv'}:4:")


def test_initial_weights_of_another_model_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    save_file(initial_state(init_model(ModelSpec("lenet300", 100, 10), 0)), str(other))
    code, _, err = cli(["sweep", *QUICK, "--initial-weights", str(other), "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "layers.0.weight", "(300, 100)")
    assert not (tmp_path / "run" / "results.csv").exists()


@pytest.mark.parametrize("content", [None, b"not safetensors"], ids=["missing", "corrupt"])
def test_unreadable_initial_weights_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "init.safetensors"
    if content is not None:
        path.write_bytes(content)
    code, _, err = cli(["sweep", *QUICK, "--initial-weights", str(path), "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, str(path))


# ---------------------------------------------------------------- runs
def test_sweep_writes_results_and_never_overwrites(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, stdout, err = cli(["sweep", *QUICK, "--amount", "0.5", "--out", str(out)], capsys)
    assert code == 0, err
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns[: len(SCHEDULE_COLUMNS)]) == list(SCHEDULE_COLUMNS)
    assert df["iteration"].tolist() == [0, 1]
    assert df["sparsity"].iloc[1] == pytest.approx(0.5, abs=1e-5)
    assert list(df.columns) == list(SWEEP_COLUMNS) and (df["precision"] == "fp32").all()
    md = (out / "results.md").read_text(encoding="utf-8")
    assert md.startswith("# mnist5k / lenet300 / no-retrain (amount 0.5, seed 0) — torch, fp32")
    header = md.splitlines()[2]
    assert header.startswith("|") and all(
        c in header
        for c in ("Iteration", "Sparsity (%)", "Accuracy", "Disk Size (MB)", "Compact size (MB)", "FLOPs (M)")
    )
    assert len(md.strip().splitlines()) == 2 + 2 + 2  # title, blank, header, rule, two rows
    assert "Sparsity (%)" in stdout and str(out / "results.csv") in err
    assert (out / "initial.safetensors").is_file()
    before = (out / "results.csv").read_bytes()

    code, _, err = cli(["sweep", *QUICK, "--out", str(out)], capsys)
    assert_one_line_error(code, err, str(out / "results.csv"), "exists")
    assert (out / "results.csv").read_bytes() == before


@pytest.mark.parametrize(
    "method, runtime, precision",
    [("structured-imp-finetune", "torch-sparse", "fp16"), ("structured-no-retrain", "onnxruntime", "int8")],
)
def test_structured_sweep_with_runtime_and_precision(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, method: str, runtime: str, precision: str
) -> None:
    out = tmp_path / "run"
    argv = [
        "sweep",
        *QUICK,
        "--method",
        method,
        "--runtime",
        runtime,
        "--precision",
        precision,
        "--amount",
        "0.5",
        "--out",
        str(out),
    ]
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == list(SWEEP_COLUMNS) and (df["precision"] == precision).all()
    assert df["neuron_sparsity"].tolist() == [0.0, 0.5]  # 300 -> 150, 100 -> 50 hidden neurons
    assert df["flops"].tolist() == [784 * 300 + 300 * 100 + 100 * 10, 784 * 150 + 150 * 50 + 50 * 10]
    assert "Neurons pruned (%)" in stdout
    assert (
        (out / "results.md")
        .read_text(encoding="utf-8")
        .startswith(f"# mnist5k / lenet300 / {method} (amount 0.5, seed 0) — {runtime}, {precision}")
    )


def test_initial_weights_reproduce_a_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Starting from an earlier run's initial.safetensors (another seed's init) gives that run's table."""
    first, second = tmp_path / "a", tmp_path / "b"
    assert cli(["sweep", *QUICK, "--seed", "3", "--out", str(first)], capsys)[0] == 0
    init = first / "initial.safetensors"
    assert cli(["sweep", *QUICK, "--seed", "3", "--initial-weights", str(init), "--out", str(second)], capsys)[0] == 0
    latency = ["latency_mean_s", "latency_std_s"]
    pd.testing.assert_frame_equal(
        pd.read_csv(first / "results.csv").drop(columns=latency),
        pd.read_csv(second / "results.csv").drop(columns=latency),
    )
    assert (second / "initial.safetensors").read_bytes() == init.read_bytes()


def test_help_mentions_every_option_and_choice(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at hyphens ("fashion-" / "mnist") on narrow terminals
    code, out, _ = cli(["sweep", "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())
    for option in OPTIONS:
        assert option in text, option
    for name in (*DATASETS, *PRESETS, *SCHEDULES, *RUNTIMES, *PRECISIONS):
        assert name in text, name
    for name in (*SCHEDULES, *RUNTIMES, *PRECISIONS):  # each choice is explained, not just listed
        assert f"{name}: " in text, name
    code, out, _ = cli(["--help"], capsys)
    assert code == 0 and "sweep" in out and "compare" in out


def test_python_dash_m_prunelib_runs_a_sweep(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # this child process only
    proc = subprocess.run(
        [sys.executable, "-m", "prunelib", "sweep", *QUICK, "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert pd.read_csv(out / "results.csv")["iteration"].tolist() == [0, 1]
    assert (out / "results.md").is_file()


# ----------------------------------------------------------------- speech and sensitivity


@pytest.fixture(scope="module")
def tiny_speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few-thousand-parameter SEW saved with its processor, as a user's save_pretrained folder."""
    from prunelib.families.sew.models import build_processor, build_sew
    from tests.families.sew.tiny import TINY

    folder = tmp_path_factory.mktemp("tiny-sew")
    build_sew(TINY, seed=0).save_pretrained(folder)
    build_processor().save_pretrained(folder)
    return folder


def test_speech_sweep_writes_wer_on_librispeech(tiny_speech_dir: Path, data_root: Path, tmp_path: Path, capsys) -> None:
    code, out, err = cli(
        [
            "sweep",
            "--dataset",
            "librispeech",
            "--model",
            str(tiny_speech_dir),
            "--data-dir",
            str(data_root),
            "--iterations",
            "2",
            "--latency-runs",
            "2",
            "--out",
            str(tmp_path / "run"),
        ],
        capsys,
    )
    assert code == 0, err
    df = pd.read_csv(tmp_path / "run" / "results.csv")
    assert "wer" in df and "accuracy" not in df and df["iteration"].tolist() == [0, 1, 2]
    assert df["sparsity"].round(3).tolist() == [0.0, 0.1, 0.19]  # the lab's 10 % of the remaining per step
    assert (df["wer"] >= 0).all() and "WER" in out


def test_structured_speech_sweep_times_the_shrunk_model(
    tiny_speech_dir: Path, data_root: Path, tmp_path: Path, capsys
) -> None:
    code, out, err = cli(
        [
            "sweep",
            "--dataset",
            "librispeech",
            "--model",
            str(tiny_speech_dir),
            "--data-dir",
            str(data_root),
            "--method",
            "structured-no-retrain",
            "--amount",
            "0.5",
            "--iterations",
            "2",
            "--runtime",
            "onnxruntime",
            "--latency-runs",
            "2",
            "--out",
            str(tmp_path / "run"),
        ],
        capsys,
    )
    assert code == 0, err
    df = pd.read_csv(tmp_path / "run" / "results.csv")
    assert df["neuron_sparsity"].iloc[0] == 0 < df["neuron_sparsity"].iloc[1] < df["neuron_sparsity"].iloc[2]
    assert df["params_deployed"].diff().iloc[1:].lt(0).all() and df["flops"].diff().iloc[1:].lt(0).all()
    assert (df["latency_mean_s"] > 0).all() and "Neurons pruned (%)" in out


@pytest.mark.parametrize(
    "argv,named",
    [
        (["--dataset", "librispeech", "--method", "structured-imp-rewind"], "structured-imp-rewind"),
        (["--dataset", "fsdd", "--method", "imp-rewind", "--model", "sew-tiny"], "imp-rewind"),
        (["--dataset", "librispeech", "--precision", "int8"], "fp32"),
        (["--dataset", "librispeech", "--data-dir", "/nonexistent/data"], "/nonexistent/data"),
    ],
)
def test_speech_sweep_rejects_what_it_cannot_do(argv: list[str], named: str, tmp_path: Path, capsys) -> None:
    code, _, err = cli(["sweep", *argv, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and err.startswith("prunelib: error:") and named in err and len(err.strip().splitlines()) == 1


def test_sensitivity_of_the_mlp_layer_by_layer(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sens"
    code, stdout, err = cli(["sensitivity", "--levels", "0,0.9", "--out", str(out)], capsys)
    assert code == 0, err
    df = pd.read_csv(out / "sensitivity.csv")
    assert set(df["group"]) == {"layers.0", "layers.2", "out"} and sorted(set(df["sparsity"])) == [0.0, 0.9]
    assert df.loc[df["sparsity"] == 0.0, "accuracy"].nunique() == 1
    assert (out / "sensitivity.png").stat().st_size > 0 and "Most sensitive" in (out / "sensitivity.md").read_text()
    code, _, err = cli(["sensitivity", "--levels", "0,0.9", "--out", str(out)], capsys)
    assert code == 2 and "exists" in err  # never overwritten


@pytest.mark.parametrize("levels", ["0,1.0", "a,b", ""])
def test_sensitivity_rejects_bad_levels(levels: str, tmp_path: Path, capsys) -> None:
    code, _, err = cli(["sensitivity", "--levels", levels, "--out", str(tmp_path)], capsys)
    assert code == 2 and "--levels" in err
