"""Test doubles shipped with the package: a fixed clock, in-memory ports.

Users' own tests need them too (a strategy tested against a fixed clock, a service against
an in-memory database), so they are part of the public surface, not of ``tests/``.
"""

from signalfactory.testing.clock import FixedClock
from signalfactory.testing.memory import InMemoryDatabase, memory_platform

__all__ = ["FixedClock", "InMemoryDatabase", "memory_platform"]
