"""The PostgreSQL bar store: ``bars`` range-partitioned by year (or a TimescaleDB hypertable).

Writing joins the caller's transaction (its psycopg connection) and never goes row by row:
- bars of a year with no partition yet build that partition (see ``postgres_partitions``);
- bars for existing partitions go straight in with binary COPY, except for instruments that
  already have bars in the incoming time range (one indexed probe per instrument): those are
  read back with COPY and compared in numpy, so identical bars are skipped, new ones join the
  COPY, and only changed ones go through a staging table and two set-based joins.

Reading: from the packs (``postgres_packs``: one ``bar_packs`` row per instrument and bucket
of 366 bars, rebuilt from the rows in the writing transaction) whenever they are current;
that module's docstring says why packs and not a cache. Without current packs (bars written
around the store, a database not migrated yet), from the rows: each partition is streamed
unordered (a sequential scan, far
cheaper for the server than an ordered index merge) by two connections at once that share the
caller's snapshot (``pg_export_snapshot``), and the pieces are interleaved per instrument in
numpy (``postgres_merge``). A read that must see the caller's own uncommitted writes, or a
small one, is one ordered COPY on the caller's connection.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt
import psycopg
from sqlalchemy.engine import Connection, Engine

from signalfactory.adapters.storage import postgres_packs as packs
from signalfactory.adapters.storage.postgres_partitions import (
    PRIMARY_KEY,
    Leaf,
    create_missing_years,
    layout,
    leaves,
    literal_ts,
    raise_local_setting,
    scalar,
)
from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import FIELDS, BarUniverse
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.timeframes import Timeframe

if TYPE_CHECKING:
    from signalfactory.adapters.storage.postgres_copy import CopyReader

# The COPY reader and the merge kernels (numba) are imported where rows are written or read,
# not here: a read from the packs needs neither, so a fresh process skips loading numba.

_PARALLEL_MIN_ROWS = 200_000  # below this a second connection costs more than it saves
# A bar costs the server about a tenth as much in a pack as in a row (COPY of 1.26 M bars to
# /dev/null: 0.14 s against 1.5 s), so helper connections pay off only at ten times the bars.
_PACKS_PARALLEL_FACTOR = 10
_READ_WORKERS = 2
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class _PackRead:
    """What a read wants from ``bar_packs``."""

    timeframe: Timeframe
    instrument_ids: np.ndarray | None
    start_ns: int | None
    end_ns: int | None
    id_bounds: tuple[int, int] | None = None  # [lo, hi) of the packed ids, for splitting


def _changed(other: str) -> str:
    """SQL: the stored bar ``b`` differs from ``other`` in some value."""
    return (f"({', '.join('b.' + f for f in FIELDS)}) IS DISTINCT FROM "
            f"({', '.join(f'{other}.{f}' for f in FIELDS)})")


def _driver(conn: Connection) -> psycopg.Connection[Any]:
    if not conn.in_transaction():
        conn.begin()  # so the caller's commit() covers what is written on the raw connection
    pg = conn.connection.driver_connection
    if not isinstance(pg, psycopg.Connection):
        raise TypeError("PostgresBarStore needs a psycopg (3) connection; use a "
                        "postgresql+psycopg:// database URL")
    return pg


@contextmanager
def _transaction(pg: psycopg.Connection[Any]) -> Iterator[None]:
    """Joins the caller's transaction; opens one only for an autocommit connection."""
    with pg.transaction() if pg.autocommit else nullcontext():
        yield


def _spare_connections(engine: Engine) -> int:
    """Connections the engine's pool can still hand out without waiting."""
    pool = engine.pool
    size, checked_out = getattr(pool, "size", None), getattr(pool, "checkedout", None)
    if not callable(size) or not callable(checked_out):
        return 0
    return int(size()) + int(getattr(pool, "_max_overflow", 0)) - int(checked_out())


class PostgresBarStore:
    """Bars in PostgreSQL; see the module docstring for the layout and the fast paths."""

    def __init__(self, read_workers: int = _READ_WORKERS) -> None:
        self.read_workers = max(1, read_workers)
        self._reader: CopyReader | None = None

    @property
    def reader(self) -> CopyReader:
        if self._reader is None:
            from signalfactory.adapters.storage.postgres_copy import CopyReader

            self._reader = CopyReader()
        return self._reader

    # -- writing ---------------------------------------------------------------------------
    def write(self, conn: Connection, timeframe: Timeframe, cols: BarColumns) -> int:
        """Upsert bars (newest wins) inside the caller's transaction; returns bars written."""
        if len(cols) == 0:
            return 0
        cols = self._checked(cols)
        pg = _driver(conn)
        with _transaction(pg):
            has_packs, _current = packs.available(pg)
            with packs.kept(pg):
                rest = self._write_rows(pg, timeframe, cols)
                if has_packs:
                    ids, buckets = packs.touched(cols, timeframe)
                    # Bars loaded into a yearly partition created just now are all its bars.
                    loaded = np.ones(len(cols), dtype=bool)
                    loaded[rest] = False
                    packs.rebuild(pg, timeframe, ids, buckets, self._rows_reader(pg),
                                  known=cols.take(loaded) if loaded.any() else None)
        return len(cols)

    def _write_rows(self, pg: psycopg.Connection[Any], timeframe: Timeframe,
                    cols: BarColumns) -> npt.NDArray[np.intp]:
        """Write the rows; returns those that went through the upsert (not into a yearly
        partition created here)."""
        rest = np.arange(len(cols))
        if layout(pg) == "partitioned":
            def copy_in(pg: psycopg.Connection[Any], table: str,
                        rows: npt.NDArray[np.intp] | None, freeze: bool) -> None:
                self._copy_in(pg, table, timeframe, cols, rows, freeze=freeze)

            rest = create_missing_years(pg, cols, copy_in)
        if rest.shape[0]:
            self._upsert(pg, timeframe, cols, rest)
        return rest

    @staticmethod
    def _checked(cols: BarColumns) -> BarColumns:
        from signalfactory.adapters.storage.postgres_merge import is_sorted_unique

        if not is_sorted_unique(cols):
            cols = cols.latest_wins()
        if np.any(cols.ts % 1000):
            raise BadInputError("bar timestamps must be whole microseconds (PostgreSQL "
                                "timestamptz precision)", rule="timestamp")
        inst = cols.instrument_id
        if int(inst.min()) < -(2**31) or int(inst.max()) >= 2**31:
            raise BadInputError("instrument ids must fit in 32 bits", rule="instrument")
        return cols

    @staticmethod
    def _copy_in(pg: psycopg.Connection[Any], table: str, timeframe: Timeframe,
                 cols: BarColumns, rows: npt.NDArray[np.intp] | None, *,
                 freeze: bool = False) -> None:
        from signalfactory.adapters.storage.postgres_copy import IN_COLUMNS, copy_in_blocks

        options = "FORMAT binary, FREEZE" if freeze else "FORMAT binary"
        with pg.cursor() as cur, cur.copy(
                f"COPY {table} ({IN_COLUMNS}) FROM STDIN ({options})") as copy:
            for block in copy_in_blocks(cols, timeframe.name, rows):
                copy.write(block)

    def _upsert(self, pg: psycopg.Connection[Any], timeframe: Timeframe, cols: BarColumns,
                rows: npt.NDArray[np.intp]) -> None:
        """Write ``rows`` of ``cols`` into existing partitions, newest value winning.

        Instruments whose stored bars overlap the incoming range are compared with what is
        stored (read back with COPY, matched in numpy): identical bars are skipped, new ones
        join the plain COPY, and only changed ones go through the staging table.
        """
        from signalfactory.adapters.storage.postgres_merge import match_sorted

        clash = self._overlapping(pg, timeframe, cols.take(rows))
        insert = ~clash
        update = np.zeros_like(clash)
        if clash.any():
            incoming = cols.take(rows[clash])
            stored = self._stored(pg, timeframe, incoming)
            found = match_sorted(incoming.instrument_id, incoming.ts, stored.instrument_id,
                                 stored.ts)
            differs = found >= 0
            hit = found[differs]
            same = np.ones(hit.shape[0], dtype=bool)
            for name in FIELDS:
                same &= getattr(incoming, name)[differs] == getattr(stored, name)[hit]
            differs[np.flatnonzero(differs)[same]] = False
            insert[clash] = found < 0
            update[clash] = differs
        if insert.any():
            # A concurrent writer may commit some of these keys after the probe: then the COPY
            # fails on the primary key, and the savepoint lets them take the staged path.
            pg.execute("SAVEPOINT sf_bars_copy")
            try:
                self._copy_in(pg, "bars", timeframe, cols, rows[insert])
            except psycopg.errors.UniqueViolation:
                pg.execute("ROLLBACK TO SAVEPOINT sf_bars_copy")
                update |= insert
            pg.execute("RELEASE SAVEPOINT sf_bars_copy")
        if update.any():
            self._merge_staged(pg, timeframe, cols, rows[update])

    def _stored(self, pg: psycopg.Connection[Any], timeframe: Timeframe,
                incoming: BarColumns) -> BarColumns:
        """Stored bars of ``incoming``'s instruments within its time span, sorted."""
        from signalfactory.adapters.storage.postgres_merge import sort_columns

        where = self._where(timeframe, np.unique(incoming.instrument_id),
                            int(incoming.ts.min()), int(incoming.ts.max()))
        if where is None:  # only ids outside int4 filter to nothing; stored ids never are
            raise BadInputError("bars to write name no instrument id the bars table can hold")
        pg.execute("SELECT set_config('jit', 'off', true)")
        return sort_columns(self.reader.fetch(pg, self._select(None, where, ordered=False)))

    def _merge_staged(self, pg: psycopg.Connection[Any], timeframe: Timeframe,
                      cols: BarColumns, rows: npt.NDArray[np.intp]) -> None:
        """Upsert through a staging table with two set-based joins (a hash join updates the
        changed bars, an anti-join inserts the new ones): several times faster than
        ``INSERT ... ON CONFLICT``, which probes the index and locks row by row."""
        pg.execute("CREATE TEMP TABLE IF NOT EXISTS sf_bars_stage "
                   "(LIKE bars INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        pg.execute("TRUNCATE sf_bars_stage")
        self._copy_in(pg, "sf_bars_stage", timeframe, cols, rows)
        pg.execute("ANALYZE sf_bars_stage")  # temporary tables get no statistics otherwise
        raise_local_setting(pg, "work_mem", "256MB")  # hash the staged bars in memory
        ts = cols.ts[rows]
        # The explicit range lets the planner skip partitions the staged bars cannot touch.
        span = (f"b.ts >= {literal_ts(int(ts.min()))} AND b.ts <= {literal_ts(int(ts.max()))}")
        # Joining on the integer columns (the timeframe is one constant) keeps text
        # comparisons, which are collation-aware and slow, out of the hash and sort keys.
        same_key = (f"b.timeframe = '{timeframe.name}' AND b.instrument_id = s.instrument_id "
                    "AND b.ts = s.ts")
        assign = ", ".join(f"{f} = s.{f}" for f in FIELDS)
        pg.execute(f"UPDATE bars AS b SET {assign} FROM sf_bars_stage AS s "
                   f"WHERE {same_key} AND {span} AND {_changed('s')}")
        # ON CONFLICT only matters if a concurrent writer added one of these keys meanwhile.
        excluded = ", ".join(f"{f} = EXCLUDED.{f}" for f in FIELDS)
        pg.execute(f"INSERT INTO bars AS b SELECT s.* FROM sf_bars_stage AS s WHERE NOT EXISTS "
                   f"(SELECT 1 FROM bars AS b WHERE {same_key} AND {span}) "
                   f"ON CONFLICT ({PRIMARY_KEY}) DO UPDATE SET {excluded} "
                   f"WHERE {_changed('EXCLUDED')}")

    @staticmethod
    def _overlapping(pg: psycopg.Connection[Any], timeframe: Timeframe,
                     cols: BarColumns) -> npt.NDArray[np.bool_]:
        """Per row: does its instrument already have bars inside the incoming time range?"""
        from signalfactory.adapters.storage.postgres_copy import PG_EPOCH_US

        inst = cols.instrument_id
        starts = np.flatnonzero(np.r_[True, inst[1:] != inst[:-1]])
        ends = np.r_[starts[1:], len(cols)] - 1
        ids = inst[starts]
        # LATERAL ... LIMIT 1 keeps this a nested loop of index probes whatever the estimates.
        rows = pg.execute(
            "SELECT k.id FROM unnest(%s::int4[], %s::int8[], %s::int8[]) AS k(id, lo, hi) "
            "CROSS JOIN LATERAL (SELECT 1 FROM bars b WHERE b.timeframe = %s "
            "AND b.instrument_id = k.id "
            "AND b.ts >= '2000-01-01 00:00:00+00'::timestamptz + k.lo * interval '1 microsecond' "
            "AND b.ts <= '2000-01-01 00:00:00+00'::timestamptz + k.hi * interval '1 microsecond' "
            "LIMIT 1) AS hit",
            (ids.tolist(), (cols.ts[starts] // 1000 - PG_EPOCH_US).tolist(),
             (cols.ts[ends] // 1000 - PG_EPOCH_US).tolist(), timeframe.name)).fetchall()
        clashing = np.array([r[0] for r in rows], dtype=np.int64)
        return np.isin(inst, clashing)

    def replace(self, conn: Connection, timeframe: Timeframe, cols: BarColumns) -> None:
        """Make ``cols`` the whole content of ``timeframe`` (retention, compaction)."""
        pg = _driver(conn)
        with _transaction(pg):
            has_packs, _current = packs.available(pg)
            with packs.kept(pg):
                pg.execute("DELETE FROM bars WHERE timeframe = %s", (timeframe.name,))
                if has_packs:
                    pg.execute("DELETE FROM bar_packs WHERE timeframe = %s", (timeframe.name,))
            self.write(conn, timeframe, cols)

    def delete_before(self, conn: Connection, timeframe: Timeframe, cutoff_ns: int) -> None:
        """Delete the bars older than ``cutoff_ns`` (retention), packs kept in step."""
        pg = _driver(conn)
        with _transaction(pg):
            has_packs, _current = packs.available(pg)
            with packs.kept(pg):
                pg.execute(f"DELETE FROM bars WHERE timeframe = %s AND ts < "
                           f"{literal_ts(-(-int(cutoff_ns) // 1000) * 1000)}",
                           (timeframe.name,))
                if has_packs:
                    packs.prune(pg, timeframe, cutoff_ns, self._rows_reader(pg))

    def repack(self, conn: Connection) -> None:
        """Rebuild every pack from the rows and clear the stale mark (after bars were written
        around the store)."""
        pg = _driver(conn)
        with _transaction(pg), packs.kept(pg):
            packs.repack(pg, self._rows_reader(pg))

    def packs_current(self, conn: Connection) -> bool:
        pg = _driver(conn)
        with _transaction(pg):
            return all(packs.available(pg))

    def _rows_reader(self, pg: psycopg.Connection[Any]) -> Callable[[str], BarColumns]:
        from signalfactory.adapters.storage.postgres_merge import sort_columns

        def read(where: str) -> BarColumns:
            # Unordered (a sequential scan) and sorted in numpy: cheaper than an index-ordered
            # merge over partitions freshly written in this transaction.
            pg.execute("SELECT set_config('jit', 'off', true)")
            return sort_columns(self.reader.fetch(pg, self._select(None, where, ordered=False)))
        return read

    # -- reading ---------------------------------------------------------------------------
    def read_columns(self, conn: Connection, timeframe: Timeframe,
                     instrument_ids: np.ndarray | None = None, start_ns: int | None = None,
                     end_ns: int | None = None) -> BarColumns:
        pg = _driver(conn)
        with _transaction(pg):
            where = self._where(timeframe, instrument_ids, start_ns, end_ns)
            if where is None:
                return BarColumns.empty()
            packed = (_PackRead(timeframe, instrument_ids, start_ns, end_ns)
                      if all(packs.available(pg)) else None)
            pieces = [leaf for leaf in leaves(pg, layout(pg))
                      if self._overlaps(leaf, start_ns, end_ns)]
            snapshot = self._exportable_snapshot(conn, pg, pieces, rows=packed is None)
            if snapshot is None:
                return self._read_ordered(pg, where, packed)
            if packed is not None:
                row = pg.execute("SELECT min(instrument_id), max(instrument_id) FROM bar_packs "
                                 "WHERE timeframe = %s", (timeframe.name,)).fetchone()
                if row is not None and row[0] is not None:
                    packed = dataclasses.replace(packed, id_bounds=(int(row[0]),
                                                                    int(row[1]) + 1))
            return self._read_parallel(conn.engine, snapshot, pieces, where, packed)

    @staticmethod
    def _where(timeframe: Timeframe, instrument_ids: np.ndarray | None,
               start_ns: int | None, end_ns: int | None) -> str | None:
        parts = [f"timeframe = '{timeframe.name}'"]  # Timeframe names are [0-9]+[mhdw]
        if instrument_ids is not None:
            ids = np.unique(np.asarray(instrument_ids, dtype=np.int64))
            ids = ids[(ids >= -(2**31)) & (ids < 2**31)]
            if ids.shape[0] == 0:
                return None
            parts.append(f"instrument_id = ANY('{{{','.join(map(str, ids.tolist()))}}}'::int4[])")
        if start_ns is not None:
            parts.append(f"ts >= {literal_ts(-(-int(start_ns) // 1000) * 1000)}")
        if end_ns is not None:
            parts.append(f"ts <= {literal_ts(int(end_ns) // 1000 * 1000)}")
        return " AND ".join(parts)

    @staticmethod
    def _overlaps(leaf: Leaf, start_ns: int | None, end_ns: int | None) -> bool:
        if leaf.lo_ns is None or leaf.hi_ns is None:
            return True
        return ((start_ns is None or start_ns < leaf.hi_ns)
                and (end_ns is None or end_ns >= leaf.lo_ns))

    def _exportable_snapshot(self, conn: Connection, pg: psycopg.Connection[Any],
                             pieces: list[Leaf], rows: bool = True) -> str | None:
        """The caller's snapshot for helper connections, when they can see what it sees."""
        min_rows = _PARALLEL_MIN_ROWS * (1 if rows else _PACKS_PARALLEL_FACTOR)
        if (self.read_workers < 2 or len(pieces) < 2 or conn.in_nested_transaction()
                or sum(leaf.est_rows for leaf in pieces) < min_rows
                or (rows and not self.reader.native) or _spare_connections(conn.engine) < 2):
            return None
        # Uncommitted writes of this transaction (an xid) are invisible to other sessions.
        snapshot = scalar(pg, "SELECT CASE WHEN pg_current_xact_id_if_assigned() IS NULL "
                               "AND current_setting('transaction_isolation') <> 'serializable' "
                               "THEN pg_export_snapshot() END")
        return snapshot if snapshot and _SNAPSHOT_ID.match(snapshot) else None

    def _select(self, leaf: Leaf | None, where: str, *, ordered: bool) -> str:
        from signalfactory.adapters.storage.postgres_copy import OUT_COLUMNS

        clauses = [where]
        source = "bars" if leaf is None else leaf.source
        if leaf is not None and leaf.range_filter and leaf.lo_ns is not None:
            clauses.append(f"ts >= {literal_ts(leaf.lo_ns)}")
            if leaf.hi_ns is not None:
                clauses.append(f"ts < {literal_ts(leaf.hi_ns)}")
        order = " ORDER BY instrument_id, ts" if ordered else ""
        return (f"COPY (SELECT {OUT_COLUMNS} FROM {source} WHERE {' AND '.join(clauses)}"
                f"{order}) TO STDOUT (FORMAT binary)")

    def _read_ordered(self, pg: psycopg.Connection[Any], where: str,
                      packed: _PackRead | None = None) -> BarColumns:
        """The read on the caller's connection alone."""
        if packed is not None:
            return self._packs_on(pg, packed, None)
        return self._rows_ordered(pg, where)

    def _rows_ordered(self, pg: psycopg.Connection[Any], where: str) -> BarColumns:
        # JIT compilation costs seconds on these plans and buys nothing for a plain scan.
        pg.execute("SELECT set_config('jit', 'off', true)")
        return self.reader.fetch(pg, self._select(None, where, ordered=True))

    @staticmethod
    def _packs_on(pg: psycopg.Connection[Any], packed: _PackRead,
                  id_range: tuple[int, int] | None) -> BarColumns:
        sql = packs.select(packed.timeframe, packed.instrument_ids, packed.start_ns,
                           packed.end_ns, id_range)
        if sql is None:
            return BarColumns.empty()
        return packs.fetch(pg, sql, packed.start_ns, packed.end_ns)

    def _read_packs_parallel(self, engine: Engine, snapshot: str, workers: int,
                             packed: _PackRead) -> BarColumns:
        """Packs split by instrument id range over helper connections, then concatenated
        (each range comes back in key order, and the ranges are in order)."""
        if packed.id_bounds is None:
            return BarColumns.empty()
        lo, hi = packed.id_bounds
        cuts = [lo + (hi - lo) * k // workers for k in range(workers + 1)]
        ranges = [(a, b) for a, b in itertools.pairwise(cuts) if b > a]

        def part(id_range: tuple[int, int]) -> BarColumns:
            return self._on_helper(engine, snapshot,
                                   lambda pg: self._packs_on(pg, packed, id_range))

        with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
            chunks = list(pool.map(part, ranges))
        return BarColumns.concat([c for c in chunks if len(c)]) if any(
            len(c) for c in chunks) else BarColumns.empty()

    @staticmethod
    def _on_helper(engine: Engine, snapshot: str,
                   fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn`` on a pooled connection in a read-only transaction on ``snapshot``."""
        raw_conn = engine.raw_connection()
        try:
            pg = raw_conn.driver_connection
            if not isinstance(pg, psycopg.Connection):
                raise TypeError("the bars engine must use the psycopg (3) driver")
            pg.autocommit = True
            try:
                pg.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                pg.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                pg.execute("SET LOCAL jit = off")
                result = fn(pg)
                pg.execute("COMMIT")
                return result
            finally:
                if pg.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    pg.execute("ROLLBACK")
                pg.autocommit = False
        finally:
            raw_conn.close()

    def _read_parallel(self, engine: Engine, snapshot: str, pieces: list[Leaf],
                       where: str, packed: _PackRead | None = None) -> BarColumns:
        """The read over helper connections sharing the caller's snapshot."""
        workers = min(self.read_workers, len(pieces), _spare_connections(engine))
        if packed is not None:
            return self._read_packs_parallel(engine, snapshot, workers, packed)
        queues: list[list[int]] = [[] for _ in range(workers)]
        load = [0.0] * workers
        for index in sorted(range(len(pieces)), key=lambda i: -pieces[i].est_rows):
            target = load.index(min(load))  # largest first onto the least loaded connection
            queues[target].append(index)
            load[target] += pieces[index].est_rows + 1
        chunks: list[BarColumns] = [BarColumns.empty()] * len(pieces)

        def fetch_queue(pg: psycopg.Connection[Any], queue: list[int]) -> None:
            for index in queue:
                leaf = pieces[index]
                # Unfilled capacity costs nothing: pages are only mapped when written.
                capacity = min(int(leaf.est_rows * 1.02) + 1024, 1 << 27)
                chunks[index] = self.reader.fetch(
                    pg, self._select(leaf, where, ordered=False), capacity)

        def run(queue: list[int]) -> None:
            self._on_helper(engine, snapshot, lambda pg: fetch_queue(pg, queue))

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(run, queue) for queue in queues]:
                future.result()
        from signalfactory.adapters.storage.postgres_merge import assemble

        return assemble(chunks, [leaf.lo_ns is not None for leaf in pieces])

    def load(self, conn: Connection, timeframe: Timeframe, symbols: Mapping[int, str],
             instrument_ids: np.ndarray | None = None, start_ns: int | None = None,
             end_ns: int | None = None) -> BarUniverse:
        return self.read_columns(conn, timeframe, instrument_ids, start_ns,
                                 end_ns).to_universe(symbols)

    def timeframes(self, conn: Connection) -> list[str]:
        """Distinct timeframes by skipping along the primary key, not by scanning every bar."""
        pg = _driver(conn)
        with _transaction(pg):
            rows = pg.execute("""
                WITH RECURSIVE t AS (
                    (SELECT timeframe FROM bars ORDER BY timeframe LIMIT 1)
                    UNION ALL
                    SELECT (SELECT b.timeframe FROM bars b WHERE b.timeframe > t.timeframe
                            ORDER BY b.timeframe LIMIT 1)
                    FROM t WHERE t.timeframe IS NOT NULL)
                SELECT timeframe FROM t WHERE timeframe IS NOT NULL""").fetchall()
        return sorted(r[0] for r in rows)

    def fragmented(self, conn: Connection, timeframe: Timeframe) -> bool:
        """Never: bars live in one (partitioned) table."""
        return False

    def compact(self, conn: Connection, timeframe: Timeframe) -> bool:
        """Nothing to fold (see ``fragmented``)."""
        return False

    def count(self, conn: Connection, timeframe: Timeframe) -> int:
        pg = _driver(conn)
        with _transaction(pg):
            return int(scalar(pg, "SELECT count(*) FROM bars WHERE timeframe = %s",
                               (timeframe.name,)))

