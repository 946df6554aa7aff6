"""The ``--prune-*`` options: all in the "prunelib" group, read from the command line, else the ini file."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from prunelib.plugin.options import OPTIONS, add_options, prune_option

pytest_plugins = ["pytester"]

FLAGS = ("--prune-quick", "--prune-embeddings", "--prune-keep-hostname")


# ---------------------------------------------------------------- fakes
class FakeGroup:
    def __init__(self, name: str, description: str, calls: dict[str, dict[str, Any]]) -> None:
        self.name, self.description, self.calls = name, description, calls

    def addoption(self, *names: str, **kwargs: Any) -> None:
        assert len(names) == 1, names
        assert names[0] not in self.calls, f"{names[0]} registered twice"
        self.calls[names[0]] = {"group": self.name, **kwargs}


class FakeParser:
    """Records what :func:`add_options` asks of pytest's parser."""

    def __init__(self) -> None:
        self.options: dict[str, dict[str, Any]] = {}
        self.ini: dict[str, dict[str, Any]] = {}
        self.groups: list[FakeGroup] = []

    def getgroup(self, name: str, description: str = "") -> FakeGroup:
        group = FakeGroup(name, description, self.options)
        self.groups.append(group)
        return group

    def addoption(self, *names: str, **kwargs: Any) -> None:  # options outside any group
        self.options[names[0]] = {"group": None, **kwargs}

    def addini(self, name: str, help: str, **kwargs: Any) -> None:
        assert name not in self.ini, f"ini {name} registered twice"
        self.ini[name] = {"help": help, **kwargs}


class FakeConfig:
    def __init__(self, cli: dict[str, Any], ini: dict[str, Any]) -> None:
        self.cli, self.ini = cli, ini
        self.ini_asked: list[str] = []

    def getoption(self, name: str) -> Any:
        return self.cli.get(name)

    def getini(self, name: str) -> Any:
        self.ini_asked.append(name)
        return self.ini.get(name, "")  # pytest gives "" for an unset string ini without default


@pytest.fixture()
def registered(monkeypatch: pytest.MonkeyPatch) -> FakeParser:
    monkeypatch.delenv("PRUNELIB_DATA_DIR", raising=False)
    parser = FakeParser()
    add_options(parser)  # type: ignore[arg-type]
    return parser


# ---------------------------------------------------------------- OPTIONS table
def test_options_table_is_consistent() -> None:
    flags = [f for f, _, _ in OPTIONS]
    inis = [i for _, i, _ in OPTIONS]
    assert len(set(flags)) == len(flags) and len(set(inis)) == len(inis)
    for flag, ini, text in OPTIONS:
        assert flag.startswith("--prune-")
        assert ini == flag[2:].replace("-", "_")  # --prune-foo-bar <-> prune_foo_bar
        assert text.strip()
    assert not set(FLAGS) & set(flags)  # flags have no ini fallback


# ---------------------------------------------------------------- registration (fake parser)
def test_every_option_is_in_the_prunelib_group(registered: FakeParser) -> None:
    assert {g.name for g in registered.groups} == {"prunelib"}
    expected = {f for f, _, _ in OPTIONS} | set(FLAGS) | {"--prune-data-dir"}
    assert set(registered.options) == expected
    assert all(call["group"] == "prunelib" for call in registered.options.values())
    assert all(call.get("help") for call in registered.options.values())


def test_each_valued_option_has_an_ini_setting_and_no_default(registered: FakeParser) -> None:
    assert set(registered.ini) == {i for _, i, _ in OPTIONS}
    for flag, ini, text in OPTIONS:
        assert registered.options[flag].get("default") is None
        assert registered.options[flag].get("action") in (None, "store")
        assert registered.options[flag]["help"] == text == registered.ini[ini]["help"]


@pytest.mark.parametrize("flag", FLAGS)
def test_quick_and_embeddings_are_flags(registered: FakeParser, flag: str) -> None:
    call = registered.options[flag]
    assert call["action"] == "store_true"
    assert call["default"] is False


def test_data_dir_defaults_to_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PRUNELIB_DATA_DIR", str(tmp_path))
    parser = FakeParser()
    add_options(parser)  # type: ignore[arg-type]
    assert parser.options["--prune-data-dir"]["default"] == str(tmp_path)
    monkeypatch.delenv("PRUNELIB_DATA_DIR")
    parser = FakeParser()
    add_options(parser)  # type: ignore[arg-type]
    assert parser.options["--prune-data-dir"]["default"] is None


# ---------------------------------------------------------------- prune_option (fake config)
@pytest.mark.parametrize(("flag", "ini", "_"), OPTIONS)
def test_command_line_wins_over_ini(flag: str, ini: str, _: str) -> None:
    config = FakeConfig({flag: "from-cli"}, {ini: "from-ini"})
    assert prune_option(config, flag) == "from-cli"  # type: ignore[arg-type]


@pytest.mark.parametrize(("flag", "ini", "_"), OPTIONS)
def test_ini_when_the_command_line_is_silent(flag: str, ini: str, _: str) -> None:
    config = FakeConfig({flag: None}, {ini: "from-ini"})
    assert prune_option(config, flag) == "from-ini"  # type: ignore[arg-type]
    assert config.ini_asked == [ini]


@pytest.mark.parametrize(("flag", "ini", "_"), OPTIONS)
def test_none_when_neither_is_set(flag: str, ini: str, _: str) -> None:
    assert prune_option(FakeConfig({flag: None}, {}), flag) is None  # type: ignore[arg-type]
    assert prune_option(FakeConfig({flag: ""}, {ini: ""}), flag) is None  # type: ignore[arg-type]


def test_an_option_without_ini_never_reads_the_ini() -> None:
    config = FakeConfig({"--prune-data-dir": None}, {})
    assert prune_option(config, "--prune-data-dir") is None  # type: ignore[arg-type]
    assert config.ini_asked == []
    config = FakeConfig({"--prune-data-dir": "/data"}, {})
    assert prune_option(config, "--prune-data-dir") == "/data"  # type: ignore[arg-type]


# ---------------------------------------------------------------- through pytest itself
CONFTEST = """
from prunelib.plugin.options import add_options

def pytest_addoption(parser):
    add_options(parser)
"""

PROBE = """
import json
from prunelib.plugin.options import OPTIONS, prune_option

def test_probe(request):
    config = request.config
    seen = {flag: prune_option(config, flag) for flag, _, _ in OPTIONS}
    seen["--prune-quick"] = config.getoption("--prune-quick")
    seen["--prune-embeddings"] = config.getoption("--prune-embeddings")
    print("SEEN=" + json.dumps(seen))
"""


def probe(pytester: pytest.Pytester, *args: str) -> dict[str, Any]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_probe=PROBE)
    result = pytester.runpytest_inprocess("-s", "-p", "no:cacheprovider", "-p", "no:randomly", *args)
    result.assert_outcomes(passed=1)
    found = re.search(r"SEEN=(\{.*?\})$", result.stdout.str(), re.MULTILINE)
    assert found, result.stdout.str()
    return json.loads(found.group(1))


def test_real_pytest_reads_cli_then_ini_then_none(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nprune_seed = 7\nprune_amount = 0.25\n")
    seen = probe(pytester, "--prune-amount=0.5", "--prune-quick")
    assert seen["--prune-amount"] == "0.5"  # command line beats ini
    assert seen["--prune-seed"] == "7"  # ini only
    assert seen["--prune-threads"] is None  # neither
    assert seen["--prune-quick"] is True
    assert seen["--prune-embeddings"] is False


def test_real_pytest_help_lists_the_prunelib_group(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest_inprocess("--help", "-p", "no:cacheprovider")
    text = result.stdout.str()
    start = text.index("prunelib pruning benchmarks:")
    section = text[start:]
    for flag in [f for f, _, _ in OPTIONS] + list(FLAGS) + ["--prune-data-dir"]:
        assert flag in section, flag
    for _, ini, _ in OPTIONS:
        assert ini in text, ini


def test_real_pytest_flags_take_no_value(pytester: pytest.Pytester) -> None:
    """``--prune-quick tests`` must not swallow the next argument as its value."""
    seen = probe(pytester, "--prune-embeddings", "test_probe.py")
    assert seen["--prune-embeddings"] is True
    assert seen["--prune-quick"] is False
