"""The family registry: built-ins, ``module:callable`` from sys.path, entry points, and errors that name the cause.

Families are written as small modules into a temporary folder put on ``sys.path``; an installed
plugin is faked by a ``*.dist-info`` folder with ``entry_points.txt`` beside them, which
:mod:`importlib.metadata` finds like any installed distribution. ``get_family`` caches by name,
so every test starts and ends with an empty cache.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from prunelib.families.cnn.family import CnnFamily
from prunelib.families.contract import Family
from prunelib.families.kws.family import KwsFamily
from prunelib.families.mlp.family import MlpFamily
from prunelib.families.registry import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    family_for,
    get_family,
    origin,
    registered,
)
from prunelib.families.sew.family import SewFamily

FAMILY_SOURCE = """
import torch
from torch import nn

from prunelib.families.contract import Family, Metric


class ToyFamily(Family):
    name = "{name}"
    metric = Metric("accuracy", higher_is_better=True)
    datasets = ("{dataset}",)
    models = ("toy-linear",)

    def hparams(self, dataset, quick):
        return None

    def load_data(self, dataset, model, data_dir, seed, quick):
        return torch.zeros(4, 3)

    def build(self, model, data, seed):
        torch.manual_seed(seed)
        return nn.Linear(3, 2).eval()

    def train(self, model, data, hparams, seed, phase):
        pass

    def evaluate(self, model, data):
        return {{"accuracy": 0.5}}

    def example_inputs(self, data, batch):
        return data[:batch]


def make_family():
    return ToyFamily()


def make_nothing():
    return 42


class NotAFamily:
    pass


class Incomplete(Family):  # abstract methods left out
    name = "incomplete"
"""


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    get_family.cache_clear()
    yield
    get_family.cache_clear()


@pytest.fixture
def toy_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Writer: ``toy_module(name=..., dataset=...)`` puts a uniquely named family module on sys.path, returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str = "toy", dataset: str = "toyset") -> str:
        module = f"toy_family_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{module}.py").write_text(FAMILY_SOURCE.format(name=name, dataset=dataset))
        monkeypatch.delitem(sys.modules, module, raising=False)  # forgotten again after the test
        return module

    return write


def fake_distribution(folder: Path, dist: str, version: str, entry_points: dict[str, str]) -> Path:
    """A ``<dist>-<version>.dist-info`` in ``folder`` declaring ``entry_points`` in prunelib's group."""
    info = folder / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{name} = {target}" for name, target in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return info


# ---------------------------------------------------------------- built-ins
def test_builtins_are_listed_first_with_their_origin() -> None:
    found = registered()
    assert list(found)[: len(BUILTIN)] == list(BUILTIN) == ["mlp", "sew", "cnn", "kws", "whisper"]
    for name in BUILTIN:
        assert found[name].origin == "built-in", f"{name}: {found[name].origin}"
        assert origin(name) == "built-in"
    assert isinstance(get_family("mlp"), MlpFamily)
    assert isinstance(get_family("sew"), SewFamily)
    assert isinstance(get_family("cnn"), CnnFamily) and isinstance(get_family("kws"), KwsFamily)


def test_get_family_is_cached() -> None:
    assert get_family("mlp") is get_family("mlp")


# ---------------------------------------------------------------- module:callable
@pytest.mark.parametrize("attribute", ["ToyFamily", "make_family"])
def test_module_callable_loads_a_class_or_a_factory(toy_module: Callable[..., str], attribute: str) -> None:
    module = toy_module()
    family = get_family(f"{module}:{attribute}")
    assert isinstance(family, Family)
    assert (family.name, family.datasets, family.models) == ("toy", ("toyset",), ("toy-linear",))
    assert origin(f"{module}:{attribute}") == f"module {sys.modules[module].__file__}"


def test_module_callable_family_is_found_by_family_for(toy_module: Callable[..., str]) -> None:
    spec = f"{toy_module(dataset='only-here')}:ToyFamily"
    assert family_for("only-here", "toy-linear", (spec,)) == spec


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:Family", r"cannot import module 'no_such_module_xyz'"),
        ("{module}:Missing", r"module '{module}' has no attribute 'Missing'"),
        ("{module}:NotAFamily", r"NotAFamily is not a prunelib family"),
        ("{module}:make_nothing", r"int is not a prunelib family"),
        ("{module}:", r"is not MODULE:CALLABLE"),
        (":ToyFamily", r"is not MODULE:CALLABLE"),
    ],
)
def test_module_callable_errors_name_the_cause(toy_module: Callable[..., str], target: str, message: str) -> None:
    module = toy_module()
    with pytest.raises(ValueError, match=message.format(module=module)):
        get_family(target.format(module=module))


def test_unknown_name_lists_the_registered_families() -> None:
    with pytest.raises(ValueError, match=r"unknown family 'no-such-family'; registered: \[.*'mlp'.*'sew'"):
        get_family("no-such-family")


def test_incomplete_family_is_a_value_error(toy_module: Callable[..., str]) -> None:
    with pytest.raises(ValueError, match="Incomplete"):
        get_family(f"{toy_module()}:Incomplete")


# ---------------------------------------------------------------- family_for
@pytest.mark.parametrize(
    ("dataset", "model", "family"),
    [("mnist5k", "lenet300", "mlp"), ("sst2", "sst2-mlp", "mlp"), ("fsdd", "sew-fsdd", "sew")],
)
def test_family_for_finds_the_builtin(dataset: str, model: str, family: str) -> None:
    assert family_for(dataset, model) == family


def test_family_for_names_every_family_when_none_fits() -> None:
    with pytest.raises(ValueError, match=r"no family reads dataset 'cifar10' with model 'lenet300'.*'mlp': \["):
        family_for("cifar10", "lenet300")


# ---------------------------------------------------------------- entry points
def test_entry_point_is_registered_with_its_distribution(tmp_path: Path, toy_module: Callable[..., str]) -> None:
    module = toy_module(name="fake", dataset="fakeset")
    fake_distribution(tmp_path, "prunelib-fake-plugin", "1.2.3", {"fake": f"{module}:ToyFamily", "mlp": "x:Y"})
    found = registered()
    assert "fake" in found, f"entry point not found among {sorted(found)}"
    assert found["fake"].origin == "entry point of prunelib-fake-plugin 1.2.3"
    assert found["fake"].target == f"{module}:ToyFamily"
    assert origin("fake") == "entry point of prunelib-fake-plugin 1.2.3"
    assert found["mlp"].origin == "built-in", "a plugin must not shadow a built-in family"
    assert get_family("fake").datasets == ("fakeset",)
    assert family_for("fakeset", "toy-linear") == "fake"


def test_broken_entry_point_is_a_value_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_distribution(tmp_path, "prunelib-broken-plugin", "0.1", {"broken-plugin": "no_such_plugin_mod:Family"})
    with pytest.raises(ValueError, match=r"family broken-plugin: cannot import module 'no_such_plugin_mod'"):
        get_family("broken-plugin")


def test_installed_example_plugin() -> None:
    """The fsdd-cnn example, when installed (``pip install -e examples/fsdd-cnn``), registers by entry point."""
    found = registered()
    if "fsdd-cnn" not in found:
        pytest.skip("examples/fsdd-cnn is not installed (pip install -e examples/fsdd-cnn)")
    assert found["fsdd-cnn"].origin.startswith("entry point of fsdd-cnn ")
    assert found["fsdd-cnn"].target == "fsdd_cnn.family:FsddCnnFamily"
    assert family_for("fsdd", "tiny-cnn") == "fsdd-cnn"
