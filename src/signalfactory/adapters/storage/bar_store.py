"""The port every bar store implements, and the choice between them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
from sqlalchemy.engine import Connection

from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.timeframes import Timeframe


class BarStore(Protocol):
    """Bulk bar storage. Writes join the caller's transaction; reads never go row by row."""

    def write(self, conn: Connection, timeframe: Timeframe, cols: BarColumns) -> int:
        """Upsert sorted, unique bars; the newest value of a (instrument, ts) bar wins."""
        ...

    def read_columns(self, conn: Connection, timeframe: Timeframe,
                     instrument_ids: np.ndarray | None = None, start_ns: int | None = None,
                     end_ns: int | None = None) -> BarColumns: ...

    def load(self, conn: Connection, timeframe: Timeframe, symbols: Mapping[int, str],
             instrument_ids: np.ndarray | None = None, start_ns: int | None = None,
             end_ns: int | None = None) -> BarUniverse: ...

    def replace(self, conn: Connection, timeframe: Timeframe, cols: BarColumns) -> None:
        """Make ``cols`` the whole content of ``timeframe`` (used by retention and compaction)."""
        ...

    def timeframes(self, conn: Connection) -> list[str]: ...

    def count(self, conn: Connection, timeframe: Timeframe) -> int: ...

    def fragmented(self, conn: Connection, timeframe: Timeframe) -> bool:
        """Is the timeframe kept in more pieces than reads well (then ``compact`` it)?"""
        ...

    def compact(self, conn: Connection, timeframe: Timeframe) -> bool:
        """Fold pieces of a fragmented timeframe, in the caller's transaction, keeping what
        ``read_columns`` returns; False when it was not fragmented."""
        ...
