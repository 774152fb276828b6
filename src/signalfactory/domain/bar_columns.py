"""Sorted bar columns as the bar stores and repositories exchange them, and their conversion
into a universe (pure numpy: the services merge and inspect them too)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signalfactory.domain.bars import FIELDS, BarUniverse

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class BarColumns:
    """Bars sorted by (instrument_id, ts); every array has one entry per bar."""

    instrument_id: I64
    ts: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> BarColumns:
        return BarColumns(*(getattr(self, name)[index] for name in ("instrument_id", "ts",
                                                                     *FIELDS)))

    @classmethod
    def concat(cls, parts: list[BarColumns]) -> BarColumns:
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, name) for p in parts])
                     for name in ("instrument_id", "ts", *FIELDS)))

    @classmethod
    def empty(cls) -> BarColumns:
        z_i = np.zeros(0, dtype=np.int64)
        z_f = np.zeros(0, dtype=np.float64)
        return cls(z_i, z_i, z_f, z_f, z_f, z_f, z_f)

    def latest_wins(self) -> BarColumns:
        """Sort by (instrument, ts) keeping the LAST occurrence of each key.

        Parts are concatenated oldest first, and the sort is stable, so the newest write of a
        bar survives: that is how an overlapping re-ingest upserts.
        """
        order = np.lexsort((self.ts, self.instrument_id))
        inst = self.instrument_id[order]
        ts = self.ts[order]
        keep = np.ones(order.shape[0], dtype=bool)
        if order.shape[0] > 1:
            keep[:-1] = (inst[1:] != inst[:-1]) | (ts[1:] != ts[:-1])
        return self.take(order[keep])

    def is_sorted_unique(self) -> bool:
        if len(self) < 2:
            return True
        di = np.diff(self.instrument_id)
        dt = np.diff(self.ts)
        return bool(np.all((di > 0) | ((di == 0) & (dt > 0))))

    def filter(self, instrument_ids: npt.NDArray[np.int64] | None, start_ns: int | None,
               end_ns: int | None) -> BarColumns:
        mask: npt.NDArray[np.bool_] | None = None
        if instrument_ids is not None:
            mask = np.isin(self.instrument_id, instrument_ids)
        if start_ns is not None:
            m = self.ts >= start_ns
            mask = m if mask is None else mask & m
        if end_ns is not None:
            m = self.ts <= end_ns
            mask = m if mask is None else mask & m
        return self if mask is None else self.take(mask)

    def to_universe(self, symbols: Mapping[int, str]) -> BarUniverse:
        inst = self.instrument_id
        if len(self) == 0:
            return BarUniverse.empty()
        starts = np.concatenate(([0], np.flatnonzero(inst[1:] != inst[:-1]) + 1))
        offsets = np.append(starts, len(self)).astype(np.int64)
        ids = inst[starts]
        return BarUniverse(
            symbols=tuple(symbols.get(int(i), f"#{int(i)}") for i in ids), offsets=offsets,
            ts=self.ts, open=self.open, high=self.high, low=self.low, close=self.close,
            volume=self.volume, instrument_ids=ids.astype(np.int64))
