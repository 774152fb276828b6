"""Where bars live in PostgreSQL: the layout of ``bars``, its pieces, and yearly partitions.

``bars`` is range-partitioned by ``ts`` with one partition per calendar year (UTC) and a
default partition that stays empty; or a TimescaleDB hypertable (the migration picks). A year
without a partition is created when bars for it are written: as a plain table, loaded with
``COPY ... FREEZE`` and indexed once by a sort, then attached. That is both the fastest way
in and the reason the default partition never fills: PostgreSQL cannot attach a range while
the default partition holds rows of it (rows written there around the store are moved out).

Locks: ATTACH takes SHARE UPDATE EXCLUSIVE on ``bars`` (writers and readers of other
partitions go on) and ACCESS EXCLUSIVE on the new table and the default partition until the
writing transaction ends, so a read that scans the default partition waits for an ingest that
opens a new year.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from signalfactory.domain.bar_columns import BarColumns

PRIMARY_KEY = "timeframe, instrument_id, ts"  # as the migration declares pk_bars
_LOCK_NAMESPACE = 0x5F_BA25  # pg_advisory_xact_lock(namespace, year) serialises partition DDL

# copy_in(pg, table, rows of the batch or None for all, freeze)
CopyIn = Callable[[psycopg.Connection[Any], str, npt.NDArray[np.intp] | None, bool], None]


@dataclass(frozen=True)
class Leaf:
    """A piece of ``bars`` to stream: a partition (native) or a chunk's time range."""

    source: str  # relation the rows are selected from
    lo_ns: int | None  # [lo, hi) of the piece; None for the default partition / plain table
    hi_ns: int | None
    est_rows: float
    range_filter: bool  # hypertable chunks are read through the hypertable with their range


def scalar(pg: psycopg.Connection[Any], query: str,
           params: Sequence[object] | None = None) -> Any:  # noqa: ANN401 - per the query
    """The first column of the first row (None without rows); its type is the query's."""
    row = pg.execute(query, params).fetchone()
    return None if row is None else row[0]


def literal_ts(ns: int) -> str:
    """A timestamptz literal for ``ns`` (floored to the microsecond)."""
    us = ns // 1000
    return f"'{np.datetime_as_string(np.datetime64(us, 'us'), unit='us')}+00'::timestamptz"


def raise_local_setting(pg: psycopg.Connection[Any], name: str, size: str) -> None:
    """Raise a memory setting for the rest of this transaction only (SET LOCAL), never lower
    it: it sizes one sort or hash of a bulk operation."""
    pg.execute("SELECT set_config(%s, %s, true) WHERE pg_size_bytes(current_setting(%s)) "
               "< pg_size_bytes(%s)", (name, size, name, size))


def layout(pg: psycopg.Connection[Any]) -> str:
    """'partitioned' (native ranges), 'hypertable' (TimescaleDB) or 'plain'."""
    if scalar(pg, "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table "
                  "WHERE partrelid = to_regclass('bars'))"):
        return "partitioned"
    if scalar(pg, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')") \
            and scalar(pg, "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
                           "WHERE hypertable_name = 'bars')"):
        return "hypertable"
    return "plain"


def leaves(pg: psycopg.Connection[Any], kind: str) -> list[Leaf]:
    """The pieces of ``bars`` in ascending time order (ranges first, the default last)."""
    if kind == "partitioned":
        rows = pg.execute(r"""
            WITH p AS (
                SELECT c.oid, c.reltuples, regexp_match(pg_get_expr(c.relpartbound, c.oid),
                       $$FROM \('([^']+)'\) TO \('([^']+)'\)$$) AS b
                FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'bars'::regclass)
            SELECT oid::regclass::text, reltuples,
                   (extract(epoch FROM b[1]::timestamptz) * 1000000)::int8,
                   (extract(epoch FROM b[2]::timestamptz) * 1000000)::int8
            FROM p""").fetchall()
        return sorted((Leaf(name, None if lo is None else lo * 1000,
                            None if hi is None else hi * 1000, max(float(est), 0.0), False)
                       for name, est, lo, hi in rows),
                      key=lambda leaf: (leaf.lo_ns is None, leaf.lo_ns or 0))
    if kind == "hypertable":  # untested here: the test server has no TimescaleDB
        rows = pg.execute("""
            SELECT (extract(epoch FROM ch.range_start) * 1000000)::int8,
                   (extract(epoch FROM ch.range_end) * 1000000)::int8, greatest(c.reltuples, 0)
            FROM timescaledb_information.chunks ch
            JOIN pg_class c ON c.oid = format('%I.%I', ch.chunk_schema, ch.chunk_name)::regclass
            WHERE ch.hypertable_name = 'bars' ORDER BY ch.range_start""").fetchall()
        return [Leaf("bars", lo * 1000, hi * 1000, float(est), True) for lo, hi, est in rows]
    est = scalar(pg, "SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'bars'::regclass")
    return [Leaf("bars", None, None, float(est or 0), False)]


def _year_start_ns(year: int) -> int:
    return int(np.datetime64(f"{year:04d}-01-01", "ns").astype(np.int64))


def _bounds(year: int) -> tuple[str, str]:
    return f"'{year:04d}-01-01 00:00:00+00'", f"'{year + 1:04d}-01-01 00:00:00+00'"


def _free_years(pg: psycopg.Connection[Any], years: list[int]) -> list[int]:
    """Years no attached partition's range touches: a yearly partition can be made."""
    ranges = [(leaf.lo_ns, leaf.hi_ns) for leaf in leaves(pg, "partitioned")
              if leaf.lo_ns is not None and leaf.hi_ns is not None]
    return [y for y in years if not any(lo < _year_start_ns(y + 1) and hi > _year_start_ns(y)
                                        for lo, hi in ranges)]


def _default_partition(pg: psycopg.Connection[Any]) -> str | None:
    name = scalar(pg, "SELECT c.oid::regclass::text FROM pg_inherits i "
                      "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = "
                      "'bars'::regclass AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'")
    return None if name is None else str(name)


def create_missing_years(pg: psycopg.Connection[Any], cols: BarColumns,
                         copy_in: CopyIn) -> npt.NDArray[np.intp]:
    """Create the yearly partitions ``cols`` needs, loading the bars of each new one.

    Returns the rows still to be written (those of years that already had a partition).
    """
    years = cols.ts.astype("datetime64[ns]").astype("datetime64[Y]").astype(np.int64) + 1970
    missing = _free_years(pg, [int(y) for y in np.unique(years)])
    for year in missing:  # ascending order, so concurrent writers cannot deadlock
        pg.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_NAMESPACE, year))
    if missing:  # another writer may have created some while this one waited
        missing = _free_years(pg, missing)
    default = _default_partition(pg)
    loaded = np.zeros(len(cols), dtype=bool)
    for year in missing:
        lo, hi = _bounds(year)
        if default is not None and scalar(
                pg, f"SELECT EXISTS (SELECT 1 FROM {default} WHERE ts >= {lo} AND ts < {hi})"):
            _create_from_default(pg, default, year)  # its bars then join the upsert path
            continue
        mask = years == year
        _load_new_partition(pg, year, np.flatnonzero(mask), copy_in)
        loaded |= mask
    return np.flatnonzero(~loaded)


def _create_from_default(pg: psycopg.Connection[Any], default: str, year: int) -> None:
    """A range cannot be attached while the default partition holds rows of it: move them."""
    name, (lo, hi) = f"bars_y{year:04d}", _bounds(year)
    pg.execute(f"CREATE TABLE {name} (LIKE bars INCLUDING DEFAULTS)")
    pg.execute(f"WITH moved AS (DELETE FROM {default} WHERE ts >= {lo} AND ts < {hi} "
               f"RETURNING *) INSERT INTO {name} SELECT * FROM moved")
    pg.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_pkey PRIMARY KEY ({PRIMARY_KEY})")
    pg.execute(f"ALTER TABLE bars ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")


def _load_new_partition(pg: psycopg.Connection[Any], year: int, rows: npt.NDArray[np.intp],
                        copy_in: CopyIn) -> None:
    name, (lo, hi) = f"bars_y{year:04d}", _bounds(year)
    # FREEZE writes the rows already visible to all, sparing the first reader from setting
    # hint bits on every page. It needs the table created in this subtransaction and no older
    # snapshot held (true in READ COMMITTED); where PostgreSQL refuses, plain COPY is used.
    freeze = scalar(pg, "SELECT current_setting('transaction_isolation')") == "read committed"
    pg.execute("SAVEPOINT sf_bars_new_year")
    try:
        _create_and_fill(pg, name, lo, hi, rows, copy_in, freeze)
    except psycopg.errors.ObjectNotInPrerequisiteState:
        if not freeze:
            raise
        pg.execute("ROLLBACK TO SAVEPOINT sf_bars_new_year")
        _create_and_fill(pg, name, lo, hi, rows, copy_in, False)
    pg.execute("RELEASE SAVEPOINT sf_bars_new_year")
    # One sort builds the index (in parallel when the server allows): give it memory.
    raise_local_setting(pg, "maintenance_work_mem", "256MB")
    pg.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_pkey PRIMARY KEY ({PRIMARY_KEY})")
    pg.execute(f"ALTER TABLE bars ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")
    pg.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range")


def _create_and_fill(pg: psycopg.Connection[Any], name: str, lo: str, hi: str,
                     rows: npt.NDArray[np.intp], copy_in: CopyIn, freeze: bool) -> None:
    # The CHECK lets ATTACH skip its validation scan; it is dropped once attached.
    pg.execute(f"CREATE TABLE {name} (LIKE bars INCLUDING DEFAULTS, "
               f"CONSTRAINT {name}_range CHECK (ts >= {lo} AND ts < {hi}))")
    copy_in(pg, name, rows, freeze)
