"""Reads on the driver's cursor (adapters/storage/driver_cursor.py): the rows, errors and
statement listeners ``exec_driver_sql`` gives. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from signalfactory.adapters.storage.db import create_db_engine
from signalfactory.adapters.storage.driver_cursor import fetch_all, fetch_first
from signalfactory.adapters.storage.unit_of_work import translated_errors
from signalfactory.domain.errors import BadInputError


@pytest.fixture
def engine(database_url: str) -> Any:
    engine = create_db_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE pairs (k INTEGER PRIMARY KEY, v TEXT)"))
        conn.execute(sa.text("INSERT INTO pairs VALUES (1, 'one'), (2, 'two'), (3, NULL)"))
    yield engine
    engine.dispose()


def _sql(engine: sa.Engine, text: str) -> str:
    return text.replace(":k", "%(k)s") if engine.dialect.name == "postgresql" else text


def test_rows_are_what_exec_driver_sql_gives(engine: sa.Engine) -> None:
    sql = _sql(engine, "SELECT k, v FROM pairs WHERE k >= :k ORDER BY k")
    with engine.connect() as conn:
        lean = fetch_all(conn, sql, {"k": 2})
        assert [tuple(r) for r in lean] == [tuple(r) for r in
                                            conn.exec_driver_sql(sql, {"k": 2}).fetchall()]
        assert [tuple(r) for r in lean] == [(2, "two"), (3, None)]
        assert tuple(fetch_first(conn, sql, {"k": 1}) or ()) == (1, "one")
        assert fetch_first(conn, sql, {"k": 9}) is None


def test_driver_errors_come_out_as_sqlalchemys(engine: sa.Engine) -> None:
    with engine.connect() as conn, pytest.raises(sa.exc.ProgrammingError if
                                                  engine.dialect.name == "postgresql"
                                                  else sa.exc.OperationalError) as raised:
        fetch_all(conn, "SELECT nothing FROM no_such_table", {})
    assert "no_such_table" in str(raised.value) and raised.value.orig is not None
    # the connection is still good for the next reader
    with engine.connect() as conn:
        assert fetch_first(conn, _sql(engine, "SELECT v FROM pairs WHERE k = :k"),
                           {"k": 2}) == ("two",)
    if engine.dialect.name == "postgresql":  # a value the database refuses: BadInputError
        with engine.connect() as conn, pytest.raises(BadInputError), translated_errors():
            fetch_all(conn, "SELECT %(k)s::int", {"k": "x" * 3})


def test_statement_listeners_see_every_statement(engine: sa.Engine) -> None:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sql = _sql(engine, "SELECT v FROM pairs WHERE k = :k")
    with engine.connect() as conn:
        fetch_first(conn, sql, {"k": 1})
    assert seen == []
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        with engine.connect() as conn:
            assert fetch_first(conn, sql, {"k": 1}) == ("one",)
            assert [tuple(r) for r in fetch_all(conn, sql, {"k": 2})] == [("two",)]
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert seen.count(sql) == 2
