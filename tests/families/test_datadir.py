"""The data root: the option, else $PRUNELIB_DATA_DIR, else None; a named root must be a directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prunelib.families.datadir import DATA_DIR_ENV, DataError, data_root


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without the variable, whatever the machine running the suite has set."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


def test_env_name() -> None:
    assert DATA_DIR_ENV == "PRUNELIB_DATA_DIR"


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)


@pytest.mark.parametrize("given", [None, ""])
def test_nothing_named_is_none(given: str | None) -> None:
    assert data_root(given) is None


def test_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, "")
    assert data_root(None) is None


@pytest.mark.parametrize("as_str", [True, False])
def test_option_names_the_root(tmp_path: Path, as_str: bool) -> None:
    root = data_root(str(tmp_path) if as_str else tmp_path)
    assert root == tmp_path
    assert isinstance(root, Path)


@pytest.mark.parametrize("given", [None, ""])
def test_variable_names_the_root_when_the_option_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | None
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert data_root(given) == tmp_path


def test_option_wins_over_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen, other = tmp_path / "chosen", tmp_path / "other"
    chosen.mkdir()
    other.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(other))
    assert data_root(chosen) == chosen


def test_option_wins_even_over_a_broken_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "does-not-exist"))
    assert data_root(tmp_path) == tmp_path


def test_missing_dir_from_the_option_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))  # a good variable does not rescue a bad option
    with pytest.raises(DataError) as info:
        data_root(missing)
    message = str(info.value)
    assert str(missing) in message
    assert "data dir" in message
    assert DATA_DIR_ENV not in message


def test_missing_dir_from_the_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope"
    monkeypatch.setenv(DATA_DIR_ENV, str(missing))
    with pytest.raises(DataError, match=re.escape(f"${DATA_DIR_ENV} {missing}")):
        data_root(None)


@pytest.mark.parametrize("via", ["option", "variable"])
def test_a_file_in_place_of_a_dir_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str) -> None:
    file = tmp_path / "data.tsv"
    file.write_text("not a folder\n")
    if via == "variable":
        monkeypatch.setenv(DATA_DIR_ENV, str(file))
    with pytest.raises(DataError, match=re.escape(str(file))) as info:
        data_root(file if via == "option" else None)
    assert "not a directory" in str(info.value)


@pytest.mark.parametrize("via", ["option", "variable"])
def test_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data").mkdir()
    if via == "variable":
        monkeypatch.setenv(DATA_DIR_ENV, "~/data")
    root = data_root("~/data" if via == "option" else None)
    assert root == tmp_path / "data"
    assert "~" not in str(root)


def test_missing_tilde_path_is_named_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "absent"))):
        data_root("~/absent")
