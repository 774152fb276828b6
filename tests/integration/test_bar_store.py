"""The bar store on both backends: the columnar files (SQLite) and PostgreSQL partitions.

The same behaviour is asserted for both through the ``platform`` fixture; PostgreSQL-only tests
check the partition layout and the two read strategies (parallel per-partition streams merged
in Python, and one ordered COPY) against each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from signalfactory.adapters.storage import postgres_bars
from signalfactory.adapters.storage.postgres_copy import CopyReader
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.bootstrap import build_platform
from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import FIELDS
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.platform import Platform
from tests.conftest import create_pg_database, drop_pg_database
from tests.helpers import engine_of

DAY = 86_400 * 10**9
D1 = Timeframe.parse("1d")
H1 = Timeframe.parse("1h")
COLUMNS = ("instrument_id", "ts", *FIELDS)


def _bars(ids: list[int], start: str, days: int, seed: int) -> BarColumns:
    """Daily bars for ``ids`` (sorted), every calendar day from ``start``."""
    rng = np.random.default_rng(seed)
    first = int(np.datetime64(start, "ns").astype(np.int64))
    ts1 = first + np.arange(days, dtype=np.int64) * DAY
    inst = np.repeat(np.asarray(ids, dtype=np.int64), days)
    ts = np.tile(ts1, len(ids))
    close = 50 + rng.random(inst.shape[0]) * 100
    open_ = close * (1 + rng.normal(0, 0.01, close.shape[0]))
    return BarColumns(inst, ts, open_, np.maximum(open_, close) * 1.01,
                      np.minimum(open_, close) * 0.99, close,
                      rng.integers(1, 10**6, close.shape[0]).astype(np.float64))


def store_of(platform: Platform) -> Any:
    """The platform's bar store (this module tests the stores below the repositories)."""
    return sql_database(platform.database).bar_store


def _write(platform: Platform, cols: BarColumns, tf: Timeframe = D1) -> None:
    with engine_of(platform).begin() as conn:
        store_of(platform).write(conn, tf, cols)


def _read(platform: Platform, tf: Timeframe = D1, **kw: Any) -> BarColumns:
    with engine_of(platform).connect() as conn:
        return store_of(platform).read_columns(conn, tf, **kw)


def _assert_same(got: BarColumns, want: BarColumns) -> None:
    assert len(got) == len(want)
    for name in COLUMNS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)


def _checksum(platform: Platform) -> str:
    digest = hashlib.sha256()
    with engine_of(platform).connect() as conn:
        for name in sorted(store_of(platform).timeframes(conn)):
            cols = store_of(platform).read_columns(conn, Timeframe.parse(name))
            digest.update(name.encode())
            for col in COLUMNS:
                digest.update(np.ascontiguousarray(getattr(cols, col)).tobytes())
    return digest.hexdigest()


def _merge_newest(old: BarColumns, new: BarColumns) -> BarColumns:
    return BarColumns.concat([old, new]).latest_wins()


def test_round_trip_is_exact_and_sorted(platform: Platform) -> None:
    cols = _bars([3, 7, 11], "2019-11-20", 500, seed=1)  # spans 2019..2021
    _write(platform, cols)
    got = _read(platform)
    _assert_same(got, cols)
    assert got.is_sorted_unique()
    with engine_of(platform).connect() as conn:
        uni = store_of(platform).load(conn, D1, {3: "AAA", 7: "BBB", 11: "CCC"})
        assert store_of(platform).count(conn, D1) == len(cols)
        assert store_of(platform).timeframes(conn) == ["1d"]
    assert uni.symbols == ("AAA", "BBB", "CCC")
    assert list(uni.offsets) == [0, 500, 1000, 1500]
    np.testing.assert_array_equal(uni.close, cols.close)


def test_overlapping_write_replaces_values_without_duplicates(platform: Platform) -> None:
    first = _bars([1, 2, 3], "2020-12-01", 100, seed=2)
    second = _bars([2, 3, 4], "2021-01-20", 100, seed=3)  # overlaps ids 2, 3 for 50 days
    _write(platform, first)
    _write(platform, second)
    got = _read(platform)
    want = _merge_newest(first, second)
    assert got.is_sorted_unique()
    _assert_same(got, want)
    # The overlapping bars carry the second write's values, the rest the first's.
    overlap = (got.instrument_id == 2) & (got.ts >= second.ts[0]) & (got.ts <= second.ts[99])
    np.testing.assert_array_equal(got.close[overlap], second.close[:100])
    # Re-writing identical bars is idempotent.
    _write(platform, second)
    _assert_same(_read(platform), want)


def test_rollback_leaves_the_store_exactly_as_before(platform: Platform) -> None:
    _write(platform, _bars([1, 2], "2020-06-01", 300, seed=4))
    before = _checksum(platform)
    change = BarColumns.concat([_bars([2], "2021-01-01", 200, seed=5),      # overlap
                                _bars([9], "2016-03-01", 900, seed=6)])     # new years
    with pytest.raises(RuntimeError, match="abort"), engine_of(platform).begin() as conn:
        store_of(platform).write(conn, D1, change)
        store_of(platform).write(conn, H1, _bars([1], "2020-01-01", 10, seed=7))
        raise RuntimeError("abort after writing")
    assert _checksum(platform) == before
    with engine_of(platform).connect() as conn:
        assert store_of(platform).timeframes(conn) == ["1d"]


def _columnar(platform: Platform) -> Any:
    from signalfactory.adapters.storage.columnar import ColumnarBarStore

    store = store_of(platform)
    if not isinstance(store, ColumnarBarStore):
        pytest.skip("segment files are the SQLite bar store's; PostgreSQL keeps a table")
    return store


def test_a_segment_is_synced_under_its_name_before_its_registration_commits(
        platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync runs in a thread while the transaction goes on; the commit waits for it, and
    a read in the same transaction waits for it too."""
    import time

    from signalfactory.adapters.storage import columnar

    store = _columnar(platform)
    real = columnar._sync_and_rename

    def slow(tmp: Path, final: Path) -> None:
        time.sleep(0.3)
        real(tmp, final)

    monkeypatch.setattr(columnar, "_sync_and_rename", slow)
    cols = _bars([1, 2], "2020-06-01", 30, seed=8)
    with engine_of(platform).begin() as conn:
        store.write(conn, D1, cols)
        _assert_same(store.read_columns(conn, D1), cols)  # its own bars, synced first
    with engine_of(platform).connect() as conn:
        (path, digest), = conn.execute(sa.text("SELECT path, sha256 FROM bar_segments"))
    segment = store.root / path
    assert hashlib.sha256(segment.read_bytes()).hexdigest() == digest
    assert not list(segment.parent.glob("*.tmp"))


def test_a_segment_that_cannot_be_synced_commits_nothing(
        platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    from signalfactory.adapters.storage import columnar

    store = _columnar(platform)
    _write(platform, _bars([1], "2020-06-01", 10, seed=9))
    before = _checksum(platform)

    def failing(tmp: Path, final: Path) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(columnar, "_sync_and_rename", failing)
    with pytest.raises(OSError, match="no space"):
        _write(platform, _bars([2], "2020-06-01", 10, seed=10))
    assert _checksum(platform) == before
    with engine_of(platform).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM bar_segments")).scalar() == 1
    assert len(list((store.root / "1d").glob("*.arrow"))) == 1


def _segments(platform: Platform) -> list[tuple[str, int]]:
    with engine_of(platform).connect() as conn:
        return [(str(r.path), int(r.rows)) for r in conn.execute(sa.text(
            "SELECT path, rows FROM bar_segments WHERE timeframe = '1d' ORDER BY id"))]


def _fragment(platform: Platform) -> BarColumns:
    """A large segment, then nine one-day writes (the second rewrites a stored bar); the
    bars as a read must see them."""
    want = _bars([1, 2, 3], "2020-01-01", 200, seed=20)
    _write(platform, want)
    for day in range(9):
        # day 1 overwrites a bar of the large segment, the others continue the series
        one = _bars([1, 2, 3], "2020-07-10" if day == 1 else f"2020-08-{day + 1:02d}", 1,
                    seed=21 + day)
        _write(platform, one)
        want = _merge_newest(want, one)
    return want


def test_compaction_folds_only_the_small_recent_segments(platform: Platform) -> None:
    want = _fragment(platform)
    with engine_of(platform).begin() as conn:
        assert store_of(platform).fragmented(conn, D1) == (platform.database.dialect
                                                           == "sqlite")
        folded = store_of(platform).compact(conn, D1)
    _assert_same(_read(platform), want)
    if not folded:  # PostgreSQL: one table, nothing to fold
        return
    store = _columnar(platform)
    segments = _segments(platform)
    # the large segment is left as it was; the nine small ones became one
    assert [rows for _path, rows in segments] == [600, 27]
    assert sorted(p.name for p in (store.root / "1d").glob("*.arrow")) == sorted(
        Path(path).name for path, _rows in segments)
    with engine_of(platform).begin() as conn:
        assert not store.fragmented(conn, D1)
        assert not store.compact(conn, D1)
    # a later write of a bar still wins over the merged segment and the large one
    again = _bars([1, 2], "2020-07-10", 1, seed=40)
    _write(platform, again)
    _assert_same(_read(platform), _merge_newest(want, again))


def test_a_rolled_back_compaction_leaves_the_store_as_it_was(platform: Platform) -> None:
    want = _fragment(platform)
    before, segments = _checksum(platform), _segments(platform)
    with pytest.raises(RuntimeError, match="abort"), engine_of(platform).begin() as conn:
        store_of(platform).compact(conn, D1)
        _assert_same(store_of(platform).read_columns(conn, D1), want)  # its own result
        raise RuntimeError("abort after compacting")
    assert _checksum(platform) == before and _segments(platform) == segments
    if platform.database.dialect == "sqlite":
        assert len(list((_columnar(platform).root / "1d").glob("*.arrow"))) == len(segments)


@pytest.mark.parametrize(("rows", "start"), [
    ([250_000, *[500] * 8], 1),               # the history stays, the live tail merges
    ([250_000, 4_000, *[500] * 7], 1),        # a merged tail joins the next merge
    ([250_000, 60_000, *[500] * 7], 2),       # ... until it is large next to the new rows
    ([1_000, *[500] * 8], 0),                 # a small history is folded in too
    ([4**k for k in range(9, 0, -1)], 0),     # tiers each 4x the next: one cascade
    ([10**9, 10**8, 10**7, 10**6, 10**5, 10**4, 10**3, 10**2, 1], 7),  # the newest two
])
def test_the_merged_tail_is_the_segments_small_next_to_it(rows: list[int],
                                                          start: int) -> None:
    from signalfactory.adapters.storage.columnar import _tail_start

    assert _tail_start(rows) == start


def test_filters_by_instrument_and_time_range(platform: Platform) -> None:
    cols = _bars([1, 2, 3, 4], "2018-12-15", 60, seed=8)
    _write(platform, cols)
    ids = np.array([2, 4], dtype=np.int64)
    start, end = int(cols.ts[10]), int(cols.ts[30])  # inclusive bounds on exact bar times
    cases: list[dict[str, Any]] = [
        {"instrument_ids": ids}, {"start_ns": start}, {"end_ns": end},
        {"instrument_ids": ids, "start_ns": start, "end_ns": end},
        {"instrument_ids": np.array([99], dtype=np.int64)}, {"start_ns": end, "end_ns": start},
    ]
    for kw in cases:
        want = cols.filter(kw.get("instrument_ids"), kw.get("start_ns"), kw.get("end_ns"))
        _assert_same(_read(platform, **kw), want)
    got = _read(platform, instrument_ids=ids, start_ns=start, end_ns=end)
    assert set(got.instrument_id.tolist()) == {2, 4}
    assert got.ts.min() == start and got.ts.max() == end


def test_replace_makes_cols_the_whole_timeframe(platform: Platform) -> None:
    _write(platform, _bars([1, 2, 3], "2020-01-01", 400, seed=9))
    _write(platform, _bars([1], "2020-01-01", 24, seed=10), H1)
    kept = _bars([2, 5], "2020-06-01", 100, seed=11)
    with engine_of(platform).begin() as conn:
        store_of(platform).replace(conn, D1, kept)
    _assert_same(_read(platform), kept)
    assert len(_read(platform, H1)) == 24  # other timeframes untouched
    with engine_of(platform).begin() as conn:
        store_of(platform).replace(conn, D1, BarColumns.empty())
        assert store_of(platform).count(conn, D1) == 0


def test_empty_store_reads(platform: Platform) -> None:
    got = _read(platform)
    assert len(got) == 0
    assert got.ts.dtype == np.int64 and got.close.dtype == np.float64
    with engine_of(platform).connect() as conn:
        assert store_of(platform).timeframes(conn) == []
        assert store_of(platform).count(conn, D1) == 0
        assert store_of(platform).load(conn, D1, {}).n_instruments == 0
    with engine_of(platform).begin() as conn:
        assert store_of(platform).write(conn, D1, BarColumns.empty()) == 0


def test_several_timeframes_are_kept_apart(platform: Platform) -> None:
    daily = _bars([1, 2], "2021-03-01", 30, seed=12)
    hourly_ts = int(np.datetime64("2021-03-01", "ns").astype(np.int64)) + np.arange(48) * (
        3600 * 10**9)
    hourly = BarColumns(np.ones(48, np.int64), hourly_ts, *(np.linspace(1, 2, 48) for _ in FIELDS))
    _write(platform, daily)
    _write(platform, hourly, H1)
    with engine_of(platform).connect() as conn:
        assert store_of(platform).timeframes(conn) == ["1d", "1h"]
    _assert_same(_read(platform), daily)
    _assert_same(_read(platform, H1), hourly)


# -- PostgreSQL only -----------------------------------------------------------------------

def _partitions(platform: Platform) -> dict[str, str]:
    with engine_of(platform).connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'bars'::regclass")
        return {name: bound for name, bound in rows}


@pytest.fixture
def pg_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """A platform on a fresh PostgreSQL database (skips, visibly, when there is none)."""
    url = create_pg_database()
    monkeypatch.setenv("SIGNALFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIGNALFACTORY_DATABASE_URL", url)
    platform = build_platform(migrate_db=True)
    try:
        assert isinstance(store_of(platform), postgres_bars.PostgresBarStore)
        yield platform
    finally:
        platform.close()
        drop_pg_database(url)


def _physically_sorted(platform: Platform, partition: str) -> bool:
    """Whether a partition's heap (what a sequential scan returns) is in key order."""
    with engine_of(platform).connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT instrument_id, ts FROM {partition} WHERE timeframe = '1d'").all()
    return rows == sorted(rows)


@pytest.mark.postgres
def test_yearly_partitions_are_created_on_demand(pg_platform: Platform) -> None:
    assert set(_partitions(pg_platform)) == {"bars_default"}
    _write(pg_platform, _bars([1, 2], "2017-12-25", 800, seed=13))  # 2017..2020
    parts = _partitions(pg_platform)
    assert set(parts) == {"bars_default", "bars_y2017", "bars_y2018", "bars_y2019",
                          "bars_y2020"}
    assert "2018-01-01" in parts["bars_y2018"] and "2019-01-01" in parts["bars_y2018"]
    # An existing year takes new bars in place; only a new year adds a partition.
    _write(pg_platform, _bars([3], "2020-06-01", 250, seed=14))  # 2020..2021
    assert set(_partitions(pg_platform)) == set(parts) | {"bars_y2021"}
    with engine_of(pg_platform).connect() as conn:
        in_default = conn.exec_driver_sql("SELECT count(*) FROM bars_default").scalar_one()
        in_2021 = conn.exec_driver_sql("SELECT count(*) FROM bars_y2021").scalar_one()
    assert in_default == 0
    assert in_2021 == 250 - 214  # 2020-06-01 + 214 days is 2021-01-01


@pytest.mark.postgres
def test_rows_in_the_default_partition_are_moved_out(pg_platform: Platform) -> None:
    with engine_of(pg_platform).begin() as conn:  # a bar written around the store
        conn.exec_driver_sql(
            "INSERT INTO bars VALUES (1, '1d', '2012-05-01 00:00:00+00', 1, 2, 0.5, 1.5, 10)")
    assert _read(pg_platform).close.tolist() == [1.5]
    cols = _bars([1], "2012-04-01", 60, seed=15)  # covers 2012-05-01 again: newest wins
    _write(pg_platform, cols)
    assert "bars_y2012" in _partitions(pg_platform)
    with engine_of(pg_platform).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM bars_default").scalar_one() == 0
    _assert_same(_read(pg_platform), cols)


@pytest.mark.postgres
def test_rollback_drops_partitions_it_created(pg_platform: Platform) -> None:
    _write(pg_platform, _bars([1], "2020-03-01", 10, seed=16))
    before = _partitions(pg_platform)
    with pytest.raises(RuntimeError), engine_of(pg_platform).begin() as conn:
        store_of(pg_platform).write(conn, D1, _bars([1], "2005-01-01", 900, seed=17))
        raise RuntimeError("abort")
    assert _partitions(pg_platform) == before


@pytest.mark.postgres
@pytest.mark.parametrize("strategy", ["parallel", "ordered"])
def test_read_strategies_agree_after_updates(pg_platform: Platform, strategy: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = store_of(pg_platform)
    assert isinstance(store, postgres_bars.PostgresBarStore)
    if strategy == "parallel":
        monkeypatch.setattr(postgres_bars, "_PARALLEL_MIN_ROWS", 0)
    else:
        monkeypatch.setattr(store, "read_workers", 1)
    used: list[str] = []
    for name in ("_read_parallel", "_read_ordered"):
        original = getattr(store, name)

        def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
            used.append(_name)
            return _original(*args)

        monkeypatch.setattr(store, name, spy)
    base = _bars(list(range(1, 41)), "2019-10-01", 700, seed=18)
    _write(pg_platform, base)
    with engine_of(pg_platform).begin() as conn:  # statistics make the leaf size estimates real
        conn.exec_driver_sql("ANALYZE bars")
    # Updates move rows inside the heap, so those partitions no longer stream in key order.
    change = _bars(list(range(5, 30)), "2020-02-01", 90, seed=19)
    _write(pg_platform, change)
    assert _physically_sorted(pg_platform, "bars_y2019")
    assert not _physically_sorted(pg_platform, "bars_y2020")
    want = _merge_newest(base, change)
    _assert_same(_read(pg_platform), want)
    assert used and set(used) == {f"_read_{strategy}"}
    ids = np.array([2, 6, 33], dtype=np.int64)
    start, end = int(base.ts[100]), int(base.ts[600])
    _assert_same(_read(pg_platform, instrument_ids=ids, start_ns=start, end_ns=end),
                 want.filter(ids, start, end))


@pytest.mark.postgres
def test_a_writing_transaction_reads_its_own_bars(pg_platform: Platform,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_bars, "_PARALLEL_MIN_ROWS", 0)  # would prefer helper conns
    _write(pg_platform, _bars([1, 2], "2020-01-01", 200, seed=20))
    extra = _bars([3], "2021-05-01", 50, seed=21)
    with engine_of(pg_platform).begin() as conn:
        store_of(pg_platform).write(conn, D1, extra)
        got = store_of(pg_platform).read_columns(conn, D1)
        assert len(got) == 450 and 3 in set(got.instrument_id.tolist())


@pytest.mark.postgres
def test_a_snapshot_is_shared_by_the_helper_connections(pg_platform: Platform,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_bars, "_PARALLEL_MIN_ROWS", 0)
    first = _bars([1, 2], "2019-01-01", 800, seed=22)
    _write(pg_platform, first)
    with engine_of(pg_platform).connect().execution_options(
            isolation_level="REPEATABLE READ") as conn:
        _assert_same(store_of(pg_platform).read_columns(conn, D1), first)
        _write(pg_platform, _bars([5], "2019-06-01", 500, seed=23))  # committed meanwhile
        # The same transaction still sees exactly what it saw, on every helper connection.
        _assert_same(store_of(pg_platform).read_columns(conn, D1), first)
    assert len(_read(pg_platform)) == 2100


@pytest.mark.postgres
def test_sub_microsecond_timestamps_are_refused(pg_platform: Platform) -> None:
    cols = _bars([1], "2020-01-01", 3, seed=24)
    bad = BarColumns(cols.instrument_id, cols.ts + 1, cols.open, cols.high, cols.low,
                     cols.close, cols.volume)
    with pytest.raises(BadInputError, match="microseconds"), engine_of(pg_platform).begin() as conn:
        store_of(pg_platform).write(conn, D1, bad)
    with engine_of(pg_platform).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM bars")).scalar_one() == 0


@pytest.mark.postgres
def test_a_key_committed_after_the_overlap_probe_still_upserts(
        pg_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """A concurrent writer can add keys between the probe and the COPY: the plain COPY then
    fails on the primary key and the bars are merged through the staging table instead."""
    store = store_of(pg_platform)
    assert isinstance(store, postgres_bars.PostgresBarStore)
    first = _bars([1, 2], "2020-01-01", 100, seed=25)
    _write(pg_platform, first)
    monkeypatch.setattr(store, "_overlapping",
                        lambda _pg, _tf, cols: np.zeros(len(cols), dtype=bool))
    second = _bars([2, 3], "2020-02-01", 100, seed=26)
    _write(pg_platform, second)
    _assert_same(_read(pg_platform), _merge_newest(first, second))


@pytest.mark.postgres
def test_an_unpartitioned_bars_table_works_too(pg_platform: Platform) -> None:
    """The path a TimescaleDB hypertable takes (no partitions managed by the store), on a plain
    table: the test server has no TimescaleDB to try the hypertable itself."""
    with engine_of(pg_platform).begin() as conn:
        conn.exec_driver_sql("DROP TABLE bars")
        conn.exec_driver_sql(
            "CREATE TABLE bars (instrument_id integer NOT NULL, timeframe varchar(8) NOT NULL, "
            "ts timestamptz NOT NULL, open float8 NOT NULL, high float8 NOT NULL, "
            "low float8 NOT NULL, close float8 NOT NULL, volume float8 NOT NULL, "
            "CONSTRAINT pk_bars PRIMARY KEY (timeframe, instrument_id, ts))")
    first = _bars([1, 2], "2019-06-01", 400, seed=27)
    second = _bars([2, 3], "2020-01-01", 100, seed=28)
    _write(pg_platform, first)
    _write(pg_platform, second)
    _assert_same(_read(pg_platform), _merge_newest(first, second))
    assert set(_partitions(pg_platform)) == set()


@pytest.mark.postgres
def test_reads_work_without_the_native_copy_reader(pg_platform: Platform) -> None:
    """Where libpq cannot be located (not Linux, unusual builds) rows pass through psycopg."""
    store = store_of(pg_platform)
    assert isinstance(store, postgres_bars.PostgresBarStore)
    assert store.reader.native  # the fast path is what the other tests exercise here
    cols = _bars([1, 2, 3], "2020-11-01", 120, seed=29)
    _write(pg_platform, cols)
    store.reader._fns = None
    assert not store.reader.native
    _assert_same(_read(pg_platform), cols)
    change = _bars([2], "2021-01-15", 10, seed=30)  # the overlap read-back path too
    _write(pg_platform, change)
    _assert_same(_read(pg_platform), _merge_newest(cols, change))


@pytest.mark.postgres
def test_copy_errors_surface_and_leave_the_connection_usable(pg_platform: Platform) -> None:
    _write(pg_platform, _bars([1, 2, 3], "2020-01-01", 2000, seed=31))
    reader = CopyReader()
    assert reader.native
    with engine_of(pg_platform).connect() as conn:
        pg = conn.connection.driver_connection
        assert isinstance(pg, psycopg.Connection)
        # A server error after thousands of rows were streamed.
        with pytest.raises(psycopg.errors.DivisionByZero):
            reader.fetch(pg, "COPY (SELECT instrument_id, ts, open, high, low, close, "
                             "volume / (3000 - row_number() OVER ()) FROM bars) "
                             "TO STDOUT (FORMAT binary)")
        pg.rollback()
        # Rows that are not bars (a column of another type) are refused, not misread.
        with pytest.raises(psycopg.DataError, match="layout"):
            reader.fetch(pg, "COPY (SELECT instrument_id, ts, open, high, low, close, "
                             "volume::int4 FROM bars) TO STDOUT (FORMAT binary)")
        pg.rollback()
        assert pg.execute("SELECT count(*) FROM bars").fetchone() == (6000,)
