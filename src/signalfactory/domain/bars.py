"""Bars as columns: one symbol, or a whole universe laid out end to end.

A universe is held the way a scan wants it: each OHLCV field is one contiguous float64 array
holding every instrument's bars back to back (sorted by instrument, then time), and
``offsets[i]:offsets[i + 1]`` is instrument ``i``'s slice. That is the layout the columnar
store maps straight from disk, and the one TA-Lib and numba loops consume without copies.
Timestamps are int64 nanoseconds since the epoch, UTC.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class BarSeries:
    """One instrument's bars in time order."""

    symbol: str
    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def column(self, name: str) -> FloatArray:
        if name not in FIELDS:
            raise KeyError(name)
        arr: FloatArray = getattr(self, name)
        return arr

    def datetimes(self) -> npt.NDArray[np.datetime64]:
        return self.ts.view("datetime64[ns]")


@dataclass(frozen=True)
class BarUniverse:
    """Many instruments' bars, concatenated; see the module docstring for the layout."""

    symbols: tuple[str, ...]
    offsets: IntArray
    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    instrument_ids: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        n = len(self.symbols)
        if self.offsets.shape != (n + 1,):
            raise ValueError(f"offsets must have {n + 1} entries, got {self.offsets.shape}")
        total = int(self.offsets[-1]) if n else 0
        for name in ("ts", *FIELDS):
            if getattr(self, name).shape[0] != total:
                raise ValueError(f"column {name} has {getattr(self, name).shape[0]} rows, "
                                 f"offsets say {total}")

    @property
    def n_instruments(self) -> int:
        return len(self.symbols)

    @property
    def n_bars(self) -> int:
        return int(self.offsets[-1]) if self.symbols else 0

    def lengths(self) -> IntArray:
        return np.diff(self.offsets)

    def index_of(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise KeyError(symbol) from None

    def column(self, name: str) -> FloatArray:
        if name not in FIELDS:
            raise KeyError(name)
        arr: FloatArray = getattr(self, name)
        return arr

    def series(self, i: int) -> BarSeries:
        """Instrument ``i``'s bars as views (no copy)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return BarSeries(self.symbols[i], self.ts[a:b], self.open[a:b], self.high[a:b],
                         self.low[a:b], self.close[a:b], self.volume[a:b])

    def __iter__(self) -> Iterator[BarSeries]:
        for i in range(self.n_instruments):
            yield self.series(i)

    @classmethod
    def from_series(cls, series: Sequence[BarSeries]) -> BarUniverse:
        lengths = np.array([len(s) for s in series], dtype=np.int64)
        offsets = np.zeros(len(series) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])

        def floats(name: str) -> FloatArray:
            if not series:
                return np.zeros(0, dtype=np.float64)
            return np.ascontiguousarray(np.concatenate([getattr(s, name) for s in series]),
                                        dtype=np.float64)

        ts: IntArray = (np.ascontiguousarray(np.concatenate([s.ts for s in series]),
                                             dtype=np.int64)
                        if series else np.zeros(0, dtype=np.int64))
        return cls(
            symbols=tuple(s.symbol for s in series), offsets=offsets, ts=ts,
            open=floats("open"), high=floats("high"), low=floats("low"), close=floats("close"),
            volume=floats("volume"),
        )

    @classmethod
    def empty(cls) -> BarUniverse:
        return cls.from_series([])
