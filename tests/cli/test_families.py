"""``python -m prunelib families`` and ``--family MODULE:CALLABLE``: what is registered, where from, what it supports."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pandas as pd
import pytest

from prunelib.results.schema import sweep_columns
from tests.cli.test_main import assert_one_line_error, cli

#: A user's family in their own repository: a linear classifier on seeded random data, metric "hits".
USER_FAMILY = """
from dataclasses import dataclass

import torch
from torch import nn

from prunelib.families.contract import Family, Metric


@dataclass(frozen=True)
class Hyper:
    epochs: int = 1


class Blobs(Family):
    name = "blobs"
    metric = Metric("hits", higher_is_better=True)
    datasets = ("blobs",)
    models = ("linear", "wide")
    runtimes = ("torch",)
    precisions = ("fp32",)
    amount, iterations = 0.5, 2

    def hparams(self, dataset, quick):
        return Hyper()

    def load_data(self, dataset, model, data_dir, seed, quick):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(64, 8, generator=gen)
        return x, (x[:, 0] > 0).long()

    def build(self, model, data, seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(8, 16 if model == "linear" else 64), nn.ReLU(), nn.Linear(16 if model == "linear" else 64, 2)).eval()

    def train(self, model, data, hparams, seed, phase):
        pass

    def evaluate(self, model, data):
        x, y = data
        with torch.no_grad():
            return {"hits": float((model(x).argmax(1) == y).float().mean())}

    def example_inputs(self, data, batch):
        return data[0][:batch]


def make():
    return Blobs()


def not_a_family():
    return 42
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module (uniquely named, so no earlier import is reused) in the current directory."""
    name = f"user_family_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_FAMILY), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_families_lists_the_built_ins_with_what_they_support(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(["families"], capsys)
    assert code == 0, err
    blocks = {block.splitlines()[0]: block for block in out.strip().split("\n\n")}
    assert {"mlp", "sew"} <= set(blocks)
    mlp, sew = blocks["mlp"], blocks["sew"]
    assert "from: built-in" in mlp and "from: built-in" in sew
    assert "metric: accuracy (higher is better)" in mlp and "metric: wer (lower is better)" in sew
    assert "datasets: mnist5k, mnist, fashion-mnist, sst2" in mlp and "datasets: fsdd, librispeech" in sew
    assert "models: sew-fsdd, sew-tiny, sew-mini" in sew
    assert "runtimes: torch, onnxruntime, torch-sparse" in mlp and "runtimes: torch, onnxruntime\n" in sew + "\n"
    assert "precisions: fp32\n" in sew + "\n" and "precisions: fp32, fp16, int8" in mlp
    assert "structured-imp-rewind" in mlp and "structured-imp-rewind" in sew


def test_families_describes_a_module_callable(capsys: pytest.CaptureFixture[str], user_module: str) -> None:
    code, out, err = cli(["families", "--family", f"{user_module}:make"], capsys)
    assert code == 0, err
    block = out.strip().split("\n\n")[-1]
    assert block.splitlines()[0] == f"{user_module}:make"
    assert f"{user_module}.py" in block and "metric: hits (higher is better)" in block
    assert "models: linear, wide" in block
    methods = next(line for line in block.splitlines() if "methods:" in line)
    assert "no-retrain" in methods and "structured" not in methods  # no structured_step: not offered


def test_a_broken_family_is_reported_without_hiding_the_others(
    capsys: pytest.CaptureFixture[str], user_module: str
) -> None:
    code, out, _ = cli(
        ["families", "--family", f"{user_module}:not_a_family", "--family", "no_such_module_xyz:Family"], capsys
    )
    assert code == 0
    blocks = {b.splitlines()[0]: b for b in out.strip().split("\n\n")}
    assert {"mlp", "sew"} <= set(blocks)
    assert "error:" in blocks[f"{user_module}:not_a_family"] and "not a prunelib family" in out
    assert "cannot import module 'no_such_module_xyz'" in blocks["no_such_module_xyz:Family"]


def test_a_sweep_of_a_users_family_writes_its_metric_column(
    capsys: pytest.CaptureFixture[str], user_module: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    code, stdout, err = cli(
        ["sweep", "--family", f"{user_module}:make", "--model", "wide", "--latency-runs", "2", "--out", str(out)],
        capsys,
    )
    assert code == 0, err
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == list(sweep_columns("hits"))
    assert df["iteration"].tolist() == [0, 1, 2] and df["sparsity"].round(3).tolist() == [0.0, 0.5, 0.75]
    assert df["params_total"].iloc[0] == 8 * 64 + 64 + 64 * 2 + 2
    assert "Hits" in stdout
    md = (out / "results.md").read_text(encoding="utf-8")
    assert md.startswith(f"# blobs / wide / no-retrain (family {user_module}:make, amount 0.5, seed 0) — torch, fp32")


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--family", "{m}:not_a_family"], ["not a prunelib family"]),
        (["--family", "{m}:missing"], ["has no attribute 'missing'"]),
        (["--family", "{m}"], ["MODULE:CALLABLE"]),
        (["--family", "{m}:make", "--method", "structured-no-retrain"], ["structured"]),
        (["--family", "{m}:make", "--runtime", "onnxruntime"], ["onnxruntime"]),
        (["--family", "{m}:make", "--train-subset", "10"], ["subset"]),
    ],
    ids=["not-a-family", "no-attribute", "no-colon", "no-structured", "no-runtime", "no-subset"],
)
def test_what_a_users_family_cannot_do_is_one_line(
    capsys: pytest.CaptureFixture[str], user_module: str, tmp_path: Path, argv: list[str], fragments: list[str]
) -> None:
    argv = [a.format(m=user_module) for a in argv]
    code, _, err = cli(["sweep", *argv, "--latency-runs", "2", "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "run" / "results.csv").exists()
