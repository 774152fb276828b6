"""Writing and reading bars through the unit of work's instrument and bar repositories."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import FIELDS, BarUniverse
from signalfactory.domain.errors import NotFoundError
from signalfactory.domain.ingests import IngestRecord
from signalfactory.domain.instruments import InstrumentSpec
from signalfactory.domain.resample import resample_universe
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import datetime_to_ns, ns_to_datetime
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SymbolBars:
    """Bars of one symbol in time order (validated)."""

    spec: InstrumentSpec
    ts: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64


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
    bar; ``arrival_ns`` is the wall clock (``platform.clock.time_ns()``) when the bars reached
    ``write_bars``, the start of the signal-latency measurement.

    ``ingest_id`` (the write's ingest-journal entry) is set by ``write_bars`` once the write
    has reached ``platform.live_windows``: only then may live evaluation read its window from
    memory. ``window_generation``: the windows' generation with this write merged, None when
    the write did not directly follow the last one this process saw (they were dropped).
    ``symbols`` names the written instruments (id -> symbol) when known. ``prepared``: what
    each of ``platform.bar_preparers`` returned for this write, by preparer.
    """

    timeframe: Timeframe
    first_new: dict[int, int]
    arrival_ns: int
    source: str
    ingest_id: int | None = None
    symbols: Mapping[int, str] = field(default_factory=dict)
    window_generation: int | None = None
    prepared: Mapping[object, object] = field(default_factory=dict)


def first_new_times(cols: BarColumns) -> dict[int, int]:
    """Each written instrument's earliest written bar (ns), from sorted columns."""
    if len(cols) == 0:
        return {}
    # Sorted by (instrument, ts): an instrument's first row holds its earliest bar, and group
    # starts are where the id changes (no second sort of millions of ids on every write).
    inst = cols.instrument_id
    first = np.concatenate(([0], np.flatnonzero(inst[1:] != inst[:-1]) + 1))
    return dict(zip(inst[first].tolist(), cols.ts[first].tolist(), strict=True))


def _columns(batches: Sequence[SymbolBars], ids: dict[str, int]) -> BarColumns:
    """The batches as one set of columns sorted by (instrument, ts), a repeated bar's last
    value winning."""
    if not batches:
        return BarColumns.empty()
    # A live batch is hundreds of one-bar batches: concatenating hundreds of one-element
    # arrays per column cost more than the rest of the write's Python work.
    lengths = [len(b.ts) for b in batches]
    inst = np.repeat(np.array([ids[b.spec.symbol] for b in batches], dtype=np.int64),
                     np.array(lengths, dtype=np.int64))
    if all(n == 1 for n in lengths):
        cols = BarColumns(inst, *(_first_of_each(batches, f) for f in ("ts", *FIELDS)))
    else:
        cols = BarColumns(inst, *(np.concatenate([getattr(b, f) for b in batches])
                                  for f in ("ts", *FIELDS)))
    return cols if cols.is_sorted_unique() else cols.latest_wins()


def _first_of_each(batches: Sequence[SymbolBars], field: str) -> npt.NDArray[Any]:
    first = getattr(batches[0], field)
    return np.fromiter((getattr(b, field)[0] for b in batches), dtype=first.dtype,
                       count=len(batches))


def write_bars(platform: Platform, timeframe: Timeframe, batches: Sequence[SymbolBars],
               source: str, extra: Callable[[UnitOfWork], None] | None = None) -> WriteReport:
    """Store every batch in ONE unit of work: all of it lands, or none of it.

    ``extra`` runs inside the same unit of work (a collector advances its cursor there).
    ``platform.bar_preparers`` run inside it, once the columns are known; they must not
    write (their work may be thrown away). After the commit ``platform.bar_subscribers`` run
    (live evaluation and publishing); a failing subscriber is logged by the subscriber itself
    and never undoes the write.
    """
    arrival_ns = platform.clock.time_ns()
    rows = sum(len(b.ts) for b in batches)
    with platform.database.write() as uow:
        upserted = uow.instruments.upsert([b.spec for b in batches])
        cols = _columns(batches, upserted.ids)
        symbols = {upserted.ids[b.spec.symbol]: b.spec.symbol for b in batches}
        # Started before the commit, so that work overlaps it (live evaluation).
        prepared: dict[object, object] = {
            prepare: prepare(platform, timeframe, cols, symbols)
            for prepare in list(platform.bar_preparers)} if rows else {}
        uow.bars.write(timeframe, cols)
        min_ts = ns_to_datetime(int(cols.ts.min())) if rows else None
        max_ts = ns_to_datetime(int(cols.ts.max())) if rows else None
        ingest_id = uow.bars.record_ingest(IngestRecord(
            source=source, timeframe=timeframe.name, rows=rows,
            instruments=len(upserted.ids), min_ts=min_ts, max_ts=max_ts))
        if extra is not None:
            extra(uow)
        fragmented = bool(rows) and uow.bars.fragmented(timeframe)
    if upserted.changed:  # committed: cached instrument lists are stale now
        platform.cache.invalidate("instruments")
    generation = platform.live_windows.committed(timeframe, cols, ingest_id)
    if rows:
        written = BarsWritten(timeframe, first_new_times(cols), arrival_ns, source,
                              ingest_id=ingest_id, symbols=symbols,
                              window_generation=generation, prepared=prepared)
        for subscriber in list(platform.bar_subscribers):
            subscriber(platform, written)
    if fragmented:
        # Many small writes (a live feed) leave many pieces; they are folded in a transaction
        # of their own, after the subscribers, so that neither waits for it.
        with platform.database.write() as uow:
            uow.bars.compact(timeframe)
    return WriteReport(rows=rows, instruments=len(upserted.ids), timeframe=timeframe.name,
                       min_ts=min_ts, max_ts=max_ts)


def _parse_when(value: str | datetime | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return datetime_to_ns(value)


def load_universe(platform: Platform, timeframe: Timeframe, *,
                  symbols: Sequence[str] | None = None, tag: str | None = None,
                  start: str | datetime | None = None,
                  end: str | datetime | None = None) -> BarUniverse:
    """Bars of many instruments at once, straight from the store into numpy; a timeframe not
    stored is aggregated from the highest stored one that divides it."""
    start_ns, end_ns = _parse_when(start), _parse_when(end)
    with platform.database.read() as uow:
        names = uow.instruments.symbols()
        ids: I64 | None = None
        if symbols is not None or tag is not None:
            found = uow.instruments.find(tag=tag, symbols=symbols)
            if symbols is not None:
                unknown = sorted(set(symbols) - {i.symbol for i in found})
                if unknown:
                    raise NotFoundError(f"unknown symbol(s): {', '.join(unknown)}; list them "
                                        "with `signalfactory instruments`")
            ids = np.array(sorted(i.id for i in found), dtype=np.int64)
        stored = uow.bars.timeframes()
        if timeframe.name in stored:
            return uow.bars.load(timeframe, names, ids, start_ns, end_ns)
        for lower in sorted((Timeframe.parse(s) for s in stored), reverse=True):
            if lower.divides(timeframe):
                base = uow.bars.load(lower, names, ids, start_ns, end_ns)
                return resample_universe(base, timeframe)
    have = ", ".join(stored) or "none"
    raise NotFoundError(f"no bars stored for timeframe {timeframe.name} or any lower timeframe "
                        f"that aggregates into it (stored: {have}); ingest some first")
