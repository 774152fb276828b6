"""Stored scans: a strategy or rule evaluated over a universe as of a date, and its ranking."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ScanResult:
    """One ranked signal of a scan (rank 1 is the best)."""

    rank: int
    instrument_id: int
    symbol: str
    side: str
    score: float | None
    price: float
    bar_ts: datetime
    values: Mapping[str, float]


@dataclass(frozen=True)
class NewScan:
    """A scan to store; ``strategy_version_id`` is None for an ad-hoc rule or a built-in run
    with overridden parameters (then nothing stored names its code)."""

    tenant_id: int
    strategy_version_id: int | None
    rule_text: str | None
    universe: str | None
    timeframe: str
    as_of: datetime | None
    top: int | None
    status: str
    instruments: int
    matches: int
    finished_at: datetime | None
    error: str | None = None


@dataclass(frozen=True)
class StoredScan:
    id: int
    tenant_id: int
    status: str
    error: str | None
    strategy_version_id: int | None
    rule_text: str | None
    universe: str | None
    timeframe: str
    as_of: datetime | None
    top: int | None
    instruments: int
    matches: int
    created_at: datetime | None
    finished_at: datetime | None
    results: tuple[ScanResult, ...] = ()
