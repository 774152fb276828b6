"""Ports of the collectors: stored sources (with their run and breaker state) and the gaps
they found. Bound to one unit of work (``uow.sources``): what they write commits with the
rest of it, or not at all."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from signalfactory.domain.sources import (
    BreakerCounter,
    BreakerState,
    FetchedPage,
    JsonObject,
    NewSource,
    RunState,
    Source,
    SourceGap,
)
from signalfactory.domain.timeframes import Timeframe


class SourceRepository(Protocol):
    """Market-data sources (installation-wide, no tenant)."""

    def add(self, new: NewSource, now: datetime) -> Source:
        """Store a source; ConflictError when the name is taken."""
        ...

    def get(self, name: str) -> Source | None: ...

    def all(self) -> list[Source]:
        """Every source, by name."""
        ...

    def set_paused(self, name: str, paused: bool, now: datetime) -> bool:
        """False when there is no such source."""
        ...

    def delete(self, name: str) -> bool: ...

    def record_run(self, name: str, run: RunState) -> None:
        """Store what the last run did (fields left None keep their stored value, except
        ``last_error``, which a successful run clears)."""
        ...

    # -- the circuit breaker ------------------------------------------------------------
    def breaker(self, name: str) -> BreakerState: ...

    def set_breaker_state(self, name: str, state: str, *, expect: str | None = None,
                          opened_at: datetime | None = None) -> bool:
        """Move the breaker to ``state`` (only from ``expect`` when given: the one process
        whose update lands probes a half-open breaker). Returns whether it moved."""
        ...

    def bump_breaker(self, name: str, counter: BreakerCounter) -> None:
        """Add one to a counter in the database (atomic across processes)."""
        ...

    def reset_breaker(self, name: str, counter: BreakerCounter) -> None: ...

    # -- gaps ---------------------------------------------------------------------------
    def add_gaps(self, name: str, gaps: Sequence[SourceGap], now: datetime) -> int:
        """Record gaps (a gap already recorded is kept as it is); returns how many are new."""
        ...

    def gaps(self, name: str, *, symbol: str | None = None,
             timeframe: str | None = None) -> list[SourceGap]:
        """Recorded gaps, oldest first."""
        ...


class BarSource(Protocol):
    """A market-data source collectors page through (``adapters/sources``): ccxt exchanges,
    Yahoo Finance, CSV/JSON over HTTP, the synthetic generator.

    One call is one request: the collector pages, retries (tenacity), guards the source with
    its circuit breaker and stores what it got; the adapter only speaks the source's protocol
    and classifies its failures (``SourceTemporaryError``: worth a retry, with the
    ``Retry-After`` the source asked for; ``SourceRefusedError``: a person must look).
    """

    #: every timeframe slot has a bar unless nothing traded (24/7 crypto markets): a hole is
    #: a gap to backfill. False for markets with sessions (nights, weekends are no gaps).
    continuous: bool

    def fetch_page(self, symbol: str, timeframe: Timeframe, since_ns: int,
                   until_ns: int) -> FetchedPage:
        """Bars of ``symbol`` with ``since_ns <= ts < until_ns`` (open times), oldest first;
        as many as one request returns."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


SourceFactory = Callable[[JsonObject, Timeframe], BarSource]
"""Makes a source's adapter from its parameters, or raises BadInputError saying what to fix
(``Platform.source_factories``, by kind; ``sources add`` builds one to check the input)."""
