"""Test doubles shipped with the package: a fixed clock, in-memory ports, an exchange simulator.

Users' own tests need them too (a strategy tested against a fixed clock, a service against
an in-memory database), so they are part of the public surface, not of ``tests/``.

``ExchangeSimulator`` (a local Binance spot REST API with fault injection) is imported on first
use, so ``import signalfactory.testing`` starts no web server machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from signalfactory.testing.clock import FixedClock
from signalfactory.testing.memory import InMemoryDatabase, memory_platform

if TYPE_CHECKING:
    from signalfactory.testing.exchange_simulator import ExchangeSimulator, SymbolSpec

_LAZY = {"ExchangeSimulator", "SymbolSpec"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from signalfactory.testing import exchange_simulator

        return getattr(exchange_simulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ExchangeSimulator", "FixedClock", "InMemoryDatabase", "SymbolSpec",
           "memory_platform"]
