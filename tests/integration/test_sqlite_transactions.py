"""SQLite write transactions wait for each other instead of failing "database is locked"."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import sqlalchemy as sa

from signalfactory.adapters.storage.db import create_db_engine


def test_read_then_write_transactions_run_one_after_another(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'tx.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (n INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (0)")
    errors: list[BaseException] = []

    def increment() -> None:
        # Read, pause (another writer commits meanwhile), write what was read plus one: a
        # deferred BEGIN fails here at once; a lost update would show in the total.
        try:
            with engine.begin() as conn:
                n = conn.exec_driver_sql("SELECT n FROM counter").scalar_one()
                time.sleep(0.05)
                conn.execute(sa.text("UPDATE counter SET n = :n"), {"n": n + 1})
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=increment) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar_one() == 8
    engine.dispose()


def test_reads_are_not_blocked_by_a_writer(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'tx.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    with engine.begin() as writer:
        writer.exec_driver_sql("INSERT INTO t VALUES (2)")
        started = time.monotonic()
        with engine.connect() as reader:  # WAL: the committed state, without waiting
            assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 1
        assert time.monotonic() - started < 1.0
    engine.dispose()


def test_plain_connections_stay_deferred(tmp_path: Path) -> None:
    statement = "SELECT 1"
    engine = create_db_engine(f"sqlite:///{tmp_path / 'tx.db'}")
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda _c, _cur, text, *_a: seen.append(text))
    with engine.connect() as conn:
        conn.exec_driver_sql(statement)
    with engine.begin() as conn:
        conn.exec_driver_sql(statement)
    assert seen == ["BEGIN", statement, "BEGIN IMMEDIATE", statement]
    engine.dispose()
