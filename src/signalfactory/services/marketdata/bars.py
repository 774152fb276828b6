"""Writing and reading bars through whichever store the platform uses."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import sqlalchemy as sa

from signalfactory.adapters.storage.bar_columns import BarColumns
from signalfactory.adapters.storage.columnar import ColumnarBarStore
from signalfactory.adapters.storage.instruments import CHANGED as INSTRUMENTS_CHANGED
from signalfactory.adapters.storage.instruments import (
    InstrumentSpec,
    list_instruments,
    symbol_map,
    upsert_instruments,
)
from signalfactory.adapters.storage.tables import ingests
from signalfactory.domain.bars import FIELDS, BarUniverse
from signalfactory.domain.errors import NotFoundError
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.platform import Platform


@dataclass(frozen=True)
class SymbolBars:
    """Bars of one symbol in time order (validated)."""

    spec: InstrumentSpec
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


@dataclass(frozen=True)
class WriteReport:
    rows: int
    instruments: int
    timeframe: str
    min_ts: datetime | None
    max_ts: datetime | None


@dataclass(frozen=True)
class BarsWritten:
    """What a committed write added: ``platform.bar_subscribers`` get it.

    ``first_new`` maps each written instrument id to the time (ns) of its earliest written
    bar; ``arrival_ns`` is the wall clock (``time.time_ns``) when the bars reached
    ``write_bars``, the start of the signal-latency measurement.
    """

    timeframe: Timeframe
    first_new: dict[int, int]
    arrival_ns: int
    source: str


def _first_new(cols: BarColumns) -> dict[int, int]:
    if len(cols) == 0:
        return {}
    # Sorted by (instrument, ts): an instrument's first row holds its earliest bar, and group
    # starts are where the id changes (no second sort of millions of ids on every write).
    inst = cols.instrument_id
    first = np.concatenate(([0], np.flatnonzero(inst[1:] != inst[:-1]) + 1))
    return dict(zip(inst[first].tolist(), cols.ts[first].tolist(), strict=True))


def _ns_to_dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def write_bars(platform: Platform, timeframe: Timeframe, batches: Sequence[SymbolBars],
               source: str, extra: Callable[[sa.Connection], None] | None = None) -> WriteReport:
    """Store every batch in ONE transaction: all of it lands, or none of it.

    ``extra`` runs inside the same transaction (a collector advances its cursor there).
    After the commit the ``on_bars_written`` hooks run (live evaluation and publishing); a
    failing hook is logged by the hook itself and never undoes the write.
    """
    arrival_ns = time.time_ns()
    rows = sum(len(b.ts) for b in batches)
    with platform.engine.begin() as conn:
        conn.info.pop(INSTRUMENTS_CHANGED, None)
        ids = upsert_instruments(conn, [b.spec for b in batches])
        inst = np.concatenate([np.full(len(b.ts), ids[b.spec.symbol], dtype=np.int64)
                               for b in batches]) if batches else np.zeros(0, np.int64)
        cols = BarColumns(inst, *(np.concatenate([getattr(b, f) for b in batches])
                                  if batches else np.zeros(0) for f in ("ts", *FIELDS)))
        if not cols.is_sorted_unique():
            cols = cols.latest_wins()
        platform.bars.write(conn, timeframe, cols)
        min_ts = _ns_to_dt(int(cols.ts.min())) if rows else None
        max_ts = _ns_to_dt(int(cols.ts.max())) if rows else None
        conn.execute(ingests.insert().values(source=source[:512], timeframe=timeframe.name,
                                             rows=rows, instruments=len(ids), min_ts=min_ts,
                                             max_ts=max_ts))
        if extra is not None:
            extra(conn)
        instruments_changed = conn.info.pop(INSTRUMENTS_CHANGED, False)
    if instruments_changed:  # committed: cached instrument lists are stale now
        platform.cache.invalidate("instruments")
    if rows:
        written = BarsWritten(timeframe, _first_new(cols), arrival_ns, source)
        for hook in list(platform.bar_subscribers):
            hook(platform, written)
    if isinstance(platform.bars, ColumnarBarStore):
        platform.bars.maybe_compact(platform.engine, timeframe)
    return WriteReport(rows=rows, instruments=len(ids), timeframe=timeframe.name,
                       min_ts=min_ts, max_ts=max_ts)


def _parse_when(value: str | datetime | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000_000)


def load_universe(platform: Platform, timeframe: Timeframe, *,
                  symbols: Sequence[str] | None = None, tag: str | None = None,
                  start: str | datetime | None = None,
                  end: str | datetime | None = None) -> BarUniverse:
    """Bars of many instruments at once, straight from the store into numpy."""
    with platform.reader.connect() as conn:
        names = symbol_map(conn)
        ids: np.ndarray | None = None
        if symbols is not None or tag is not None:
            rows = list_instruments(conn, tag=tag, symbols=symbols)
            if symbols is not None:
                unknown = sorted(set(symbols) - {r["symbol"] for r in rows})
                if unknown:
                    raise NotFoundError(f"unknown symbol(s): {', '.join(unknown)}; list them "
                                        "with `signalfactory instruments`")
            ids = np.array(sorted(r["id"] for r in rows), dtype=np.int64)
        stored = platform.bars.timeframes(conn)
        if timeframe.name in stored:
            return platform.bars.load(conn, timeframe, names, ids, _parse_when(start),
                                      _parse_when(end))
        return _resample_from_lower(platform, conn, timeframe, stored, names, ids,
                                    _parse_when(start), _parse_when(end))


def _resample_from_lower(platform: Platform, conn: sa.Connection, timeframe: Timeframe,
                         stored: list[str], names: dict[int, str], ids: np.ndarray | None,
                         start: int | None, end: int | None) -> BarUniverse:
    from signalfactory.domain.resample import resample_universe

    candidates = sorted((Timeframe.parse(s) for s in stored), reverse=True)
    for lower in candidates:
        if lower.divides(timeframe):
            base = platform.bars.load(conn, lower, names, ids, start, end)
            return resample_universe(base, timeframe)
    have = ", ".join(stored) or "none"
    raise NotFoundError(f"no bars stored for timeframe {timeframe.name} or any lower timeframe "
                        f"that aggregates into it (stored: {have}); ingest some first")
