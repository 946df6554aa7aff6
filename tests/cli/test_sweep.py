"""``python -m prunelib sweep`` and ``sensitivity``: bad input is one line and exit 2; runs write results, never overwrite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import save_file

from prunelib.deploy.precision import PRECISIONS
from prunelib.deploy.runtimes import RUNTIMES
from prunelib.families.mlp.data import DATASETS
from prunelib.families.mlp.models import PRESETS, ModelSpec
from prunelib.families.mlp.train import init_model
from prunelib.pruning.criteria import initial_state
from prunelib.pruning.schedules import SCHEDULES
from prunelib.results.schema import sweep_columns
from tests.cli.test_main import QUICK, assert_one_line_error, cli
from tests.families.sew.tiny import write_fake_fsdd

MLP_COLUMNS = sweep_columns("accuracy")
OPTIONS = [
    "--family",
    "--dataset",
    "--model",
    "--method",
    "--iterations",
    "--amount",
    "--seed",
    "--seeds",
    "--rewind-epoch",
    "--data-dir",
    "--max-tokens",
    "--epochs",
    "--hparam",
    "--train-subset",
    "--eval-count",
    "--embeddings",
    "--unit-criterion",
    "--unit-scope",
    "--unit-round",
    "--runtime",
    "--precision",
    "--batch",
    "--latency-runs",
    "--threads",
    "--initial-weights",
    "--out",
]


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
        (["--batch", "0"], "batch"),
        (["--threads", "0"], "threads"),
        (["--epochs", "0"], "--epochs"),
        (["--hparam", "epochs=0"], "--hparam epochs"),
        (["--latency-runs", "0"], "latency-runs"),
        (["--latency-runs", "1"], "latency-runs"),
        (["--unit-round", "0"], "unit-round"),
        (["--max-tokens", "0"], "--max-tokens"),
        (["--seeds", "1,x"], "--seeds must be an integer, got 'x'"),
        (["--max-tokens", "8"], "(--max-tokens) caps token data sets (sst2 in family mlp); 'mnist5k' is not one"),
        (["--hparam", "lr"], "KEY=VALUE"),
        (["--hparam", "momentum=0.9"], "momentum"),
        ([], "--out"),
    ],
    ids=[
        "negative-iterations",
        "epochs-not-int",
        "runs-not-int",
        "batch-0",
        "threads-0",
        "epochs-0",
        "hparam-epochs-0",
        "runs-0",
        "runs-1",
        "unit-round-0",
        "max-tokens-0",
        "seeds-not-int",
        "max-tokens-not-tokens",
        "hparam",
        "hparam-key",
        "no-out",
    ],
)
def test_other_argument_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], fragment: str
) -> None:
    out = ["--out", str(tmp_path / "run")] if fragment != "--out" else []
    code, _, err = cli(["sweep", *args, *out], capsys)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "option, value, names",
    [
        ("--dataset", "cifar10", DATASETS),
        ("--model", "resnet18", PRESETS),
        ("--method", "obd", SCHEDULES),
        ("--runtime", "tflite", RUNTIMES),
        ("--precision", "bf16", PRECISIONS),
        ("--family", "vision", ("mlp", "sew")),
    ],
)
def test_unknown_names_are_one_line_listing_the_choices(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, value: str, names
) -> None:
    code, _, err = cli(["sweep", option, value, "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, value, *names)
    assert not (tmp_path / "run").exists()


def test_torch_sparse_int8_is_one_line_before_any_training(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(
        ["sweep", "--runtime", "torch-sparse", "--precision", "int8", "--out", str(tmp_path / "run")], capsys
    )
    assert_one_line_error(code, err, "torch-sparse", "int8")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("dataset", ["mnist5k", "sst2"], ids=["embedded-default", "sst2"])
def test_missing_data_dir_is_one_line_even_for_embedded_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str
) -> None:
    monkeypatch.delenv("PRUNELIB_DATA_DIR", raising=False)
    missing = tmp_path / "no-such-root"
    argv = ["sweep", *QUICK, "--dataset", dataset, "--data-dir", str(missing), "--out", str(tmp_path / "run")]
    code, _, err = cli(argv, capsys)
    assert_one_line_error(code, err, str(missing), "does not exist")
    assert not (tmp_path / "run").exists()


def test_missing_data_dir_from_the_environment_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "env-root"
    monkeypatch.setenv("PRUNELIB_DATA_DIR", str(missing))
    code, _, err = cli(["sweep", *QUICK, "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "PRUNELIB_DATA_DIR", str(missing))


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
    assert not (tmp_path / "run" / "results.csv").exists()


# ---------------------------------------------------------------- runs
def test_sweep_writes_results_and_never_overwrites(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, stdout, err = cli(["sweep", *QUICK, "--amount", "0.5", "--out", str(out)], capsys)
    assert code == 0, err
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == list(MLP_COLUMNS) and (df["precision"] == "fp32").all()
    assert df["iteration"].tolist() == [0, 1]
    assert df["sparsity"].iloc[1] == pytest.approx(0.5, abs=1e-5)
    md = (out / "results.md").read_text(encoding="utf-8")
    assert md.startswith("# mnist5k / lenet300 / no-retrain (family mlp, amount 0.5, seed 0) — torch, fp32")
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


def test_family_defaults_and_hparams(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Without --amount/--iterations the family's schedule is used; --hparam reaches training."""
    out = tmp_path / "run"
    argv = ["sweep", "--iterations", "1", "--hparam", "epochs=1", "--hparam", "lr=0.01", "--train-subset", "300"]
    code, _, err = cli([*argv, "--latency-runs", "2", "--out", str(out)], capsys)
    assert code == 0, err
    df = pd.read_csv(out / "results.csv")
    assert df["sparsity"].iloc[1] == pytest.approx(0.33, abs=1e-3)  # the MLP family's amount
    assert "amount 0.33" in (out / "results.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "method, runtime, precision",
    [("structured-imp-finetune", "torch-sparse", "fp16"), ("structured-no-retrain", "onnxruntime", "int8")],
)
def test_structured_sweep_with_runtime_and_precision(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, method: str, runtime: str, precision: str
) -> None:
    out = tmp_path / "run"
    argv = ["sweep", *QUICK, "--method", method, "--runtime", runtime, "--precision", precision, "--amount", "0.5"]
    code, stdout, err = cli([*argv, "--out", str(out)], capsys)
    assert code == 0, err
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == list(MLP_COLUMNS) and (df["precision"] == precision).all()
    assert df["neuron_sparsity"].tolist() == [0.0, 0.5]  # 300 -> 150, 100 -> 50 hidden neurons
    assert df["flops"].tolist() == [784 * 300 + 300 * 100 + 100 * 10, 784 * 150 + 150 * 50 + 50 * 10]
    assert "Neurons pruned (%)" in stdout
    assert (
        (out / "results.md")
        .read_text(encoding="utf-8")
        .startswith(f"# mnist5k / lenet300 / {method} (family mlp, amount 0.5, seed 0) — {runtime}, {precision}")
    )


def test_initial_weights_reproduce_a_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Starting from an earlier run's initial.safetensors (another seed's init) gives that run's table."""
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert cli(["sweep", *QUICK, "--seed", "3", "--out", str(first)], capsys)[0] == 0
    init = first / "initial.safetensors"
    assert cli(["sweep", *QUICK, "--seed", "3", "--initial-weights", str(init), "--out", str(second)], capsys)[0] == 0
    latency = ["latency_mean_s", "latency_std_s", "latency_median_s", "latency_iqr_s"]
    pd.testing.assert_frame_equal(
        pd.read_csv(first / "results.csv").drop(columns=latency),
        pd.read_csv(second / "results.csv").drop(columns=latency),
    )
    assert (second / "initial.safetensors").read_bytes() == init.read_bytes()
    assert cli(["sweep", *QUICK, "--seed", "4", "--out", str(third)], capsys)[0] == 0  # another seed differs
    assert (third / "initial.safetensors").read_bytes() != init.read_bytes()


def test_seeds_write_one_folder_per_seed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``--seeds 3,4``: OUT/seed3 and OUT/seed4, each as a one-seed run of that seed writes it."""
    assert cli(["sweep", *QUICK, "--seeds", "3,4", "--out", str(tmp_path / "both")], capsys)[0] == 0
    assert cli(["sweep", *QUICK, "--seed", "4", "--out", str(tmp_path / "one")], capsys)[0] == 0
    both, one = tmp_path / "both", tmp_path / "one"
    assert (both / "seed4" / "initial.safetensors").read_bytes() == (one / "initial.safetensors").read_bytes()
    assert (both / "seed3" / "initial.safetensors").read_bytes() != (one / "initial.safetensors").read_bytes()
    assert (both / "seed3" / "plots" / "metric-vs-sparsity.png").is_file() and not (both / "results.csv").exists()
    code, _, err = cli(["sweep", *QUICK, "--seed", "1", "--seeds", "1,2", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--seed 1 and --seeds 1,2: give one" in err


def test_help_mentions_every_option_and_choice(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at hyphens ("fashion-" / "mnist") on narrow terminals
    code, out, _ = cli(["sweep", "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())
    for option in OPTIONS:
        assert option in text, option
    for name in (*SCHEDULES, *RUNTIMES, *PRECISIONS):  # each choice is explained, not just listed
        assert f"{name}: " in text, name
    assert "families" in text  # where the families, data sets and models are listed


# ----------------------------------------------------------------- speech


@pytest.fixture(scope="module")
def fake_fsdd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a tiny fake FSDD (one speaker, 12 takes: train clips exist)."""
    return write_fake_fsdd(tmp_path_factory.mktemp("data"), speakers=("ann",), takes=12)


@pytest.fixture(scope="module")
def tiny_speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few-thousand-parameter SEW saved with its processor, as a user's save_pretrained folder."""
    from prunelib.families.sew.models import build_processor, build_sew
    from tests.families.sew.tiny import TINY

    folder = tmp_path_factory.mktemp("tiny-sew")
    build_sew(TINY, seed=0).save_pretrained(folder)
    build_processor().save_pretrained(folder)
    return folder


def test_structured_speech_sweep_on_onnxruntime_times_the_shrunk_model(
    fake_fsdd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["sweep", "--dataset", "fsdd", "--model", "sew-mini", "--data-dir", str(fake_fsdd)]
    argv += ["--method", "structured-no-retrain", "--amount", "0.5", "--iterations", "2", "--runtime", "onnxruntime"]
    argv += ["--eval-count", "3", "--latency-runs", "2", "--threads", "1", "--out", str(out)]
    code, stdout, err = cli(argv, capsys)
    assert code == 0, err
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == list(sweep_columns("wer")) and "accuracy" not in df
    assert df["neuron_sparsity"].iloc[0] == 0 < df["neuron_sparsity"].iloc[1] < df["neuron_sparsity"].iloc[2]
    assert df["params_deployed"].diff().iloc[1:].lt(0).all() and df["flops"].diff().iloc[1:].lt(0).all()
    assert (df["latency_mean_s"] > 0).all() and (df["wer"] >= 0).all()
    assert "Neurons pruned (%)" in stdout and "WER" in stdout
    md = (out / "results.md").read_text(encoding="utf-8")
    assert md.startswith("# fsdd / sew-mini / structured-no-retrain (family sew, amount 0.5, seed 0) — onnxruntime")


def test_speech_imp_sweep_retrains_on_fake_fsdd(
    fake_fsdd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sweep", "--dataset", "fsdd", "--model", "sew-mini", "--data-dir", str(fake_fsdd), "--method"]
    argv += ["imp-finetune", "--iterations", "1", "--amount", "0.5", "--hparam", "retrain_steps=2"]
    argv += ["--eval-count", "2", "--train-subset", "4", "--latency-runs", "2", "--out", str(tmp_path / "run")]
    code, _, err = cli(argv, capsys)
    assert code == 0, err
    df = pd.read_csv(tmp_path / "run" / "results.csv")
    assert df["sparsity"].round(3).tolist() == [0.0, 0.5]


def test_speech_sweep_writes_wer_on_librispeech(
    tiny_speech_dir: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sweep", "--dataset", "librispeech", "--model", str(tiny_speech_dir), "--data-dir", str(data_root)]
    argv += ["--iterations", "2", "--eval-count", "4", "--latency-runs", "2", "--out", str(tmp_path / "run")]
    code, out, err = cli(argv, capsys)
    assert code == 0, err
    df = pd.read_csv(tmp_path / "run" / "results.csv")
    assert "wer" in df and "accuracy" not in df and df["iteration"].tolist() == [0, 1, 2]
    assert df["sparsity"].round(3).tolist() == [0.0, 0.1, 0.19]  # the lab's 10 % of the remaining per step
    assert (df["wer"] >= 0).all() and "WER" in out


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--dataset", "librispeech", "--precision", "int8"], "fp32"),
        (["--dataset", "fsdd", "--runtime", "torch-sparse"], "torch-sparse"),
        (["--dataset", "librispeech", "--data-dir", "/nonexistent/data"], "/nonexistent/data"),
        (["--dataset", "fsdd", "--model", "sew-mini"], "--data-dir"),
        (["--family", "sew", "--dataset", "mnist5k"], "'mnist5k'"),
        (["--dataset", "fsdd", "--model", "lenet300"], "'lenet300'"),
        (["--dataset", "fsdd", "--epochs", "2"], "epochs"),
    ],
    ids=["int8", "torch-sparse", "missing-root", "no-root", "wrong-dataset", "wrong-model", "no-epochs"],
)
def test_speech_sweep_rejects_what_it_cannot_do(
    argv: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRUNELIB_DATA_DIR", raising=False)
    code, _, err = cli(["sweep", *argv, "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, named)
    assert not (tmp_path / "run").exists()


def test_speech_retraining_on_librispeech_is_one_line(
    tiny_speech_dir: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sweep", "--dataset", "librispeech", "--model", str(tiny_speech_dir), "--data-dir", str(data_root)]
    argv += ["--method", "structured-imp-rewind", "--iterations", "1", "--eval-count", "1", "--latency-runs", "2"]
    code, _, err = cli([*argv, "--out", str(tmp_path / "run")], capsys)
    # transformers may draw a progress bar while loading the model before the run fails
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and sum("error" in line for line in lines) == 1
    assert_one_line_error(code, lines[-1], "FSDD", "--dataset fsdd")
    assert not (tmp_path / "run" / "results.csv").exists()


# ----------------------------------------------------------------- sensitivity


def test_sensitivity_of_the_mlp_layer_by_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sens"
    fast = ["--epochs", "1", "--train-subset", "300", "--eval-count", "200"]
    code, stdout, err = cli(["sensitivity", *fast, "--levels", "0,0.9", "--out", str(out)], capsys)
    assert code == 0, err
    df = pd.read_csv(out / "sensitivity.csv")
    assert set(df["group"]) == {"layers.0", "layers.2", "out"} and sorted(set(df["sparsity"])) == [0.0, 0.9]
    assert df.loc[df["sparsity"] == 0.0, "accuracy"].nunique() == 1
    assert (out / "sensitivity.png").stat().st_size > 0 and "Most sensitive" in (out / "sensitivity.md").read_text()
    before = (out / "sensitivity.csv").read_bytes()
    code, _, err = cli(["sensitivity", *fast, "--levels", "0,0.9", "--out", str(out)], capsys)
    assert_one_line_error(code, err, str(out / "sensitivity.csv"), "exists")  # never overwritten
    assert (out / "sensitivity.csv").read_bytes() == before


def test_sensitivity_of_a_speech_model_scores_wer(
    fake_fsdd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sens"
    argv = ["sensitivity", "--dataset", "fsdd", "--model", "sew-mini", "--data-dir", str(fake_fsdd)]
    code, _, err = cli([*argv, "--levels", "0,0.5", "--eval-count", "2", "--out", str(out)], capsys)
    assert code == 0, err
    df = pd.read_csv(out / "sensitivity.csv")
    assert list(df.columns) == ["group", "sparsity", "group_sparsity", "model_sparsity", "wer"]
    assert set(df["group"]) == {"feature_extractor", "attention", "feed_forward", "layer.0"}


@pytest.mark.parametrize("levels", ["0,1.0", "a,b", ""])
def test_sensitivity_rejects_bad_levels(levels: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["sensitivity", "--levels", levels, "--out", str(tmp_path / "sens")], capsys)
    assert_one_line_error(code, err, "--levels")
    assert not (tmp_path / "sens").exists()


def test_several_methods_get_a_folder_each_and_the_labs_plots(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    argv = ["sweep", *QUICK, "--method", "no-retrain,structured-no-retrain", "--amount", "0.5"]
    code, stdout, err = cli([*argv, "--unit-scope", "global", "--out", str(out)], capsys)
    assert code == 0, err
    for method in ("no-retrain", "structured-no-retrain"):
        frame = pd.read_csv(out / method / "results.csv")
        assert list(frame.columns) == list(MLP_COLUMNS) and len(frame) == 2
        assert (out / method / "results.md").read_text(encoding="utf-8").startswith(f"# mnist5k / lenet300 / {method}")
    assert pd.read_csv(out / "structured-no-retrain" / "results.csv")["neuron_sparsity"].iloc[1] == 0.5  # global
    rounded = tmp_path / "rounded"
    code, _, err = cli([*argv, "--unit-round", "16", "--out", str(rounded)], capsys)
    assert code == 0, err
    widths = pd.read_csv(rounded / "structured-no-retrain" / "results.csv")["neuron_sparsity"]
    assert widths.iloc[1] == pytest.approx(1 - (144 + 48) / 400)  # 300 and 100 keep 144 and 48, not 150 and 50
    for plot in ("metric-vs-sparsity", "metric-vs-disk", "metric-vs-latency"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 0
    code, _, err = cli([*argv, "--out", str(out)], capsys)  # a second run into the same folder loses nothing
    assert code != 0 and "exists" in err


def test_an_unknown_method_in_a_list_is_named_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = cli(["sweep", *QUICK, "--method", "imp-rewind,obd", "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "obd")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["sweep", "sensitivity"])
@pytest.mark.parametrize("below", [False, True], ids=["file-in-place", "below-a-file"])
def test_an_unwritable_out_fails_before_any_data_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str, below: bool
) -> None:
    """Under root chmod does not stop writes, so a file stands where the folder goes."""

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("data loaded before --out was checked")

    monkeypatch.setattr("prunelib.cli.sweep.load", no_work)
    blocker = tmp_path / "run"
    blocker.write_text("not a folder")
    out = blocker / "sub" if below else blocker
    code, stdout, err = cli([command, "--out", str(out)], capsys)
    assert_one_line_error(code, err, "--out", str(out), "is not a folder")
    assert stdout == "" and blocker.read_text() == "not a folder"
