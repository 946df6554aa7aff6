"""Self-verifying cache entries: hashed manifests, corrupt entries moved aside, staging records, orphans."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from filelock import FileLock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunelib.storage import entries
from prunelib.storage.entries import CacheWarning, problem
from prunelib.sweep.cache import build_once


def make_entry(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    entries.finish(folder, {"kind": "test"})
    return folder


def test_a_fresh_entry_verifies_and_any_damage_is_named(tmp_path: Path) -> None:
    folder = make_entry(tmp_path / "e", {"a.bin": b"alpha", "b.bin": b"beta"})
    assert set(entries.read_manifest(folder)["files"]) == {"a.bin", "b.bin"}
    assert problem(folder, ["a.bin"]) is None
    assert problem(folder, ["c.bin"]) == f"{folder / 'manifest.json'} does not list c.bin"
    (folder / "a.bin").write_bytes(b"alph")
    assert problem(folder) == f"{folder / 'a.bin'} does not match its sha256 in the manifest (truncated or altered)"
    (folder / "a.bin").unlink()
    assert problem(folder) == f"{folder / 'a.bin'} is missing"
    (folder / "manifest.json").write_bytes(b"\xff\xfe")
    assert "unreadable" in str(problem(folder))
    (folder / "manifest.json").unlink()
    assert problem(folder) == f"{folder / 'manifest.json'} is missing"


@pytest.mark.parametrize(
    "body",
    [[], {"files": []}, {"files": {"a.bin": 3}}, {"files": {"../a.bin": "00"}}, {"files": {"manifest.json": ""}}],
)
def test_malformed_manifests_are_refused(tmp_path: Path, body: object) -> None:
    folder = make_entry(tmp_path / "e", {"a.bin": b"alpha"})
    (folder / "manifest.json").write_text(json.dumps(body))
    assert "malformed" in str(problem(folder))


def test_a_corrupt_entry_is_moved_aside_with_a_warning_naming_it(tmp_path: Path) -> None:
    folder = make_entry(tmp_path / "e", {"a.bin": b"alpha"})
    assert entries.valid_or_aside(folder) and folder.is_dir()
    (folder / "a.bin").write_bytes(b"tampered")
    with pytest.warns(
        CacheWarning, match=r"corrupt cache entry .*e: .*a\.bin does not match.*moved aside to .*\.corrupt-e-"
    ):
        assert not entries.valid_or_aside(folder)
    (aside,) = tmp_path.glob(".corrupt-e-*")
    assert (aside / "a.bin").read_bytes() == b"tampered" and not folder.exists()
    assert not entries.valid_or_aside(folder)  # absent: nothing to move


def test_finish_drops_records_and_lists_what_remains(tmp_path: Path) -> None:
    staging = tmp_path / ".building-k"
    staging.mkdir()
    (staging / "it00.safetensors").write_bytes(b"w0")
    entries.record_done(staging, "it00.safetensors", {"row": {"iteration": 0}})
    entries.write_owner(staging)
    assert entries.done_record(staging, "it00.safetensors") == {
        "sha256": entries.file_sha256(staging / "it00.safetensors"),
        "row": {"iteration": 0},
    }
    entries.finish(staging, {"kind": "x"})
    assert sorted(p.name for p in staging.iterdir()) == ["it00.safetensors", "manifest.json"]
    assert problem(staging) is None


# Anything a disk, an editor or a bug could leave in a manifest: bytes, text, any JSON value.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["files", "kind", "a.bin", ""]), inner),
    max_leaves=12,
)
MANIFESTS = (
    st.binary(max_size=64)
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.text(max_size=6), st.text(max_size=6)).map(lambda files: json.dumps({"files": files}).encode())
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifest=MANIFESTS)
def test_a_fuzzed_manifest_is_set_aside_and_rebuilt_never_a_traceback(manifest: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = make_entry(root / "entry-k", {"a.bin": b"alpha"})
        (folder / "manifest.json").write_bytes(manifest)

        def build(staging: Path) -> None:
            (staging / "a.bin").write_bytes(b"rebuilt")
            entries.finish(staging, {"kind": "test"})

        with pytest.warns(CacheWarning, match="entry-k"):
            assert build_once(folder, "k", root, build, ["a.bin"]) == folder
        assert problem(folder, ["a.bin"]) is None and (folder / "a.bin").read_bytes() == b"rebuilt"
        (aside,) = root.glob(".corrupt-entry-k-*")
        assert (aside / "manifest.json").read_bytes() == manifest


def test_an_older_random_suffix_staging_is_removed_under_the_lock(tmp_path: Path) -> None:
    (tmp_path / ".building-k-x1y2").mkdir()

    def build(staging: Path) -> None:
        (staging / "a.bin").write_bytes(b"a")
        entries.finish(staging, {})

    build_once(tmp_path / "entry-k", "k", tmp_path, build)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["entry-k"]


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def staging_owned_by(root: Path, pid: int, host: str | None = None) -> Path:
    staging = root / ".building-k"
    staging.mkdir()
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": time.time()}
    (staging / "owner.json").write_text(json.dumps(owner))
    return staging


def test_a_staging_folder_of_a_dead_owner_is_orphaned(tmp_path: Path) -> None:
    assert entries.orphaned(staging_owned_by(tmp_path, dead_pid()))
    assert not entries.pid_alive(dead_pid())


def test_a_staging_folder_of_a_live_owner_is_not(tmp_path: Path) -> None:
    staging = staging_owned_by(tmp_path, os.getppid())
    assert not entries.orphaned(staging) and not entries.orphaned(staging, remove=True)
    assert staging.is_dir()


def test_an_orphan_is_removed_under_its_lock_only_if_still_orphaned(tmp_path: Path) -> None:
    staging = staging_owned_by(tmp_path, dead_pid())
    with FileLock(str(tmp_path / ".k.lock")):  # a build took it over
        assert not entries.orphaned(staging, remove=True)
    assert staging.is_dir()
    assert entries.orphaned(staging, remove=True) and not staging.exists()


def test_a_staging_folder_whose_lock_is_held_is_not_orphaned(tmp_path: Path) -> None:
    staging = staging_owned_by(tmp_path, dead_pid())
    with FileLock(str(tmp_path / ".k.lock")):
        assert not entries.orphaned(staging)
    assert entries.orphaned(staging)


def test_another_hosts_staging_is_orphaned_only_when_old(tmp_path: Path) -> None:
    staging = staging_owned_by(tmp_path, 1, host="elsewhere.invalid")
    assert not entries.orphaned(staging, max_age=3600)
    old = time.time() - 7200
    os.utime(staging, (old, old))
    assert entries.orphaned(staging, max_age=3600)
    (staging / "owner.json").write_text("{")  # an unreadable owner record: nobody to ask
    assert entries.orphaned(staging, max_age=1e9)


def test_staging_key_reads_both_namings() -> None:
    assert entries.staging_key(Path(".building-0123abcd")) == "0123abcd"
    assert entries.staging_key(Path(".building-0123abcd-x9_z")) == "0123abcd"
