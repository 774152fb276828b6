"""Bars a bot reads: its window of history for a decision, and the latest closes (the
prices a paper exchange fills at outside a bar step: kill switch exits, marks)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.trading.quotes import BarQuotes
from signalfactory.services.ports import UnitOfWork

#: how far back the latest close of a symbol is looked for, in bars
LATEST_LOOKBACK_BARS = 1000


def load_bars(uow: UnitOfWork, timeframe: Timeframe, symbols: Sequence[str],
              start_ns: int | None) -> BarUniverse:
    """The symbols' bars from ``start_ns`` on (all when None), in the order stored."""
    found = uow.instruments.find(symbols=list(symbols))
    names = {i.id: i.symbol for i in found}
    ids = np.array(sorted(names), dtype=np.int64)
    return uow.bars.load(timeframe, names, ids, start_ns)


def latest_quotes(uow: UnitOfWork, timeframe: Timeframe, symbols: Sequence[str],
                  anchor_ns: int) -> BarQuotes:
    """Each symbol's newest close (stamped with its bar's time), looked for from
    ``LATEST_LOOKBACK_BARS`` before ``anchor_ns`` (the newest bar the bot saw; 0: all)."""
    quotes = BarQuotes()
    if not symbols:
        return quotes
    start = anchor_ns - LATEST_LOOKBACK_BARS * timeframe.nanoseconds if anchor_ns else None
    universe = load_bars(uow, timeframe, symbols, start)
    for k, symbol in enumerate(universe.symbols):
        a, b = int(universe.offsets[k]), int(universe.offsets[k + 1])
        if b > a:
            quotes.set(symbol, float(universe.close[b - 1]), int(universe.ts[b - 1]))
    return quotes


def newest_bar_ns(uow: UnitOfWork, timeframe: Timeframe, symbols: Sequence[str]) -> int:
    """The newest stored bar's time among the symbols (0 when there is none)."""
    universe = load_bars(uow, timeframe, symbols, None)
    return int(universe.ts.max()) if universe.n_bars else 0
