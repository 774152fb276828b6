"""Packed bars on PostgreSQL: one ``bar_packs`` row per (timeframe, instrument, bucket).

Why: a universe read from ``bars`` moves every bar as its own row (7 fields, 24 bytes of
row header, a tuple visibility check, a COPY message): 0.5 s for 1.26 M bars even with the
GIL-free COPY reader, and in a fresh process another 0.7 s for that reader's numba start. A
pack holds up to ``BUCKET_BARS`` bars of one instrument as one little-endian record array
(ts int64 ns, open, high, low, close, volume float64; 48 bytes a bar) in a ``bytea`` kept
uncompressed out of line (``STORAGE EXTERNAL``: float bits do not compress and pglz would
cost CPU on every read). The same universe is then about 5,000 values that the server hands
over as they lie and numpy views without parsing a row.

Why packs rather than a columnar cache in front of ``bars``: a cache lives in one process, so
every fresh process (a CLI command, a restarted worker) pays the row read again, and deciding
whether it is current needs the database anyway. Packs live in the same database, written in
the same transaction as the rows, so every reader on every connection (and replica) sees
packs and rows of the same snapshot; there is no second copy to invalidate.

Why ``bars`` stays the source of truth: the upsert, correction and retention logic (and
everything that queries bars with SQL) keep working on rows; packs are derived from them.
After each write the touched (instrument, bucket) packs are rebuilt from the rows *as stored*
(so a bar skipped because it was identical, or changed by a concurrent writer, is packed as
the table holds it). The rebuild first locks the touched pack rows (inserting placeholders for
new ones) in key order, and reads the rows in a later statement: a concurrent writer of the
same packs either committed before the lock was granted (its rows are read) or rebuilds after
this transaction commits (and reads these rows). So packs equal rows at every commit.

Writes around the store (plain SQL on ``bars``) fire a statement trigger that records the
packs as stale in ``bar_packs_stale``; reads then go to the rows until :func:`repack` rebuilds
every pack (retention runs it). The store's own statements set ``signalfactory.bars_packed``
for the statement's duration, which the trigger takes as "packs are kept".

Bucket: the calendar year (UTC) for daily and weekly bars (``year * 10000``); for shorter
bars, slices of ``BUCKET_BARS`` bar lengths from the start of the year (``year * 10000 +
slice``: 15.25 days of hourly bars, about six hours of minute bars), so a live update of one
bar rewrites at most ``BUCKET_BARS`` bars per instrument. Buckets never cross a year, so a
bucket in a yearly partition the writing transaction has just created holds exactly the bars
it loaded there: those packs are built from the written bars without reading them back.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import FIELDS
from signalfactory.domain.timeframes import Timeframe

BUCKET_BARS = 366
RECORD = np.dtype([("ts", "<i8"), *((name, "<f8") for name in FIELDS)])
_GUC = "signalfactory.bars_packed"
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
RowReader = Callable[[str], BarColumns]  # stored bars matching an SQL condition, sorted


def span_ns(timeframe: Timeframe) -> int:
    return BUCKET_BARS * timeframe.nanoseconds


def buckets_of(ts: npt.NDArray[np.int64], timeframe: Timeframe) -> npt.NDArray[np.int64]:
    """The bucket of each bar time (ns); increasing with time."""
    years = ts.astype("datetime64[ns]").astype("datetime64[Y]")
    start = years.astype("datetime64[ns]").astype(np.int64)
    out: npt.NDArray[np.int64] = ((years.astype(np.int64) + 1970) * 10_000
                                  + (ts - start) // span_ns(timeframe))
    return out


def bucket_of(ns: int, timeframe: Timeframe) -> int:
    return int(buckets_of(np.array([ns], dtype=np.int64), timeframe)[0])


def available(pg: psycopg.Connection[Any]) -> tuple[bool, bool]:
    """(does ``bar_packs`` exist, are the packs current)."""
    row = pg.execute("SELECT to_regclass('bar_packs') IS NOT NULL, "
                     "to_regclass('bar_packs_stale') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return False, False
    if not row[1]:
        return True, True
    stale = pg.execute("SELECT EXISTS (SELECT 1 FROM bar_packs_stale)").fetchone()
    return True, not (stale and stale[0])


@contextmanager
def kept(pg: psycopg.Connection[Any]) -> Iterator[None]:
    """Statements run inside keep the packs themselves: the staleness trigger ignores them."""
    pg.execute("SELECT set_config(%s, 'on', true)", (_GUC,))
    try:
        yield
    finally:
        if pg.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            pg.execute("SELECT set_config(%s, '', true)", (_GUC,))


# -- building --------------------------------------------------------------------------------

def _keys(cols: BarColumns, timeframe: Timeframe) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """(instrument ids, buckets, first row) of each pack in sorted ``cols``."""
    if len(cols) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.intp)
    bucket = buckets_of(cols.ts, timeframe)
    inst = cols.instrument_id
    starts = np.flatnonzero(np.r_[True, (inst[1:] != inst[:-1]) | (bucket[1:] != bucket[:-1])])
    return inst[starts], bucket[starts], starts


def _copy_stream(timeframe: Timeframe, cols: BarColumns) -> Iterator[bytes]:
    """A binary COPY stream of the packs of sorted ``cols``."""
    ids, buckets, starts = _keys(cols, timeframe)
    records = np.empty(len(cols), dtype=RECORD)
    records["ts"] = cols.ts
    for name in FIELDS:
        records[name] = getattr(cols, name)
    raw = records.view(np.uint8).data
    tf = timeframe.name.encode()
    head = struct.Struct(f">hii i{len(tf)}s ii ii")
    ends = np.r_[starts[1:], len(cols)]
    yield _COPY_HEADER
    block: list[bytes | memoryview] = []
    for inst, bucket, lo, hi in zip(ids.tolist(), buckets.tolist(), starts.tolist(),
                                    ends.tolist(), strict=True):
        size = (hi - lo) * RECORD.itemsize
        block.append(head.pack(5, 4, inst, len(tf), tf, 4, bucket, 4, hi - lo))
        block.append(struct.pack(">i", size))
        block.append(raw[lo * RECORD.itemsize: hi * RECORD.itemsize])
        if len(block) >= 3000:
            yield b"".join(block)
            block = []
    block.append(b"\xff\xff")
    yield b"".join(block)


def _unnest(ids: npt.NDArray[np.int64], buckets: npt.NDArray[np.int64]) -> str:
    return (f"unnest('{{{','.join(map(str, ids.tolist()))}}}'::int4[], "
            f"'{{{','.join(map(str, buckets.tolist()))}}}'::int4[]) AS k(id, bucket)")


def rebuild(pg: psycopg.Connection[Any], timeframe: Timeframe, ids: npt.NDArray[np.int64],
            buckets: npt.NDArray[np.int64], read_rows: RowReader,
            known: BarColumns | None = None) -> None:
    """Rebuild the packs (``ids[i]``, ``buckets[i]``; sorted, unique) from the stored rows.

    ``read_rows(where)`` returns the stored bars matching an SQL condition, sorted.
    ``known``: bars that are, with certainty, all the stored bars of their packs (loaded into
    a yearly partition this transaction created); those packs are built from them directly.
    Runs inside the caller's transaction.
    """
    if ids.shape[0] == 0:
        return
    from signalfactory.adapters.storage.postgres_merge import match_sorted  # numba: writes only

    tf = timeframe.name  # Timeframe names are [0-9]+[mhdw]
    keys = _unnest(ids, buckets)
    # Lock every touched pack in key order (placeholders for new ones); a concurrent writer of
    # the same packs waits here until this transaction ends, and vice versa.
    pg.execute(f"INSERT INTO bar_packs AS p (timeframe, instrument_id, bucket, bars, data) "
               f"SELECT '{tf}', k.id, k.bucket, 0, ''::bytea FROM {keys} "
               "ORDER BY k.id, k.bucket "
               "ON CONFLICT (timeframe, instrument_id, bucket) DO UPDATE SET bars = p.bars")
    unknown = np.ones(ids.shape[0], dtype=bool)
    if known is not None and len(known):
        known_ids, known_buckets, _starts = _keys(known, timeframe)
        unknown = match_sorted(ids, buckets, known_ids, known_buckets) < 0
    stored = BarColumns.empty()
    if unknown.any():
        # A later statement: sees every writer that committed before the locks were granted.
        read_ids, read_buckets = ids[unknown], buckets[unknown]
        lo, hi = _bucket_span(int(read_buckets.min()), int(read_buckets.max()), timeframe)
        id_list = ",".join(map(str, np.unique(read_ids).tolist()))
        stored = read_rows(f"timeframe = '{tf}' AND instrument_id = ANY('{{{id_list}}}'::int4[]) "
                           f"AND ts >= {_literal(lo)} AND ts < {_literal(hi)}")
        if len(stored):
            # Only the touched packs (the range read may cover others of these instruments).
            keep = match_sorted(stored.instrument_id, buckets_of(stored.ts, timeframe),
                                read_ids, read_buckets) >= 0
            if not keep.all():
                stored = stored.take(keep)
    pg.execute(f"DELETE FROM bar_packs p USING {keys} WHERE p.timeframe = '{tf}' "
               "AND p.instrument_id = k.id AND p.bucket = k.bucket")
    for rows in (known, stored):
        if rows is not None and len(rows):
            _copy_in(pg, timeframe, rows)


def _bucket_span(first: int, last: int, timeframe: Timeframe) -> tuple[int, int]:
    """[lo, hi) in ns covering the buckets ``first`` .. ``last``."""
    def start(bucket: int) -> int:
        year_ns = int(np.datetime64(f"{bucket // 10_000:04d}-01-01", "ns").astype(np.int64))
        return year_ns + (bucket % 10_000) * span_ns(timeframe)

    next_year = int(np.datetime64(f"{last // 10_000 + 1:04d}-01-01", "ns").astype(np.int64))
    return start(first), min(start(last) + span_ns(timeframe), next_year)


def _copy_in(pg: psycopg.Connection[Any], timeframe: Timeframe, cols: BarColumns) -> None:
    with pg.cursor() as cur, cur.copy(
            "COPY bar_packs (instrument_id, timeframe, bucket, bars, data) FROM STDIN "
            "(FORMAT binary)") as copy:
        for block in _copy_stream(timeframe, cols):
            copy.write(block)


def _literal(ns: int) -> str:
    us = ns // 1000
    return f"'{np.datetime_as_string(np.datetime64(us, 'us'), unit='us')}+00'::timestamptz"


def touched(cols: BarColumns, timeframe: Timeframe) -> tuple[npt.NDArray[np.int64],
                                                            npt.NDArray[np.int64]]:
    """The (instrument, bucket) keys of sorted ``cols``, sorted and unique."""
    ids, buckets, _starts = _keys(cols, timeframe)
    return ids, buckets


def prune(pg: psycopg.Connection[Any], timeframe: Timeframe, cutoff_ns: int,
          read_rows: RowReader) -> None:
    """After bars before ``cutoff_ns`` were deleted: drop packs wholly before it, rebuild the
    packs it cuts through."""
    cut = bucket_of(cutoff_ns, timeframe)
    pg.execute("DELETE FROM bar_packs WHERE timeframe = %s AND bucket < %s",
               (timeframe.name, cut))
    rows = pg.execute("SELECT instrument_id FROM bar_packs WHERE timeframe = %s AND bucket = %s "
                      "ORDER BY instrument_id", (timeframe.name, cut)).fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    rebuild(pg, timeframe, ids, np.full(ids.shape[0], cut, dtype=np.int64), read_rows)


def repack(pg: psycopg.Connection[Any], read_rows: RowReader) -> None:
    """Rebuild every pack from ``bars`` and clear the stale mark (after writes around the
    store). Writers of packs wait meanwhile (EXCLUSIVE allows only reads)."""
    pg.execute("LOCK TABLE bar_packs IN EXCLUSIVE MODE")
    # The mark goes first: a writer around the store committing from now on marks again.
    pg.execute("DELETE FROM bar_packs_stale")
    pg.execute("DELETE FROM bar_packs")
    names = [r[0] for r in pg.execute("SELECT DISTINCT timeframe FROM bars").fetchall()]
    for name in names:
        timeframe = Timeframe.parse(name)
        stored: BarColumns = read_rows(f"timeframe = '{timeframe.name}'")
        if len(stored):
            _copy_in(pg, timeframe, stored)


# -- reading ---------------------------------------------------------------------------------

def select(timeframe: Timeframe, instrument_ids: npt.NDArray[np.int64] | None,
           start_ns: int | None, end_ns: int | None,
           id_range: tuple[int, int] | None = None) -> str | None:
    """The query for the packs a read needs, in (instrument, bucket) order; None if none can
    match."""
    parts = [f"timeframe = '{timeframe.name}'"]
    if instrument_ids is not None:
        ids = np.unique(np.asarray(instrument_ids, dtype=np.int64))
        ids = ids[(ids >= -(2**31)) & (ids < 2**31)]
        if ids.shape[0] == 0:
            return None
        parts.append(f"instrument_id = ANY('{{{','.join(map(str, ids.tolist()))}}}'::int4[])")
    if id_range is not None:
        parts.append(f"instrument_id >= {int(id_range[0])} AND instrument_id < {int(id_range[1])}")
    if start_ns is not None:
        parts.append(f"bucket >= {bucket_of(int(start_ns), timeframe)}")
    if end_ns is not None:
        parts.append(f"bucket <= {bucket_of(int(end_ns), timeframe)}")
    return (f"SELECT instrument_id, data FROM bar_packs WHERE {' AND '.join(parts)} "
            "ORDER BY instrument_id, bucket")


def fetch(pg: psycopg.Connection[Any], sql: str, start_ns: int | None = None,
          end_ns: int | None = None) -> BarColumns:
    """Run a :func:`select` query (binary results: each pack arrives as the bytes stored) and
    unpack it into sorted columns within [start, end]."""
    with pg.cursor(binary=True) as cur:
        rows = cur.execute(sql.encode()).fetchall()
    return unpack([r[0] for r in rows], [r[1] for r in rows], start_ns, end_ns)


def unpack(ids: list[int], data: list[bytes], start_ns: int | None = None,
           end_ns: int | None = None) -> BarColumns:
    """Columns of the packs ``data`` of instruments ``ids``, within [start, end]."""
    item = RECORD.itemsize
    counts = np.fromiter((len(d) for d in data), dtype=np.int64, count=len(data))
    if np.any(counts % item):
        raise psycopg.DataError("a bar pack is not a whole number of bar records")
    counts //= item
    records = np.frombuffer(b"".join(data), dtype=RECORD)
    total = records.shape[0]
    inst_col = np.repeat(np.asarray(ids, dtype=np.int64), counts)
    cols = BarColumns(inst_col, np.ascontiguousarray(records["ts"]),
                      *(np.ascontiguousarray(records[name]) for name in FIELDS))
    if start_ns is not None or end_ns is not None:
        keep = np.ones(total, dtype=bool)
        if start_ns is not None:
            keep &= cols.ts >= start_ns
        if end_ns is not None:
            keep &= cols.ts <= end_ns
        if not keep.all():
            cols = cols.take(keep)
    return cols
