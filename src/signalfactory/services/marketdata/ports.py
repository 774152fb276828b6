"""Ports of market data: instruments and bars."""

from __future__ import annotations

from typing import Protocol


class InstrumentRepository(Protocol):
    """Stored instruments (symbols, tags)."""


class BarRepository(Protocol):
    """Bars of the unit of work's transaction, through the configured bar store."""
