"""Market-data sources as records: what a collector fetches, from where, and when.

A source is installation-wide (market data is shared by every tenant): a name, the kind of
adapter (``ccxt``, ``yfinance``, ``http``, ``synthetic``), the adapter's parameters, a symbol
list, one timeframe, an optional cron schedule and a paused flag. Its state (the last run,
the circuit breaker) is stored with it so that every process sees the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bars import BarSeries
from signalfactory.domain.errors import BadInputError, OperationalError, TemporaryError

SOURCE_KINDS: Final = ("ccxt", "yfinance", "http", "synthetic")
#: names other writers use in the ingest journal; a source may not take them (freshness
#: metrics label collected data by source name)
RESERVED_NAMES: Final = frozenset({"files", "sample", "synthetic"})
NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
MAX_SYMBOLS: Final = 5000
MAX_SYMBOL_CHARS: Final = 64

BREAKER_CLOSED: Final = "closed"
BREAKER_OPEN: Final = "open"
BREAKER_HALF_OPEN: Final = "half-open"
BREAKER_STATES: Final = (BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN)

#: a period a source returned no bars for twice: the market had no trades then
NO_TRADES: Final = "no-trades"

JsonObject = dict[str, Any]
BreakerCounter = Literal["failures", "successes"]


class SourceTemporaryError(TemporaryError):
    """A request to a source failed in a way a retry can fix: 429, 5xx, a timeout, a
    connection dropped or a body cut short. ``retry_after`` is the wait the source asked
    for (seconds), if it named one."""

    def __init__(self, message: str, *, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class SourceRefusedError(OperationalError):
    """The source refused the request for good (a 4xx other than 429: unknown symbol, wrong
    URL or key): retrying cannot help, a person must fix the source's configuration."""


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise BadInputError(f"source name {name!r} must be 1..32 of a-z 0-9 _ . - starting "
                            "with a letter or digit, e.g. 'binance-1m'", rule="source-name")
    if name in RESERVED_NAMES:
        raise BadInputError(f"source name {name!r} is reserved; choose another",
                            rule="source-name")
    return name


def check_symbols(symbols: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    cleaned = tuple(symbols)
    if not cleaned:
        raise BadInputError("give at least one symbol", rule="source-symbols")
    if len(cleaned) > MAX_SYMBOLS:
        raise BadInputError(f"at most {MAX_SYMBOLS} symbols per source, got {len(cleaned)}",
                            rule="source-symbols")
    for symbol in cleaned:
        if (not symbol or len(symbol) > MAX_SYMBOL_CHARS or symbol != symbol.strip()
                or any(ord(c) < 32 for c in symbol)):
            raise BadInputError(f"symbol {symbol!r} must be 1..{MAX_SYMBOL_CHARS} printable "
                                "characters without surrounding spaces", rule="source-symbols")
    if len(set(cleaned)) != len(cleaned):
        dup = next(s for s in cleaned if cleaned.count(s) > 1)
        raise BadInputError(f"symbol {dup!r} is listed twice", rule="source-symbols")
    return cleaned


@dataclass(frozen=True)
class NewSource:
    """What ``sources add`` stores (already validated by the service)."""

    name: str
    kind: str
    params: JsonObject
    symbols: tuple[str, ...]
    timeframe: str
    cron: str | None = None
    paused: bool = False


@dataclass(frozen=True)
class BreakerState:
    """The circuit breaker of one source, shared by every process through the database."""

    state: str = BREAKER_CLOSED
    failures: int = 0
    successes: int = 0
    opened_at: datetime | None = None


@dataclass(frozen=True)
class RunState:
    """What the last run of a source did."""

    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    last_outcome: str | None = None  # succeeded | failed | skipped
    last_error: str | None = None
    last_job_id: str | None = None
    last_rows: int | None = None


@dataclass(frozen=True)
class Source:
    """A stored source with its state."""

    id: int
    name: str
    kind: str
    params: JsonObject
    symbols: tuple[str, ...]
    timeframe: str
    cron: str | None
    paused: bool
    created_at: datetime
    updated_at: datetime
    run: RunState = field(default_factory=RunState)
    breaker: BreakerState = field(default_factory=BreakerState)


@dataclass(frozen=True)
class SourceGap:
    """A period with no bars between two stored bars of a symbol, ``[start_ns, end_ns]``
    (times of the first and last missing bar), and what it turned out to be."""

    symbol: str
    timeframe: str
    start_ns: int
    end_ns: int
    kind: str = NO_TRADES


def missing_periods(ts: npt.NDArray[np.int64], step_ns: int,
                    after_ns: int | None = None) -> list[tuple[int, int]]:
    """Holes in a sorted time grid of ``step_ns``: ``(first missing, last missing)`` pairs.

    ``after_ns`` is the bar stored before ``ts[0]`` (a hole between it and the first new bar
    counts too).
    """
    values = np.asarray(ts, dtype=np.int64)
    if after_ns is not None:
        values = np.concatenate(([after_ns], values))
    if values.size < 2:
        return []
    steps = np.diff(values)
    holes = np.flatnonzero(steps > step_ns)
    return [(int(values[i]) + step_ns, int(values[i + 1]) - step_ns) for i in holes]


@dataclass(frozen=True)
class FetchedPage:
    """What one request to a source returned: bars (oldest first, open times ``>= since``)
    and how far the answer reaches: the source has no other bar before ``covered_until_ns``
    (a short page from a count-limited API covers up to the requested end; a full page only
    up to its last bar)."""

    bars: BarSeries
    covered_until_ns: int
