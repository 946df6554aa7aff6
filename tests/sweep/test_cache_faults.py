"""Fault injection on the sweep cache with real processes: a build killed with SIGKILL, two builders racing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from prunelib.storage import entries

ROOT = Path(__file__).resolve().parents[2]

#: One tiny sweep (MNIST-5k, 300 training rows, 1 epoch, 3 iterations). argv: cache root, the
#: iteration whose retraining hangs (-1: none). Prints each training phase, then the result.
BUILD = """
import json, sys, time
import torch
torch.set_num_threads(1)
from prunelib.families.mlp.config import TrainConfig
from prunelib.families.mlp.data import subset
from prunelib.families.mlp.family import MlpFamily
from prunelib.sweep.cache import prepare_sweep
from prunelib.sweep.loaded import Loaded, load
from prunelib.sweep.spec import SweepSpec

spec = SweepSpec("mlp", "mnist5k", "lenet300", "imp-rewind", 0.5, 3)
loaded = Loaded(MlpFamily(), subset(load(spec).data, 300, None, 0), TrainConfig(epochs=1, batch_size=100))
root, hang_at = sys.argv[1], int(sys.argv[2])
real = loaded.family.train

def train(model, data, hparams, seed, phase):
    print("train", phase, seed - spec.seed, flush=True)
    if phase == "retrain" and seed - spec.seed == hang_at:
        time.sleep(600)  # the test kills this process here
    return real(model, data, hparams, seed, phase)

loaded.family.train = train
sweep = prepare_sweep(spec, loaded, root)
print("RESULT", json.dumps({"folder": sweep.folder.name, "metrics": sweep.metrics.to_json()}), flush=True)
"""


def start(root: Path, hang_at: int = -1) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", BUILD, str(root), str(hang_at)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def finish(proc: subprocess.Popen[str]) -> tuple[list[str], dict]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    lines = out.splitlines()
    return [line for line in lines if line.startswith("train")], json.loads(lines[-1].removeprefix("RESULT "))


def files_of(root: Path, folder: str) -> dict[str, str]:
    return json.loads((root / folder / "manifest.json").read_text())["files"]


def first_checkpoints(root: Path) -> list[Path]:
    """Iteration 1's completion record in a staging folder (iterations 0 and 1 are then on disk)."""
    return list(root.glob(".building-*/it01.safetensors.done.json"))


def test_a_build_killed_with_sigkill_resumes_and_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = start(killed, hang_at=2)
    end = time.monotonic() + 300
    while not first_checkpoints(killed) and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    assert first_checkpoints(killed), "the first checkpoints never appeared"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (staging,) = [p for p in killed.glob(".building-*") if (p / "it01.safetensors").exists()]
    assert json.loads((staging / "owner.json").read_text())["pid"] == proc.pid
    assert entries.orphaned(staging) and not list(killed.glob("sweep-*"))

    trained, resumed = finish(start(killed))
    assert trained == ["train retrain 2", "train retrain 3"]  # no dense training, no iteration 1 again
    assert json.loads((killed / resumed["folder"] / "manifest.json").read_text())["resumed_from"] == 2
    assert not list(killed.glob(".building-*"))

    trained, reference = finish(start(whole))
    assert trained == ["train dense 0", "train retrain 1", "train retrain 2", "train retrain 3"]
    assert resumed == reference  # same entry, same metrics
    assert files_of(killed, resumed["folder"]) == files_of(whole, reference["folder"])  # byte-identical files


def test_two_processes_racing_on_one_key_build_it_once_and_agree(tmp_path: Path) -> None:
    first, second = start(tmp_path), start(tmp_path)
    (trained_a, result_a), (trained_b, result_b) = finish(first), finish(second)
    assert result_a == result_b
    assert sorted(trained_a + trained_b) == ["train dense 0", "train retrain 1", "train retrain 2", "train retrain 3"]
    assert [] in (trained_a, trained_b)  # one writer; the other waited and reused its entry
    assert entries.problem(tmp_path / result_a["folder"]) is None
    assert not list(tmp_path.glob(".building-*")) and not list(tmp_path.glob(".corrupt-*"))
