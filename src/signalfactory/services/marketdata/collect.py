"""Collect bars from a source, page by page, resuming where the last run stopped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from signalfactory.domain.bar_validation import RawBars, validate
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import SymbolBars, write_bars
from signalfactory.services.marketdata.ports import MarketDataSource
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork


@dataclass(frozen=True)
class CollectReport:
    source: str
    timeframe: str
    pages: int
    rows: int
    symbols: int


def cursor(platform: Platform, source: str, symbol: str, timeframe: Timeframe) -> int | None:
    """Time (ns) of the last bar collected from ``source`` for ``symbol``; None before any."""
    with platform.database.read(primary=True) as uow:
        return uow.bars.cursor(source, symbol, timeframe)


def _advance_to(source: str, symbol: str, timeframe: Timeframe,
                last_ts: int) -> Callable[[UnitOfWork], None]:
    def advance(uow: UnitOfWork) -> None:
        uow.bars.advance_cursor(source, symbol, timeframe, last_ts)

    return advance


def collect(platform: Platform, source: MarketDataSource, timeframe: Timeframe,
            symbols: Sequence[str] | None = None, *, page_size: int = 1000,
            max_pages: int | None = None,
            progress: Callable[[int], None] | None = None) -> CollectReport:
    """Fetch new bars for each symbol; each page is validated and committed with its cursor."""
    wanted = {s.symbol: s for s in source.symbols()}
    names = list(symbols) if symbols is not None else sorted(wanted)
    pages = rows = 0
    for symbol in names:
        spec = wanted.get(symbol) or InstrumentSpec(symbol)
        since = cursor(platform, source.name, symbol, timeframe)
        for page in source.fetch(symbol, timeframe, since, page_size):
            if max_pages is not None and pages >= max_pages:
                break
            raw = RawBars(source=f"{source.name}:{symbol}", ts=page.ts, open=page.open,
                          high=page.high, low=page.low, close=page.close, volume=page.volume,
                          symbol_codes=np.zeros(len(page), dtype=np.int64), symbols=(symbol,),
                          row_offset=0)
            validate(raw, timeframe)
            batch = SymbolBars(spec, page.ts, page.open, page.high, page.low, page.close,
                               page.volume)
            write_bars(platform, timeframe, [batch], source=f"{source.name}:{symbol}",
                       extra=_advance_to(source.name, symbol, timeframe, int(page.ts[-1])))
            pages += 1
            rows += len(page)
            if progress is not None:
                progress(len(page))
    return CollectReport(source=source.name, timeframe=timeframe.name, pages=pages, rows=rows,
                         symbols=len(names))
