"""Content fingerprints: prunelib's code (every source file, by content and relative path) and single files."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

import prunelib
import prunelib.fingerprint as fingerprint
from prunelib.fingerprint import code_fingerprint, file_sha256

PRUNELIB = Path(prunelib.__file__).resolve().parent


def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 9000  # more than one chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1])
    assert file_sha256(path) != hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- code_fingerprint
def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


@pytest.fixture()
def fake_prunelib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of prunelib's sources that code_fingerprint reads as the installed package."""
    root = copy_tree(PRUNELIB, tmp_path / "site" / "prunelib")
    monkeypatch.setattr(fingerprint, "__file__", str(root / "fingerprint.py"))
    return root


def test_fingerprint_is_content_not_location(fake_prunelib: Path, monkeypatch) -> None:
    copied = code_fingerprint()
    monkeypatch.undo()
    assert code_fingerprint() == copied  # same bytes at the same relative paths: same key
    assert len(copied) == 16 and int(copied, 16) >= 0


def test_fingerprint_changes_when_any_source_file_changes(fake_prunelib: Path) -> None:
    files = sorted(fake_prunelib.rglob("*.py"))
    assert len(files) > 40 and fake_prunelib / "sweep" / "cache.py" in files
    base = code_fingerprint()
    seen = {base}
    for path in files:
        original = path.read_bytes()
        path.write_bytes(original + b"\n# edited\n")
        edited = code_fingerprint()
        assert edited not in seen, path.relative_to(fake_prunelib)
        seen.add(edited)
        path.write_bytes(original)
    assert code_fingerprint() == base


def test_fingerprint_changes_when_a_file_is_added_moved_or_renamed(fake_prunelib: Path) -> None:
    base = code_fingerprint()
    added = fake_prunelib / "pruning" / "extra.py"
    added.write_text("")  # even an empty module
    assert code_fingerprint() != base
    added.unlink()
    assert code_fingerprint() == base
    module = fake_prunelib / "results" / "knee.py"
    renamed = module.rename(fake_prunelib / "results" / "elbow.py")
    assert code_fingerprint() != base
    moved = renamed.rename(fake_prunelib / "report" / "knee.py")
    assert code_fingerprint() != base
    moved.rename(module)
    assert code_fingerprint() == base


def test_fingerprint_ignores_bytecode_and_non_python_files(fake_prunelib: Path) -> None:
    base = code_fingerprint()
    (fake_prunelib / "pruning" / "__pycache__").mkdir()
    (fake_prunelib / "pruning" / "__pycache__" / "criteria.py").write_text("stale = True\n")
    (fake_prunelib / "pruning" / "notes.txt").write_text("not code\n")
    assert code_fingerprint() == base


def test_fingerprint_of_extra_packages_and_modules(tmp_path: Path) -> None:
    base = code_fingerprint()
    package = tmp_path / "my_family"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "family.py").write_text("A = 1\n")
    with_package = code_fingerprint(package)
    assert with_package != base
    assert code_fingerprint(copy_tree(package, tmp_path / "elsewhere" / "my_family")) == with_package
    (package / "family.py").write_text("A = 2\n")
    edited = code_fingerprint(package)
    assert edited not in (base, with_package)
    (package / "data.py").write_text("")
    added = code_fingerprint(package)
    assert added != edited
    (package / "data.py").rename(package / "loader.py")
    assert code_fingerprint(package) not in (added, edited)
    module = tmp_path / "single.py"
    module.write_text("B = 1\n")
    single = code_fingerprint(module)
    assert single != base
    module.write_text("B = 2\n")
    assert code_fingerprint(module) != single


def test_a_missing_extra_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        code_fingerprint(missing)
    with pytest.raises(FileNotFoundError, match="gone.py"):
        code_fingerprint(PRUNELIB / "gone.py")


def test_fingerprint_hashes_scalar_tensors() -> None:
    """Data holding 0-dim tensors (e.g. a normalisation mean) hashes; shape and dtype count."""
    scalar = fingerprint.fingerprint({"mean": torch.tensor(0.5)})
    assert scalar == fingerprint.fingerprint({"mean": torch.tensor(0.5)})
    assert (
        len(
            {
                scalar,
                fingerprint.fingerprint({"mean": torch.tensor([0.5])}),
                fingerprint.fingerprint({"mean": torch.tensor(0.25)}),
            }
        )
        == 3
    )
    assert fingerprint.fingerprint(torch.tensor(True)) != fingerprint.fingerprint(torch.tensor(1, dtype=torch.uint8))
