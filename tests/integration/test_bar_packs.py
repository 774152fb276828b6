"""PostgreSQL bar packs always equal the row bars: after ingest, appends, corrections, replace,
retention, writes around the store (then a repack), concurrent writers, and the migration.

The rows are read with plain SQL (not through the store), the packs by decoding every
``bar_packs`` row; both are compared exactly, and every pack must sit in the bucket of its bars.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from signalfactory.adapters.storage import migrate
from signalfactory.adapters.storage import postgres_packs as packs
from signalfactory.adapters.storage.postgres_bars import PostgresBarStore
from signalfactory.adapters.storage.unit_of_work import sql_database
from signalfactory.bootstrap import build_platform
from signalfactory.domain.bar_columns import BarColumns
from signalfactory.domain.bars import FIELDS
from signalfactory.domain.timeframes import Timeframe
from signalfactory.ops.retention import apply_retention
from signalfactory.services.platform import Platform
from tests.conftest import create_pg_database, drop_pg_database
from tests.helpers import engine_of

pytestmark = pytest.mark.postgres

DAY = 86_400 * 10**9
D1, M1 = Timeframe.parse("1d"), Timeframe.parse("1m")
COLUMNS = ("instrument_id", "ts", *FIELDS)


@pytest.fixture
def pg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    url = create_pg_database()
    monkeypatch.setenv("SIGNALFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIGNALFACTORY_DATABASE_URL", url)
    platform = build_platform(migrate_db=True)
    try:
        yield platform
    finally:
        platform.close()
        drop_pg_database(url)


def _store(platform: Platform) -> PostgresBarStore:
    store = sql_database(platform.database).bar_store
    assert isinstance(store, PostgresBarStore)
    return store


def _bars(ids: list[int], start: str, n: int, seed: int, step: int = DAY) -> BarColumns:
    rng = np.random.default_rng(seed)
    first = int(np.datetime64(start, "ns").astype(np.int64))
    inst = np.repeat(np.asarray(ids, dtype=np.int64), n)
    ts = np.tile(first + np.arange(n, dtype=np.int64) * step, len(ids))
    close = 50 + rng.random(inst.shape[0]) * 100
    return BarColumns(inst, ts, close * 0.99, close * 1.01, close * 0.98, close,
                      rng.integers(1, 10**6, close.shape[0]).astype(np.float64))


def _write(platform: Platform, cols: BarColumns, tf: Timeframe = D1) -> None:
    with engine_of(platform).begin() as conn:
        _store(platform).write(conn, tf, cols)


def _raw(platform: Platform) -> psycopg.Connection[Any]:
    url = engine_of(platform).url.set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


def _rows(platform: Platform, tf: Timeframe) -> BarColumns:
    """The row bars of ``tf`` by plain SQL, in key order."""
    with engine_of(platform).connect() as conn:
        got = conn.exec_driver_sql(
            "SELECT instrument_id, (extract(epoch FROM ts) * 1000000)::int8 * 1000, open, high, "
            "low, close, volume FROM bars WHERE timeframe = %(tf)s ORDER BY instrument_id, ts",
            {"tf": tf.name}).all()
    if not got:
        return BarColumns.empty()
    arrays = list(zip(*got, strict=True))
    return BarColumns(np.array(arrays[0], dtype=np.int64), np.array(arrays[1], dtype=np.int64),
                      *(np.array(a, dtype=np.float64) for a in arrays[2:]))


def _packed(platform: Platform, tf: Timeframe) -> BarColumns:
    """Every pack of ``tf`` decoded; each must hold its own bucket's bars, none empty."""
    with engine_of(platform).connect() as conn:
        got = conn.exec_driver_sql(
            "SELECT instrument_id, bucket, bars, data FROM bar_packs WHERE timeframe = %(tf)s "
            "ORDER BY instrument_id, bucket", {"tf": tf.name}).all()
    cols = packs.unpack([r[0] for r in got], [bytes(r[3]) for r in got])
    counts = [r[2] for r in got]
    assert all(c > 0 for c in counts), "an empty pack (a placeholder) was left behind"
    assert sum(counts) == len(cols)
    buckets = np.repeat(np.array([r[1] for r in got], dtype=np.int64), counts)
    np.testing.assert_array_equal(buckets, packs.buckets_of(cols.ts, tf))
    return cols


def _assert_same(got: BarColumns, want: BarColumns) -> None:
    assert len(got) == len(want)
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def _assert_packs_equal_rows(platform: Platform, *tfs: Timeframe) -> None:
    for tf in tfs:
        _assert_same(_packed(platform, tf), _rows(platform, tf))


def _current(platform: Platform) -> bool:
    with engine_of(platform).connect() as conn:
        return _store(platform).packs_current(conn)


def test_packs_follow_ingest_appends_corrections_and_replace(pg: Platform) -> None:
    first = _bars([1, 2, 3], "2019-11-01", 500, seed=1)   # new yearly partitions
    _write(pg, first)
    _assert_packs_equal_rows(pg, D1)
    _write(pg, _bars([2, 4], "2021-01-10", 200, seed=2))  # appends into an existing year
    _assert_packs_equal_rows(pg, D1)
    fix = _bars([1, 3], "2020-06-01", 40, seed=3)         # corrections of stored bars
    same = first.take((first.instrument_id == 2) & (first.ts >= fix.ts[0])
                      & (first.ts <= fix.ts[-1]))          # identical: skipped by the upsert
    _write(pg, BarColumns.concat([fix, same]).latest_wins())
    _assert_packs_equal_rows(pg, D1)
    minutes = _bars([1, 2], "2020-12-31T08:00", 1000, seed=4, step=60 * 10**9)  # across a year
    _write(pg, minutes, M1)
    _write(pg, _bars([2], "2020-12-31T23:30", 90, seed=5, step=60 * 10**9), M1)
    _assert_packs_equal_rows(pg, D1, M1)
    assert len(np.unique(packs.buckets_of(minutes.ts, M1))) >= 3
    keep = _bars([7], "2018-03-01", 30, seed=6)
    with engine_of(pg).begin() as conn:
        _store(pg).replace(conn, D1, keep)
    _assert_packs_equal_rows(pg, D1, M1)
    _assert_same(_rows(pg, D1), keep)
    assert _current(pg)


def test_reads_come_from_the_packs_and_filter_like_the_rows(
        pg: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(pg)
    cols = _bars(list(range(1, 30)), "2019-06-01", 800, seed=7)
    _write(pg, cols)
    _write(pg, _bars(list(range(10, 20)), "2020-02-01", 30, seed=8))
    want = _rows(pg, D1)

    def no_rows(*_args: Any) -> BarColumns:
        raise AssertionError("read the row bars although the packs are current")

    monkeypatch.setattr(store, "_rows_ordered", no_rows)
    monkeypatch.setattr(store.reader, "fetch", no_rows)
    split: list[int] = []
    original = store._read_packs_parallel

    def spy(*args: Any) -> BarColumns:
        split.append(args[2])  # helper connections used
        return original(*args)

    monkeypatch.setattr(store, "_read_packs_parallel", spy)
    ids = np.array([3, 11, 29, 4000], dtype=np.int64)
    start, end = int(cols.ts[100]) + 1, int(cols.ts[650])
    for workers, spare in ((1, None), (2, 0)):  # one connection; helper connections
        store.read_workers = workers
        if spare is not None:
            monkeypatch.setattr("signalfactory.adapters.storage.postgres_bars._PARALLEL_MIN_ROWS",
                                spare)
        with engine_of(pg).connect() as conn:
            _assert_same(store.read_columns(conn, D1), want)
            _assert_same(store.read_columns(conn, D1, ids, start, end),
                         want.filter(ids, start, end))
            assert len(store.read_columns(conn, D1, np.array([2**40]))) == 0
            assert len(store.read_columns(conn, M1)) == 0
    assert split and set(split) == {2}, "the helper-connection read of the packs never ran"


def test_writes_around_the_store_fall_back_to_rows_until_a_repack(pg: Platform) -> None:
    _write(pg, _bars([1, 2], "2020-01-01", 100, seed=9))
    with _raw(pg) as conn:  # a bar corrected with plain SQL
        conn.execute("UPDATE bars SET close = -1 WHERE instrument_id = 2 AND "
                     "ts = '2020-02-01 00:00:00+00'")
    assert not _current(pg)
    with engine_of(pg).connect() as conn:
        got = _store(pg).read_columns(conn, D1)
    _assert_same(got, _rows(pg, D1))
    assert -1.0 in got.close.tolist()
    _write(pg, _bars([3], "2020-03-01", 10, seed=10))  # store writes keep packs, still stale
    assert not _current(pg)
    with engine_of(pg).begin() as conn:
        _store(pg).repack(conn)
    assert _current(pg)
    _assert_packs_equal_rows(pg, D1)


def test_retention_prunes_packs_with_the_rows(pg: Platform) -> None:
    now = datetime(2026, 6, 15, tzinfo=UTC)
    start = np.datetime64((now - timedelta(days=400)).replace(tzinfo=None), "s")
    _write(pg, _bars([1, 2], str(start), 400, seed=11))
    _write(pg, _bars([1], str(start), 5000, seed=12, step=120 * 10**9), M1)
    with _raw(pg) as conn:  # and one written around the store: retention repacks first
        conn.execute("DELETE FROM bars WHERE instrument_id = 2 AND ts > "
                     "'2026-06-01 00:00:00+00'")
    report = apply_retention(pg, now=now, config={"bars": {"1d": 100, "1m": 396}})
    assert {(i.timeframe, i.rows > 0) for i in report.items} == {("1d", True), ("1m", True)}
    _assert_packs_equal_rows(pg, D1, M1)
    assert _current(pg)
    assert int(_rows(pg, D1).ts.min()) >= int(np.datetime64("2026-03-07", "ns").astype(np.int64))


@pytest.mark.timeout(120)
def test_concurrent_writers_leave_packs_equal_to_rows(pg: Platform) -> None:
    """Four writers on the same packs, in transactions held open long enough to interleave:
    new bars on days no other writer touches (nothing but the pack lock orders them), and
    corrections of the same bars (the row locks order those too)."""
    _write(pg, _bars(list(range(1, 9)), "2020-01-01", 400, seed=13))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for round_ in range(3):
                ids = sorted({1 + (k + round_) % 8, 1 + (k * 3 + round_) % 8, 5})
                if round_ == 1:
                    cols = _bars(ids, f"2020-0{2 + k}-01", 120, seed=100 + 10 * k + round_)
                else:  # every fourth day from an offset of its own: disjoint rows
                    day = np.datetime64("2020-06-01") + k + round_ * 160
                    cols = _bars(ids, str(day), 40, seed=100 + 10 * k + round_, step=4 * DAY)
                barrier.wait(timeout=30)
                with engine_of(pg).begin() as conn:
                    _store(pg).write(conn, D1, cols)
                    conn.exec_driver_sql("SELECT pg_sleep(0.05)")
        except BaseException as exc:  # reported by the test thread below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not errors, errors
    _assert_packs_equal_rows(pg, D1)


def test_the_migration_packs_existing_bars(pg: Platform) -> None:
    engine = engine_of(pg)
    migrate.downgrade(engine, "0015")
    cols = _bars([1, 2, 3], "2020-05-01", 300, seed=14)
    _write(pg, cols)  # the store without packs: rows only
    migrate.upgrade(engine)
    _assert_packs_equal_rows(pg, D1)
    _assert_same(_packed(pg, D1), cols)
    assert _current(pg)
