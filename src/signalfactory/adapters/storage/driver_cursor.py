"""Read statements run on the driver's own cursor: the per-request reads of hot paths.

``Connection.exec_driver_sql`` still builds an execution context and a cursor result per
statement, and on SQLite its first statement sends the explicit ``BEGIN`` (a statement of
its own). For the API key lookup and the signal page, about 90 us a request on SQLite of
the 1 ms the request costs. Here the statement goes to the pooled connection's driver
cursor and the driver's tuples come back as they are; SQLAlchemy still owns the connection
(checkout, reset on return, invalidation).

What the caller sees stays the same:

- a driver error becomes the SQLAlchemy exception ``exec_driver_sql`` would raise (so
  ``translated_errors`` turns it into the same ``TemporaryError`` or ``BadInputError``), and
  a connection the dialect reads as lost is invalidated, as SQLAlchemy does;
- outside a transaction SQLite runs each statement on its own (the pragmas switch the
  driver's implicit transactions off); PostgreSQL's driver opens one, which the pool's reset
  ends. A read of the key and one of the page were already two transactions before, so the
  two reads see no less than they did;
- while anything listens for statements on the engine (``before_cursor_execute``: tests,
  tracing), every statement goes through ``exec_driver_sql`` so that listeners see it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy.exc
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor

Row = Sequence[Any]


def fetch_all(conn: Connection, sql: str, params: Mapping[str, Any]) -> Sequence[Row]:
    """Every row of ``sql`` as the driver's tuples."""
    if conn.dispatch.before_cursor_execute:
        return conn.exec_driver_sql(sql, params).fetchall()
    return cast("Sequence[Row]", _run(conn, sql, params, first=False))


def fetch_first(conn: Connection, sql: str, params: Mapping[str, Any]) -> Row | None:
    """The first row of ``sql`` as the driver's tuple, or None."""
    if conn.dispatch.before_cursor_execute:
        return conn.exec_driver_sql(sql, params).first()
    return cast("Row | None", _run(conn, sql, params, first=True))


def _run(conn: Connection, sql: str, params: Mapping[str, Any], *, first: bool) -> object:
    dialect = conn.dialect
    dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
    pooled: DBAPIConnection = conn.connection
    cursor: DBAPICursor = pooled.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchone() if first else cursor.fetchall()
    except dbapi_error as exc:
        lost = dialect.is_disconnect(exc, pooled, cursor)  # type: ignore[arg-type]
        if lost:
            conn.invalidate(exc)
        raise sqlalchemy.exc.DBAPIError.instance(
            sql, params, exc, dbapi_error, connection_invalidated=lost,
            dialect=dialect) from exc
    finally:
        cursor.close()
