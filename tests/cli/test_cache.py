"""``python -m prunelib cache list|verify|clean`` on a real cache: entries, states, corrupt ones named, cleaning."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunelib.cli import cache as cache_cli
from prunelib.families.mlp.config import TrainConfig
from prunelib.families.mlp.data import subset
from prunelib.families.mlp.family import MlpFamily
from prunelib.families.sew.train import SPEECH_FILES
from prunelib.sweep.cache import prepare_sweep
from prunelib.sweep.loaded import Loaded, load
from prunelib.sweep.spec import SweepSpec
from tests.cli.test_main import assert_one_line_error, cli

SPEC = SweepSpec("mlp", "mnist5k", "lenet300", "imp-rewind", 0.5, 1)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache base whose bench/ holds one real tiny sweep (and its dense model); copied per test."""
    base = tmp_path_factory.mktemp("cache")
    loaded = Loaded(MlpFamily(), subset(load(SPEC).data, 300, None, 0), TrainConfig(epochs=1, batch_size=100))
    prepare_sweep(SPEC, loaded, base / "bench")
    return base


@pytest.fixture()
def base(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "cache"))


def sweep_folder(base: Path) -> Path:
    (folder,) = (base / "bench").glob("sweep-*")
    return folder


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)


def add_orphan(base: Path) -> Path:
    staging = base / "bench" / ".building-0123456789abcdef"
    staging.mkdir()
    (staging / "it00.safetensors").write_bytes(b"half a build")
    (staging / "owner.json").write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "started": 0}))
    return staging


def test_list_shows_kind_label_size_and_state(base: Path, capsys) -> None:
    code, out, _ = cli(["cache", "list", "--cache-dir", str(base)], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    dense = next(line for line in lines if "dense-" in line)
    sweep = next(line for line in lines if "sweep-" in line)
    assert dense.split()[:2] == ["ok", "dense"] and "mnist5k-lenet300 dense" in dense
    assert sweep.split()[:2] == ["ok", "sweep"] and SPEC.label in sweep and " MB" in sweep
    assert f"({SPEC.iterations} x {SPEC.amount}, seed {SPEC.seed})" in sweep  # sweeps at other amounts differ


def test_list_of_an_empty_cache_says_so(tmp_path: Path, capsys) -> None:
    code, out, _ = cli(["cache", "list", "--cache-dir", str(tmp_path)], capsys)
    assert code == 0 and out.strip() == f"no cache entries under {tmp_path}"


def test_list_uses_prunelib_cache_dir(base: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PRUNELIB_CACHE_DIR", str(base))
    code, out, _ = cli(["cache", "list"], capsys)
    assert code == 0 and SPEC.label in out


def test_verify_passes_a_clean_cache(base: Path, capsys) -> None:
    code, out, _ = cli(["cache", "verify", "--cache-dir", str(base)], capsys)
    assert code == 0 and out.strip() == f"2 entries checked under {base}: 0 corrupt (left in place)"


def test_verify_names_a_tampered_checkpoint_exits_1_and_leaves_it(base: Path, capsys) -> None:
    path = sweep_folder(base) / "it01.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x80  # one flipped bit in a weight: the file still loads
    path.write_bytes(bytes(data))
    code, out, _ = cli(["cache", "verify", "--cache-dir", str(base)], capsys)
    assert code == 1
    assert f"corrupt: {sweep_folder(base)}: {path} does not match its sha256" in out
    assert "1 corrupt (left in place)" in out and path.read_bytes() == bytes(data)
    code, out, _ = cli(["cache", "list", "--cache-dir", str(base)], capsys)
    assert any(line.startswith("corrupt") and "sweep-" in line for line in out.splitlines())


def test_clean_removes_corrupt_set_aside_and_orphaned_folders_and_says_so(base: Path, capsys) -> None:
    (sweep_folder(base) / "metrics.csv").write_text("iteration,accuracy\n0,0.99\n")
    orphan = add_orphan(base)
    aside = base / "bench" / ".corrupt-sweep-0123-20260101T000000Z-1"
    aside.mkdir()
    (aside / "it00.safetensors").write_bytes(b"x")
    code, out, _ = cli(["cache", "list", "--cache-dir", str(base)], capsys)
    states = sorted(line.split()[0] for line in out.splitlines())
    assert states == ["corrupt", "ok", "orphaned", "set"]
    code, out, _ = cli(["cache", "clean", "--cache-dir", str(base)], capsys)
    assert code == 0
    assert f"removed orphaned staging {orphan}" in out and f"removed set aside sweep {aside}" in out
    assert "removed corrupt sweep" in out and out.strip().splitlines()[-1].startswith("removed 3 folders")
    assert not orphan.exists() and not aside.exists() and not list((base / "bench").glob("sweep-*"))
    assert len(list((base / "bench").glob("dense-*"))) == 1  # a valid entry stays
    code, out, _ = cli(["cache", "clean", "--cache-dir", str(base)], capsys)
    assert out.strip() == "nothing to remove"
    code, out, _ = cli(["cache", "clean", "--all", "--cache-dir", str(base)], capsys)
    assert "removed ok dense" in out and not list((base / "bench").glob("dense-*"))


def test_clean_leaves_a_build_in_progress(base: Path, capsys) -> None:
    staging = add_orphan(base)
    (staging / "owner.json").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    code, out, _ = cli(["cache", "clean", "--cache-dir", str(base)], capsys)
    assert staging.is_dir() and out.strip() == "nothing to remove"
    old = time.time() - 3 * 3600
    (staging / "owner.json").write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid"}))
    os.utime(staging, (old, old))
    code, out, _ = cli(["cache", "clean", "--orphan-hours", "2", "--cache-dir", str(base)], capsys)
    assert not staging.exists() and "removed orphaned staging" in out


def test_a_missing_cache_dir_is_one_line(tmp_path: Path, capsys) -> None:
    code, _, err = cli(["cache", "verify", "--cache-dir", str(tmp_path / "nope")], capsys)
    assert_one_line_error(code, err, "--cache-dir", "nope", "no such folder")


def test_the_speech_files_match_the_speech_cache() -> None:
    assert cache_cli.SPEECH_FILES == SPEECH_FILES


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifest=st.binary(max_size=80) | st.dictionaries(st.sampled_from(["files", "spec", "label"]), st.integers()))
def test_verify_refuses_a_fuzzed_manifest_without_a_traceback(base: Path, capsys, manifest) -> None:
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    (sweep_folder(base) / "manifest.json").write_bytes(body)
    code, out, err = cli(["cache", "verify", "--cache-dir", str(base)], capsys)
    assert code == 1 and "Traceback" not in err and f"corrupt: {sweep_folder(base)}" in out


def test_the_speech_cache_is_listed_verified_and_its_dead_saves_cleaned(tmp_path: Path, capsys) -> None:
    from prunelib.families.sew.train import cache_path, entry_key, trained_fsdd_model
    from tests.families.sew.test_train import TINY_CFG
    from tests.families.sew.tiny import write_fake_fsdd

    data, base = write_fake_fsdd(tmp_path / "data", speakers=("ann",), takes=7), tmp_path / "cache"
    cfg = dataclasses.replace(TINY_CFG, steps=2)
    trained_fsdd_model(cfg, data_root=data, cache_dir=base)
    saved = cache_path(cfg, data / "fsdd", base)
    code, out, _ = cli(["cache", "list", "--cache-dir", str(base)], capsys)
    assert out.split()[:2] == ["ok", "speech"] and str(saved) in out
    killed = saved.parent / f".building-{entry_key(saved)}-x1y2"  # a save killed half-way
    killed.mkdir()
    (killed / "owner.json").write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    code, out, _ = cli(["cache", "verify", "--cache-dir", str(base)], capsys)
    assert code == 1 and f"corrupt: {saved}: {weights} does not match" in out
    code, out, _ = cli(["cache", "clean", "--cache-dir", str(base)], capsys)
    assert f"removed orphaned staging {killed}" in out and f"removed corrupt speech {saved}" in out
