"""Resampling a lower timeframe into a higher one (1m -> 5m -> 1h -> 1d -> 1w).

Buckets are aligned to the epoch (UTC midnight for days; Monday 00:00 UTC for weeks, the
usual exchange convention), like continuous aggregates in TimescaleDB: open is the first
open, high the max, low the min, close the last close, volume the sum. A bucket is stamped
with its start time.
"""

from __future__ import annotations

import numpy as np

from signalfactory.domain.bars import BarUniverse, IntArray
from signalfactory.domain.timeframes import NS_PER_SECOND, Timeframe

# 1970-01-01 was a Thursday; shift so weekly buckets start on Mondays.
_WEEK_SHIFT_NS = 3 * 86400 * NS_PER_SECOND


def bucket_starts(ts: IntArray, timeframe: Timeframe) -> IntArray:
    width = timeframe.nanoseconds
    if timeframe.name.endswith("w"):
        shifted = ts + _WEEK_SHIFT_NS
        return (shifted - shifted % width) - _WEEK_SHIFT_NS
    return ts - ts % width


def resample_universe(bars: BarUniverse, timeframe: Timeframe) -> BarUniverse:
    if bars.n_bars == 0:
        return bars
    inst_index = np.repeat(np.arange(bars.n_instruments, dtype=np.int64), bars.lengths())
    buckets = bucket_starts(bars.ts, timeframe)
    # Rows are sorted by (instrument, ts), so a new group starts wherever either changes.
    new_group = np.ones(bars.n_bars, dtype=bool)
    new_group[1:] = (inst_index[1:] != inst_index[:-1]) | (buckets[1:] != buckets[:-1])
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], bars.n_bars) - 1
    group_inst = inst_index[starts]
    offsets = np.zeros(bars.n_instruments + 1, dtype=np.int64)
    np.cumsum(np.bincount(group_inst, minlength=bars.n_instruments), out=offsets[1:])
    return BarUniverse(
        symbols=bars.symbols, offsets=offsets, ts=buckets[starts],
        open=bars.open[starts], high=np.maximum.reduceat(bars.high, starts),
        low=np.minimum.reduceat(bars.low, starts), close=bars.close[ends],
        volume=np.add.reduceat(bars.volume, starts), instrument_ids=bars.instrument_ids)
