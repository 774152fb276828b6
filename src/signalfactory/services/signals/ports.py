"""Ports of signal evaluation."""

from __future__ import annotations

from typing import Protocol


class SignalRepository(Protocol):
    """Stored signals, idempotent per (version, instrument, timeframe, bar, side)."""
