"""Ports of backtests."""

from __future__ import annotations

from typing import Protocol


class BacktestRepository(Protocol):
    """Stored backtests with their trades and equity curves."""
