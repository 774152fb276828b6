"""Collect bars from a source, page by page, resuming where the last run stopped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from signalfactory.adapters.sources.base import MarketDataSource
from signalfactory.adapters.storage.instruments import InstrumentSpec
from signalfactory.adapters.storage.tables import fetch_cursors
from signalfactory.domain.bar_validation import RawBars, validate
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import SymbolBars, write_bars
from signalfactory.services.platform import Platform


@dataclass(frozen=True)
class CollectReport:
    source: str
    timeframe: str
    pages: int
    rows: int
    symbols: int


def cursor(platform: Platform, source: str, symbol: str, timeframe: Timeframe) -> int | None:
    with platform.engine.connect() as conn:
        return conn.execute(sa.select(fetch_cursors.c.last_ts).where(
            fetch_cursors.c.source == source, fetch_cursors.c.symbol == symbol,
            fetch_cursors.c.timeframe == timeframe.name)).scalar()


def _advance_cursor(conn: sa.Connection, source: str, symbol: str, timeframe: Timeframe,
                    last_ts: int) -> None:
    updated = conn.execute(fetch_cursors.update().where(
        fetch_cursors.c.source == source, fetch_cursors.c.symbol == symbol,
        fetch_cursors.c.timeframe == timeframe.name).values(last_ts=last_ts,
                                                            updated_at=sa.func.now()))
    if updated.rowcount == 0:
        conn.execute(fetch_cursors.insert().values(source=source, symbol=symbol,
                                                   timeframe=timeframe.name, last_ts=last_ts))


def collect(platform: Platform, source: MarketDataSource, timeframe: Timeframe,
            symbols: Sequence[str] | None = None, *, page_size: int = 1000,
            max_pages: int | None = None,
            progress: Callable[[int], None] | None = None) -> CollectReport:
    """Fetch new bars for each symbol; each page is validated and committed with its cursor."""
    import numpy as np

    wanted = {s.symbol: s for s in source.symbols()}
    names = list(symbols) if symbols is not None else sorted(wanted)
    pages = rows = 0
    for symbol in names:
        meta = wanted.get(symbol)
        since = cursor(platform, source.name, symbol, timeframe)
        for page in source.fetch(symbol, timeframe, since, page_size):
            if max_pages is not None and pages >= max_pages:
                break
            raw = RawBars(source=f"{source.name}:{symbol}", ts=page.ts, open=page.open,
                          high=page.high, low=page.low, close=page.close, volume=page.volume,
                          symbol_codes=np.zeros(len(page), dtype=np.int64), symbols=(symbol,),
                          row_offset=0)
            validate(raw, timeframe)
            spec = InstrumentSpec(symbol=symbol, venue=meta.venue if meta else "",
                                  asset_class=meta.asset_class if meta else "equity",
                                  currency=meta.currency if meta else "USD")
            batch = SymbolBars(spec, page.ts, page.open, page.high, page.low, page.close,
                               page.volume)
            write_bars(platform, timeframe, [batch], source=f"{source.name}:{symbol}",
                       extra=lambda conn, s=symbol, t=int(page.ts[-1]):
                       _advance_cursor(conn, source.name, s, timeframe, t))
            pages += 1
            rows += len(page)
            if progress is not None:
                progress(len(page))
    return CollectReport(source=source.name, timeframe=timeframe.name, pages=pages, rows=rows,
                         symbols=len(names))
