"""The market-data repositories in memory: instruments, and bars kept as numpy columns per
timeframe (read back in the same ``BarColumns`` / ``BarUniverse`` shapes as the real stores)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.ingests import IngestRecord
from signalfactory.domain.instruments import (
    Instrument,
    InstrumentSpec,
    UpsertedInstruments,
    has_tag,
    merge_tags,
)
from signalfactory.domain.timeframes import Timeframe
from signalfactory.testing.memory import MemoryState

BAR_COLUMN_FIELDS = ("instrument_id", "ts", "open", "high", "low", "close", "volume")


class MarketDataStore:
    """Everything market data keeps, as plain containers (a transaction deep-copies it)."""

    def __init__(self) -> None:
        self.instruments: dict[int, Instrument] = {}
        self.next_instrument_id = 1
        #: bars per timeframe name, sorted by (instrument, ts), one row per bar
        self.bars: dict[str, BarColumns] = {}
        self.ingests: list[IngestRecord] = []
        #: (source, symbol, timeframe) -> time (ns) of the last bar collected
        self.cursors: dict[tuple[str, str, str], int] = {}

    def __eq__(self, other: object) -> bool:
        """Equal contents (arrays compared by value): tests compare whole-state snapshots."""
        if not isinstance(other, MarketDataStore):
            return NotImplemented
        same_bars = self.bars.keys() == other.bars.keys() and all(
            np.array_equal(getattr(self.bars[tf], f), getattr(other.bars[tf], f))
            for tf in self.bars for f in BAR_COLUMN_FIELDS)
        return same_bars and (self.instruments, self.next_instrument_id, self.ingests,
                              self.cursors) == (other.instruments, other.next_instrument_id,
                                                other.ingests, other.cursors)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


def _store(state: MemoryState) -> MarketDataStore:
    return state.store("marketdata", MarketDataStore)


class MemoryInstrumentRepository:
    def __init__(self, state: MemoryState) -> None:
        self._data = _store(state)

    def upsert(self, specs: Sequence[InstrumentSpec]) -> UpsertedInstruments:
        data = self._data
        by_key = {(i.symbol, i.venue): i for i in data.instruments.values()}
        wanted = {(s.symbol, s.venue): s for s in specs}
        ids: dict[str, int] = {}
        changed = False
        for key, spec in wanted.items():
            found = by_key.get(key)
            if found is None:
                found = Instrument(id=data.next_instrument_id, symbol=spec.symbol,
                                   venue=spec.venue, asset_class=spec.asset_class,
                                   currency=spec.currency, tags=dict(spec.tags))
                data.next_instrument_id += 1
                changed = True
            elif spec.tags and merge_tags(found.tags, spec.tags) != found.tags:
                found = dataclasses.replace(found, tags=merge_tags(found.tags, spec.tags))
                changed = True
            data.instruments[found.id] = found
            ids[spec.symbol] = found.id
        return UpsertedInstruments(ids, changed=changed)

    def find(self, *, tag: str | None = None,
             symbols: Iterable[str] | None = None) -> list[Instrument]:
        wanted = None if symbols is None else set(symbols)
        return sorted((i for i in self._data.instruments.values()
                       if (wanted is None or i.symbol in wanted)
                       and (tag is None or has_tag(i.tags, tag))),
                      key=lambda i: (i.symbol, i.id))

    def symbols(self, ids: Iterable[int] | None = None) -> dict[int, str]:
        known = self._data.instruments
        if ids is None:
            return {ident: i.symbol for ident, i in known.items()}
        return {int(ident): known[int(ident)].symbol for ident in ids if int(ident) in known}


class MemoryBarRepository:
    def __init__(self, state: MemoryState) -> None:
        self._data = _store(state)

    def write(self, timeframe: Timeframe, cols: BarColumns) -> int:
        if len(cols) == 0:
            return 0
        stored = self._data.bars.get(timeframe.name)
        # Stored first, then the new bars: latest_wins keeps the newest value of a bar.
        merged = cols if stored is None else BarColumns.concat([stored, cols])
        self._data.bars[timeframe.name] = (merged if merged.is_sorted_unique()
                                           else merged.latest_wins())
        return len(cols)

    def read_columns(self, timeframe: Timeframe,
                     instrument_ids: npt.NDArray[np.int64] | None = None,
                     start_ns: int | None = None, end_ns: int | None = None) -> BarColumns:
        stored = self._data.bars.get(timeframe.name)
        if stored is None:
            return BarColumns.empty()
        return stored.filter(instrument_ids, start_ns, end_ns)

    def load(self, timeframe: Timeframe, symbols: Mapping[int, str],
             instrument_ids: npt.NDArray[np.int64] | None = None, start_ns: int | None = None,
             end_ns: int | None = None) -> BarUniverse:
        return self.read_columns(timeframe, instrument_ids, start_ns,
                                 end_ns).to_universe(symbols)

    def replace(self, timeframe: Timeframe, cols: BarColumns) -> None:
        self._data.bars.pop(timeframe.name, None)
        self.write(timeframe, cols)

    def timeframes(self) -> list[str]:
        return sorted(name for name, cols in self._data.bars.items() if len(cols))

    def count(self, timeframe: Timeframe) -> int:
        return len(self.read_columns(timeframe))

    def fragmented(self, timeframe: Timeframe) -> bool:
        return False  # one array per column and timeframe: never in pieces

    def compact(self, timeframe: Timeframe) -> bool:
        return False

    def record_ingest(self, entry: IngestRecord) -> int:
        self._data.ingests.append(entry)
        return len(self._data.ingests)

    def cursor(self, source: str, symbol: str, timeframe: Timeframe) -> int | None:
        return self._data.cursors.get((source, symbol, timeframe.name))

    def advance_cursor(self, source: str, symbol: str, timeframe: Timeframe,
                       last_ts: int) -> None:
        self._data.cursors[(source, symbol, timeframe.name)] = last_ts
