"""Signal pages read lean: one driver-level statement per filter combination, tuples out.

The serving path of ``GET /api/v1/signals``. Building the SQLAlchemy select, compiling it
and turning every row into a mapping and a frozen dataclass cost about 9 us a row (a
100-row page: about 1 ms) before any JSON was written. Here the SQL text is built once per
(dialect, filters) and executed with ``exec_driver_sql`` (SQLAlchemy still owns the
connection, the transaction and the translation of driver errors), and each driver tuple
becomes one slotted ``SignalRow``. The selection, order and values are ``page``'s
(``adapters/storage/signals.py``): tests compare the two on both dialects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.domain.signals import SignalQuery, SignalRow

_SELECT = (
    'SELECT s.id, s.bar_ts, i.symbol, s.side, st.name, sv.version, s.timeframe, s.score, '
    's.price, CAST(s."values" AS TEXT), s.created_at, sv.code_hash '
    "FROM signals s "
    "JOIN instruments i ON i.id = s.instrument_id "
    "JOIN strategy_versions sv ON sv.id = s.strategy_version_id "
    "JOIN strategies st ON st.id = sv.strategy_id ")
_FILTERS = (("since", "s.bar_ts >= {}"), ("symbol", "i.symbol = {}"),
            ("strategy", "st.name = {}"), ("side", "s.side = {}"),
            ("min_score", "s.score >= {}"))


@cache
def _statement(dialect: str, present: tuple[str, ...], newest_first: bool) -> str:
    """The SQL for one combination of filters in the driver's parameter style."""

    def param(name: str) -> str:
        return f"%({name})s" if dialect == "postgresql" else f":{name}"

    true = "TRUE" if dialect == "postgresql" else "1"
    where = [f"(st.tenant_id = {param('tenant_id')} OR st.builtin = {true})"]
    where += [template.format(param(name)) for name, template in _FILTERS if name in present]
    if "after_id" in present:
        where.append(f"s.id {'<' if newest_first else '>'} {param('after_id')}")
    order = "s.id DESC" if newest_first else "s.id"
    return f"{_SELECT}WHERE {' AND '.join(where)} ORDER BY {order} LIMIT {param('limit')}"


@cache
def datetime_io(dialect: sa.engine.Dialect) -> tuple[Callable[[Any], Any] | None,
                                                       Callable[[Any], Any] | None]:
    """How this dialect binds and reads ``DateTime(timezone=True)``: exactly what the
    SQLAlchemy select of ``page`` does (SQLite keeps text; PostgreSQL's driver converts)."""
    column_type = sa.DateTime(timezone=True).dialect_impl(dialect)
    return column_type.bind_processor(dialect), column_type.result_processor(dialect, None)


_ONLY_FLOATS = {float}


def _values(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    try:
        loaded = orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN or Infinity written by the json module
        loaded = json.loads(text)
    if not loaded or set(map(type, loaded.values())) == _ONLY_FLOATS:  # one pass in C
        return loaded  # type: ignore[no-any-return]
    return {str(k): float(v) for k, v in loaded.items()}


def page_rows(conn: Connection, query: SignalQuery) -> list[SignalRow]:
    dialect = conn.dialect
    bind, read = datetime_io(dialect)
    params: dict[str, Any] = {"tenant_id": query.tenant_id, "limit": query.limit}
    if query.since is not None:
        params["since"] = bind(query.since) if bind is not None else query.since
    for name in ("symbol", "strategy", "side", "min_score", "after_id"):
        value = getattr(query, name)
        if value is not None:
            params[name] = value
    sql = _statement(dialect.name, tuple(sorted(params)), query.newest_first)
    rows = conn.exec_driver_sql(sql, params).fetchall()
    as_datetime: Callable[[Any], datetime] = read if read is not None else _same
    return [SignalRow(int(r[0]), as_datetime(r[1]), r[2], r[3], r[4], int(r[5]), r[6], r[7],
                      r[8], _values(r[9]), None if r[10] is None else as_datetime(r[10]),
                      r[11])
            for r in rows]


def _same(value: datetime) -> datetime:
    return value
