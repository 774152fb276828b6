"""Find a strategy by reference: a built-in name, an installed plug-in, or Python code.

References, tried in this order:

- ``sma_cross``: a built-in rule strategy;
- ``my_strategy``: an entry point of group ``signalfactory.strategies`` (installed plug-ins);
- ``path/to/file.py:ClassName``: a class in a Python file;
- ``package.module:ClassName``: a class in an importable module.

The object found may be a strategy class (instantiated with the parameters as keyword
arguments), a factory function (called likewise) or a ready strategy instance (then no
parameters are accepted). These are trusted plug-ins installed by an operator: this module
imports them into the calling process. Python a tenant uploads never comes here: it is
stored as source and only ever runs in the sandbox (``signalfactory.adapters.sandbox``).
Everything goes through importlib; this module opens no file itself.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Mapping
from types import ModuleType

from signalfactory.domain.errors import BadInputError
from signalfactory.domain.strategies.base import Strategy, StrategyParam
from signalfactory.domain.strategies.builtin import BUILTIN_TEMPLATES

ENTRY_POINT_GROUP = "signalfactory.strategies"


def available_strategies() -> dict[str, str]:
    """Name -> where it comes from ('builtin' or the entry point's target)."""
    found = {name: "builtin" for name in BUILTIN_TEMPLATES}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def load_strategy(ref: str, parameters: Mapping[str, StrategyParam] | None = None) -> Strategy:
    """The strategy ``ref`` names (see the module docstring); BadInputError if it cannot."""
    ref = ref.strip()
    if ref in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[ref].render(parameters)
    target = _from_entry_point(ref)
    if target is None:
        target = _from_reference(ref)
    return _instantiate(target, ref, dict(parameters or {}))


def _from_entry_point(name: str) -> object | None:
    matches = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
               if ep.name == name]
    if not matches:
        return None
    try:
        target: object = matches[0].load()
    except Exception as exc:
        raise BadInputError(f"strategy plug-in {name!r} ({matches[0].value}) failed to load: "
                            f"{type(exc).__name__}: {exc}") from exc
    return target


def _from_reference(ref: str) -> object:
    location, sep, attribute = ref.rpartition(":")
    if not sep or not location or not attribute.isidentifier():
        known = ", ".join(available_strategies())
        raise BadInputError(f"unknown strategy {ref!r}: use a name ({known}), "
                            "'path/to/file.py:ClassName' or 'package.module:ClassName'")
    module = _import_file(location) if location.endswith(".py") else _import_module(location)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise BadInputError(f"{location} defines no {attribute!r}") from None


def _import_file(path: str) -> ModuleType:
    # one module per file path, so loading the same file twice yields the same classes
    digest = hashlib.sha256(path.encode()).hexdigest()[:16]
    name = f"signalfactory_user_strategies.m{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BadInputError(f"cannot load strategy file {path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError:
        del sys.modules[name]
        raise BadInputError(f"strategy file {path!r} does not exist") from None
    except Exception as exc:
        del sys.modules[name]
        raise BadInputError(f"strategy file {path!r} failed to import: "
                            f"{type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise BadInputError(f"strategy module {name!r} not found: {exc}") from exc
    except Exception as exc:
        raise BadInputError(f"strategy module {name!r} failed to import: "
                            f"{type(exc).__name__}: {exc}") from exc


def _instantiate(target: object, ref: str, parameters: dict[str, StrategyParam]) -> Strategy:
    if isinstance(target, Strategy) and not isinstance(target, type):
        if parameters:
            raise BadInputError(f"strategy {ref!r} is a ready instance; it takes no parameters")
        return target
    if not callable(target):
        raise BadInputError(f"{ref!r} is neither a strategy nor a class or factory of one")
    try:
        strategy = target(**parameters)
    except TypeError as exc:
        raise BadInputError(f"strategy {ref!r} rejected its parameters: {exc}") from exc
    if not isinstance(strategy, Strategy):
        raise BadInputError(f"{ref!r} did not produce a strategy (it needs name, version, "
                            "parameters, required_lookback and evaluate(universe))")
    return strategy
