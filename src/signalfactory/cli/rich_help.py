"""Typer's rich help pages without loading ``rich.markdown`` and ``rich.traceback``.

``typer.rich_utils`` (what renders ``--help`` and usage errors) imports both at module level:
``rich.markdown`` (markdown-it, Pygments) for the "markdown" markup mode and ``rich.traceback``
for pretty exceptions. This CLI uses the "rich" markup mode and turns pretty exceptions off,
so neither is ever used, yet importing them was about a quarter of ``signalfactory --help``.

`import_rich_utils` imports ``typer.rich_utils`` with a stand-in for those two names: a class
that loads the real one when it is first instantiated, subclass-checked or asked for an
attribute, so if Typer ever did use them the page would be the same, only slower. The
stand-ins are visible to ``typer.rich_utils`` only: ``import rich.markdown`` anywhere else
loads the real module. ``tests/unit/test_cli_lazy.py`` checks the help pages are unchanged.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

#: module -> the name ``typer.rich_utils`` imports from it
_DEFERRED = {"rich.markdown": "Markdown", "rich.traceback": "Traceback"}


def _stand_in(module: str, name: str) -> type:
    def real() -> Any:  # noqa: ANN401 - a rich class
        return getattr(importlib.import_module(module), name)

    class _LoadsOnUse(type):
        def __instancecheck__(cls, instance: object) -> bool:
            return isinstance(instance, real())

        def __subclasscheck__(cls, subclass: type) -> bool:
            return issubclass(subclass, real())

        def __getattr__(cls, attribute: str) -> Any:  # noqa: ANN401 - e.g. a classmethod
            return getattr(real(), attribute)

    class StandIn(metaclass=_LoadsOnUse):
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - rich's
            return real()(*args, **kwargs)

    StandIn.__name__ = StandIn.__qualname__ = name
    return StandIn


def import_rich_utils() -> None:
    """Import ``typer.rich_utils`` with the stand-ins (once; nothing if already imported)."""
    if "typer.rich_utils" in sys.modules:
        return
    stubs: dict[str, types.ModuleType] = {}
    for module, name in _DEFERRED.items():
        if module not in sys.modules:
            stub = types.ModuleType(module)
            setattr(stub, name, _stand_in(module, name))
            stubs[module] = stub
    sys.modules.update(stubs)
    try:
        importlib.import_module("typer.rich_utils")
    finally:
        for module, stub in stubs.items():
            if sys.modules.get(module) is stub:
                del sys.modules[module]
