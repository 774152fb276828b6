"""The market-data source port and the collector that makes downloads resumable.

A source yields pages of bars for one symbol and timeframe, oldest first, starting after a
given timestamp. That is the shape of ccxt's ``fetch_ohlcv(symbol, timeframe, since, limit)``
and of yfinance's ranged downloads, so both fit later as adapters of the same shape. Paging
and rate limits live in the source (``limits`` for the budget, tenacity for retries of
temporary errors); resumability lives in the collector, which stores each page and advances
the cursor in one transaction, so a crash keeps everything fetched before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from signalfactory.domain.bars import BarSeries
from signalfactory.domain.timeframes import Timeframe


@dataclass(frozen=True)
class SourceSymbol:
    symbol: str
    venue: str = ""
    asset_class: str = "equity"
    currency: str = "USD"


@runtime_checkable
class MarketDataSource(Protocol):
    """Where bars come from. Implementations: files, synthetic; later ccxt, yfinance."""

    name: str

    def symbols(self) -> list[SourceSymbol]:
        """What this source can deliver."""
        ...

    def fetch(self, symbol: str, timeframe: Timeframe, since_ns: int | None,
              page_size: int = 1000) -> Iterator[BarSeries]:
        """Pages of bars strictly after ``since_ns`` (all history when None), oldest first."""
        ...
