"""Ports of the strategy catalog."""

from __future__ import annotations

from typing import Protocol


class StrategyRepository(Protocol):
    """Stored strategies, their versions and their evaluation runs."""
