"""Equity curves in their stored form, and a split backtest's rows waiting in its chunks.

A curve is stored as one row, not one row per bar: ``ts`` as int64 nanoseconds,
delta-encoded (regular bars compress to almost nothing), and ``equity`` as float64, each
little-endian and zlib-compressed (`ENCODING`). Encoding is pure computation, so a chunk of a
split backtest encodes its instruments' curves where it computed them, before it opens the
transaction that stores them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from signalfactory.domain.backtest.stored import EquityCurve

ENCODING = "zlib:delta-i64,f64"


#: zlib's fastest level: equity's float64 bits compress no better at 6, three times slower
LEVEL = 1


def encode_curve(ts: np.ndarray, equity: np.ndarray) -> tuple[bytes, bytes]:
    t = np.ascontiguousarray(ts, dtype="<i8")
    deltas = np.diff(t, prepend=np.int64(0)).astype("<i8")
    return (zlib.compress(deltas.tobytes(), LEVEL),
            zlib.compress(np.ascontiguousarray(equity, dtype="<f8").tobytes(), LEVEL))


def decode_curve(ts_blob: bytes, equity_blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    deltas = np.frombuffer(zlib.decompress(ts_blob), dtype="<i8")
    return (np.cumsum(deltas).astype(np.int64),
            np.frombuffer(zlib.decompress(equity_blob), dtype="<f8").astype(np.float64))


@dataclass(frozen=True)
class EncodedCurve:
    """An equity curve as its row stores it (`ENCODING`)."""

    symbol: str
    n_points: int
    ts: bytes
    equity: bytes

    @classmethod
    def of(cls, curve: EquityCurve) -> EncodedCurve:
        ts, equity = encode_curve(curve.ts, curve.equity)
        return cls(curve.symbol, int(curve.ts.shape[0]), ts, equity)

    def decode(self) -> EquityCurve:
        return EquityCurve(self.symbol, *decode_curve(self.ts, self.equity))


@dataclass(frozen=True)
class ChunkedRows:
    """Where the trades and per-symbol curves of a split backtest wait before it is stored:
    held by its chunks under the split job's id, chunk by chunk in instrument order."""

    parent_job_id: str
    trades: tuple[int, ...]  # each chunk's trade count, by chunk index
    curves: tuple[int, ...]  # each chunk's curve count (its instruments)

    @property
    def n_trades(self) -> int:
        return sum(self.trades)
