"""The ``BarRepository`` port on one connection: bars through the process's bar store (Arrow
segment files on SQLite, the partitioned ``bars`` table on PostgreSQL), plus the ``ingests``
journal and the collectors' ``fetch_cursors``, all in the connection's transaction."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.bar_store import BarStore
from signalfactory.adapters.storage.tables_core import fetch_cursors, ingests
from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.ingests import IngestRecord
from signalfactory.domain.timeframes import Timeframe

_SOURCE_LENGTH = 512  # ingests.source is a VARCHAR(512); a long file list is cut, not refused


class SqlBarRepository:
    """Bars, ingest journal and collector cursors of one unit of work."""

    def __init__(self, conn: Connection, bar_store: BarStore) -> None:
        self.conn = conn
        self.store = bar_store

    # -- bars ------------------------------------------------------------------------------
    def write(self, timeframe: Timeframe, cols: BarColumns) -> int:
        return self.store.write(self.conn, timeframe, cols)

    def read_columns(self, timeframe: Timeframe,
                     instrument_ids: npt.NDArray[np.int64] | None = None,
                     start_ns: int | None = None, end_ns: int | None = None) -> BarColumns:
        return self.store.read_columns(self.conn, timeframe, instrument_ids, start_ns, end_ns)

    def load(self, timeframe: Timeframe, symbols: Mapping[int, str],
             instrument_ids: npt.NDArray[np.int64] | None = None, start_ns: int | None = None,
             end_ns: int | None = None) -> BarUniverse:
        return self.store.load(self.conn, timeframe, symbols, instrument_ids, start_ns, end_ns)

    def replace(self, timeframe: Timeframe, cols: BarColumns) -> None:
        self.store.replace(self.conn, timeframe, cols)

    def timeframes(self) -> list[str]:
        return self.store.timeframes(self.conn)

    def count(self, timeframe: Timeframe) -> int:
        return self.store.count(self.conn, timeframe)

    def fragmented(self, timeframe: Timeframe) -> bool:
        return self.store.fragmented(self.conn, timeframe)

    def compact(self, timeframe: Timeframe) -> bool:
        return self.store.compact(self.conn, timeframe)

    # -- the ingest journal and collector cursors -----------------------------------------
    def record_ingest(self, entry: IngestRecord) -> int:
        return int(self.conn.execute(ingests.insert().returning(ingests.c.id).values(
            source=entry.source[:_SOURCE_LENGTH], timeframe=entry.timeframe, rows=entry.rows,
            instruments=entry.instruments, min_ts=entry.min_ts,
            max_ts=entry.max_ts)).scalar_one())

    def cursor(self, source: str, symbol: str, timeframe: Timeframe) -> int | None:
        last: int | None = self.conn.execute(sa.select(fetch_cursors.c.last_ts).where(
            fetch_cursors.c.source == source, fetch_cursors.c.symbol == symbol,
            fetch_cursors.c.timeframe == timeframe.name)).scalar()
        return last

    def advance_cursor(self, source: str, symbol: str, timeframe: Timeframe,
                       last_ts: int) -> None:
        updated = self.conn.execute(fetch_cursors.update().where(
            fetch_cursors.c.source == source, fetch_cursors.c.symbol == symbol,
            fetch_cursors.c.timeframe == timeframe.name).values(last_ts=last_ts,
                                                                updated_at=sa.func.now()))
        if updated.rowcount == 0:
            self.conn.execute(fetch_cursors.insert().values(
                source=source, symbol=symbol, timeframe=timeframe.name, last_ts=last_ts))
