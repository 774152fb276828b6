"""Engines for SQLite (WAL, the embedded default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and route them to the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite_url(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT and transactional
    # DDL; switch it off and let SQLAlchemy emit BEGIN itself (the documented recipe).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL lets readers (API, scans) proceed while a writer ingests; NORMAL sync is durable in
    # WAL mode against process crashes, which is what the kill tests check.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


_WRITE_TRANSACTION = "signalfactory_write_transaction"


def _write_transactions(engine: Engine) -> Callable[[], AbstractContextManager[sa.Connection]]:
    """``engine.begin()`` on SQLite takes the write lock up front (BEGIN IMMEDIATE).

    A deferred transaction that reads and then writes fails at once with "database is locked"
    when another connection committed in between (WAL cannot upgrade a stale snapshot and
    busy_timeout does not apply). ``engine.begin()`` is how this code base opens a transaction
    meant to write, so it waits its turn instead; ``engine.connect()`` reads stay deferred and
    never wait for a writer.
    """

    @contextmanager
    def begin() -> Iterator[sa.Connection]:
        with engine.connect() as conn:
            conn.execution_options(**{_WRITE_TRANSACTION: True})
            with conn.begin():
                yield conn

    return begin


def create_db_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5,
                     echo: bool = False) -> Engine:
    """An engine with the pragmas and pool settings this platform relies on.

    ``pool_size``/``max_overflow`` size the PostgreSQL pool (SIGNALFACTORY_DATABASE_POOL_SIZE
    and friends); SQLite opens a connection per thread and ignores them."""
    url = normalise_url(url)
    if is_sqlite_url(url):
        db_path = make_url(url).database
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, echo=echo, connect_args={"timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            immediate = conn.get_execution_options().get(_WRITE_TRANSACTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        # Replacing a method on one instance: mypy sees neither that nor the context manager
        # types as equal (Engine.begin is declared as a generator context manager).
        engine.begin = _write_transactions(engine)  # type: ignore[method-assign,assignment]
        return engine
    return sa.create_engine(url, echo=echo, pool_size=pool_size, max_overflow=max_overflow,
                            pool_pre_ping=True)
