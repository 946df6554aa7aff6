"""Which families exist: the built-ins, installed plugins, and ``module:callable`` from the user's repository.

* Built-in: ``mlp`` (the lab's MLPs), ``sew`` (SEW CTC speech models), ``cnn`` (LeNet-5 and
  ResNet-8 on 28x28 images), ``kws`` (DS-CNN keyword spotting on FSDD) and ``whisper`` (pretrained
  Whisper recognisers, offline tiny.en with ``prunelib[whisper]``).
* Installed plugins: a package declares, in its own ``pyproject.toml``::

      [project.entry-points."prunelib.families"]
      digits = "my_package.family:DigitsFamily"

* From the user's repository: ``--family my_module:make_family`` (CLI) or
  ``--prune-family my_module:make_family`` (pytest); the module is imported from the current
  directory or ``sys.path``. The callable is a :class:`Family` subclass or a function returning
  an instance.

A name that matches nothing, an import that fails, or an object that is not a family is a
``ValueError`` that names it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from prunelib.families.contract import Family

ENTRY_POINT_GROUP = "prunelib.families"
#: Built-in families: name -> "module:attribute".
BUILTIN: dict[str, str] = {
    "mlp": "prunelib.families.mlp.family:MlpFamily",
    "sew": "prunelib.families.sew.family:SewFamily",
    "cnn": "prunelib.families.cnn.family:CnnFamily",
    "kws": "prunelib.families.kws.family:KwsFamily",
    "whisper": "prunelib.families.whisper.family:WhisperFamily",
}


@dataclass(frozen=True)
class Registered:
    """A family the registry knows: its name, where it came from, and how to load it."""

    name: str
    target: str  # "module:attribute"
    origin: str  # "built-in", "entry point of <dist>", or "module <path>"


def _entry_points() -> list[Registered]:
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        origin = f"entry point of {dist.name} {dist.version}" if dist is not None else "entry point"
        found.append(Registered(ep.name, ep.value, origin))
    return found


def registered() -> dict[str, Registered]:
    """Every family by name: built-ins first, then entry points (a plugin cannot shadow a built-in)."""
    out = {name: Registered(name, target, "built-in") for name, target in BUILTIN.items()}
    for reg in _entry_points():
        out.setdefault(reg.name, reg)
    return out


def _import(target: str, what: str) -> object:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what}: {target!r} is not MODULE:CALLABLE (e.g. my_family:MyFamily)")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # the user's repository, as `python -m` would see it
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{what}: cannot import module {module_name!r} ({exc})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _instantiate(obj: object, what: str) -> Family:
    if isinstance(obj, Family):
        return obj
    if callable(obj):
        try:
            made = obj()
        except TypeError as exc:  # an abstract (incomplete) family, or a factory that needs arguments
            raise ValueError(f"{what}: cannot make a family from {getattr(obj, '__name__', obj)!r}: {exc}") from None
        if isinstance(made, Family):
            return made
        obj = made
    raise ValueError(
        f"{what}: {type(obj).__name__} is not a prunelib family "
        "(subclass prunelib.families.contract.Family, or return an instance of one)"
    )


def _check(family: Family, what: str) -> Family:
    missing = [a for a in ("name", "metric", "datasets", "models") if not hasattr(family, a)]
    if missing:
        raise ValueError(f"{what}: family lacks class attribute(s) {missing}")
    if not family.datasets or not family.models:
        raise ValueError(f"{what}: family {family.name!r} declares no datasets or no models")
    return family


@cache
def get_family(spec: str) -> Family:
    """The family named ``spec`` (registered name) or loaded from ``spec = "module:callable"``."""
    if ":" in spec:
        return _check(_instantiate(_import(spec, f"family {spec}"), f"family {spec}"), f"family {spec}")
    known = registered()
    if spec not in known:
        raise ValueError(f"unknown family {spec!r}; registered: {sorted(known)} (or pass MODULE:CALLABLE)")
    reg = known[spec]
    return _check(_instantiate(_import(reg.target, f"family {spec}"), f"family {spec}"), f"family {spec}")


def origin(spec: str) -> str:
    """Where family ``spec`` comes from (for ``prunelib families``)."""
    if ":" in spec:
        module = sys.modules.get(spec.partition(":")[0])
        return f"module {getattr(module, '__file__', spec)}"
    return registered()[spec].origin


def family_for(dataset: str, model: str | None = None, families: tuple[str, ...] = ()) -> str:
    """The family (name or ``module:callable`` from ``families``, then registered ones) that reads
    ``dataset`` and builds ``model`` (any model when ``None``).

    Raises:
        ValueError: no family, naming the data sets each candidate reads.
    """
    candidates = list(dict.fromkeys([*families, *registered()]))
    for name in candidates:
        family = get_family(name)
        if dataset not in family.datasets:
            continue
        if model is None:
            return name
        try:
            family.check_model(model)
        except ValueError:
            continue
        return name
    known = {name: list(get_family(name).datasets) for name in candidates}
    raise ValueError(f"no family reads dataset {dataset!r} with model {model!r}; families and their datasets: {known}")
