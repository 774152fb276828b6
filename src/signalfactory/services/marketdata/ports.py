"""Ports of market data: instruments, bars (with the ingest journal and collector cursors),
and the sources collectors fetch from.

The repositories are bound to one unit of work (``uow.instruments``, ``uow.bars``): what they
write commits with everything else done in it, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.ingests import IngestRecord
from signalfactory.domain.instruments import Instrument, InstrumentSpec, UpsertedInstruments
from signalfactory.domain.timeframes import Timeframe

InstrumentIds = npt.NDArray[np.int64]


class InstrumentRepository(Protocol):
    """Stored instruments (symbols, tags)."""

    def upsert(self, specs: Sequence[InstrumentSpec]) -> UpsertedInstruments:
        """Ensure every instrument exists (by symbol and venue); given tags are merged into
        the stored ones. Returns each symbol's id and whether anything was added or retagged."""
        ...

    def find(self, *, tag: str | None = None,
             symbols: Iterable[str] | None = None) -> list[Instrument]:
        """Instruments by symbol, optionally only ``symbols`` and those carrying ``tag``
        (``key=value`` or a bare value, see ``domain.instruments.has_tag``)."""
        ...

    def symbols(self, ids: Iterable[int] | None = None) -> dict[int, str]:
        """id -> symbol of every instrument, or of ``ids`` only."""
        ...


class BarRepository(Protocol):
    """Bars of the unit of work's transaction, through the configured bar store; the ingest
    journal and the collectors' cursors, which commit with the bars they describe."""

    def write(self, timeframe: Timeframe, cols: BarColumns) -> int:
        """Upsert bars sorted by (instrument, ts) and unique; the newest value of a bar wins.
        Returns the bars written."""
        ...

    def read_columns(self, timeframe: Timeframe, instrument_ids: InstrumentIds | None = None,
                     start_ns: int | None = None, end_ns: int | None = None) -> BarColumns:
        """Stored bars sorted by (instrument, ts), optionally of some instruments and within
        ``[start_ns, end_ns]``."""
        ...

    def load(self, timeframe: Timeframe, symbols: Mapping[int, str],
             instrument_ids: InstrumentIds | None = None, start_ns: int | None = None,
             end_ns: int | None = None) -> BarUniverse:
        """``read_columns`` as a universe whose instruments are named by ``symbols``."""
        ...

    def replace(self, timeframe: Timeframe, cols: BarColumns) -> None:
        """Make ``cols`` the whole content of ``timeframe`` (retention deletes through it)."""
        ...

    def timeframes(self) -> list[str]:
        """Names of the timeframes that hold bars."""
        ...

    def count(self, timeframe: Timeframe) -> int: ...

    def fragmented(self, timeframe: Timeframe) -> bool:
        """Does the store keep the timeframe in more pieces than it reads well (the columnar
        store's segment files)? Then ``compact`` folds them."""
        ...

    def compact(self, timeframe: Timeframe) -> bool:
        """Fold a fragmented timeframe's pieces into one; False when it was not fragmented."""
        ...

    def record_ingest(self, entry: IngestRecord) -> int:
        """Add ``entry`` to the ingest journal; its id (ids grow by one per entry, apart
        from the gaps a rolled-back PostgreSQL transaction leaves)."""
        ...

    def cursor(self, source: str, symbol: str, timeframe: Timeframe) -> int | None:
        """Time (ns) of the last bar a collector stored from ``source``, None before any."""
        ...

    def advance_cursor(self, source: str, symbol: str, timeframe: Timeframe,
                       last_ts: int) -> None: ...


@runtime_checkable
class MarketDataSource(Protocol):
    """Where collectors fetch bars from (``adapters/sources``).

    A source yields pages of bars for one symbol and timeframe, oldest first, starting after
    a cursor. Paging and rate limits live in the source; resumability lives in the collector,
    which stores each page and advances the cursor in one unit of work, so a crash keeps
    everything fetched before it.
    """

    name: str

    def symbols(self) -> list[InstrumentSpec]:
        """What this source can deliver."""
        ...

    def fetch(self, symbol: str, timeframe: Timeframe, since_ns: int | None,
              page_size: int = 1000) -> Iterator[BarSeries]:
        """Pages of bars strictly after ``since_ns`` (all history when None), oldest first."""
        ...
