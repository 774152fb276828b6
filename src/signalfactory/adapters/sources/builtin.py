"""The synthetic generator as a market-data source (the ``MarketDataSource`` port of
``services/marketdata/ports.py``): collectors and their tests need no network."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from signalfactory.domain.bars import BarSeries
from signalfactory.domain.errors import NotFoundError
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.synthetic import DEFAULT_START_NS, generate_symbol
from signalfactory.domain.timeframes import Timeframe


def _pages(bars: BarSeries, since_ns: int | None, page_size: int) -> Iterator[BarSeries]:
    start = 0 if since_ns is None else int(np.searchsorted(bars.ts, since_ns, side="right"))
    for a in range(start, len(bars), page_size):
        b = min(a + page_size, len(bars))
        yield BarSeries(bars.symbol, bars.ts[a:b], bars.open[a:b], bars.high[a:b],
                        bars.low[a:b], bars.close[a:b], bars.volume[a:b])


class SyntheticSource:
    """The sample generator as a source: a fixed universe that 'grows' one day at a time."""

    name = "synthetic"

    def __init__(self, symbols: list[str], n_bars: int, seed: int = 42) -> None:
        self._symbols = symbols
        self.n_bars = n_bars
        self.seed = seed

    def symbols(self) -> list[InstrumentSpec]:
        return [InstrumentSpec(s, venue="SYNTH") for s in self._symbols]

    def fetch(self, symbol: str, timeframe: Timeframe, since_ns: int | None,
              page_size: int = 1000) -> Iterator[BarSeries]:
        if symbol not in self._symbols:
            raise NotFoundError(f"synthetic source has no symbol {symbol}")
        step = timeframe.nanoseconds
        ts = DEFAULT_START_NS + step * np.arange(self.n_bars, dtype=np.int64)
        rng = np.random.default_rng([self.seed, self._symbols.index(symbol)])
        bars = generate_symbol(rng, symbol, ts)
        high = np.maximum(bars.high, np.maximum(bars.open, bars.close))
        low = np.minimum(bars.low, np.minimum(bars.open, bars.close))
        fixed = BarSeries(symbol, ts, bars.open, high, low, bars.close, bars.volume)
        yield from _pages(fixed, since_ns, page_size)
