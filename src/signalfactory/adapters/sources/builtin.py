"""The synthetic generator as a market-data source (the ``MarketDataSource`` port of
``services/marketdata/ports.py``): collectors and their tests need no network."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np

from signalfactory.domain.bars import BarSeries
from signalfactory.domain.errors import NotFoundError
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.sources import FetchedPage
from signalfactory.domain.synthetic import DEFAULT_START_NS, generate_symbol
from signalfactory.domain.timeframes import Timeframe


def _pages(bars: BarSeries, since_ns: int | None, page_size: int) -> Iterator[BarSeries]:
    start = 0 if since_ns is None else int(np.searchsorted(bars.ts, since_ns, side="right"))
    for a in range(start, len(bars), page_size):
        b = min(a + page_size, len(bars))
        yield BarSeries(bars.symbol, bars.ts[a:b], bars.open[a:b], bars.high[a:b],
                        bars.low[a:b], bars.close[a:b], bars.volume[a:b])


class SyntheticSource:
    """The sample generator as a source: a fixed universe that 'grows' one day at a time.

    As a stored source (kind ``synthetic``, params ``n_bars`` and ``seed``) it serves the
    same bars through ``fetch_page``: demos and tests of scheduling need no network.
    """

    name = "synthetic"
    continuous = True

    def __init__(self, symbols: list[str], n_bars: int, seed: int = 42,
                 start_ns: int = DEFAULT_START_NS) -> None:
        self._symbols = symbols
        self.start_ns = start_ns
        self.n_bars = n_bars
        self.seed = seed

    def symbols(self) -> list[InstrumentSpec]:
        return [InstrumentSpec(s, venue="SYNTH") for s in self._symbols]

    def _series(self, symbol: str, timeframe: Timeframe) -> BarSeries:
        if self._symbols and symbol not in self._symbols:
            raise NotFoundError(f"synthetic source has no symbol {symbol}")
        step = timeframe.nanoseconds
        ts = self.start_ns + step * np.arange(self.n_bars, dtype=np.int64)
        # an open universe (no list) seeds each symbol from its name
        key = (self._symbols.index(symbol) if self._symbols
               else zlib.crc32(symbol.encode()))
        rng = np.random.default_rng([self.seed, key])
        bars = generate_symbol(rng, symbol, ts)
        high = np.maximum(bars.high, np.maximum(bars.open, bars.close))
        low = np.minimum(bars.low, np.minimum(bars.open, bars.close))
        return BarSeries(symbol, ts, bars.open, high, low, bars.close, bars.volume)

    def fetch(self, symbol: str, timeframe: Timeframe, since_ns: int | None,
              page_size: int = 1000) -> Iterator[BarSeries]:
        yield from _pages(self._series(symbol, timeframe), since_ns, page_size)

    def fetch_page(self, symbol: str, timeframe: Timeframe, since_ns: int,
                   until_ns: int, page_size: int = 1000) -> FetchedPage:
        bars = self._series(symbol, timeframe)
        a = int(np.searchsorted(bars.ts, since_ns, side="left"))
        b = min(int(np.searchsorted(bars.ts, until_ns, side="left")), a + page_size)
        page = BarSeries(symbol, bars.ts[a:b], bars.open[a:b], bars.high[a:b], bars.low[a:b],
                         bars.close[a:b], bars.volume[a:b])
        full = b - a >= page_size
        return FetchedPage(page, int(bars.ts[b - 1]) + timeframe.nanoseconds if full
                           else until_ns)

    def close(self) -> None:
        """Nothing to release."""
