"""Positions and equity marks of bots in SQL (``PositionRepository``, ``BotMarkRepository``)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.jobs import dialect_insert
from signalfactory.adapters.storage.tables_trading import bot_marks, bots, positions
from signalfactory.adapters.storage.trading_accounts import utc
from signalfactory.domain.trading.orders import Position
from signalfactory.domain.trading.records import BotMark

_BY_BOT = (sa.select(positions).where(positions.c.bot_id == sa.bindparam("bot_id"))
           .order_by(positions.c.bot_id, positions.c.symbol))


@functools.cache
def _upsert(dialect: str) -> Any:  # noqa: ANN401 - the dialect's Insert
    stmt = (postgresql.insert(positions) if dialect == "postgresql"
            else sqlite.insert(positions))
    return stmt.on_conflict_do_update(
        index_elements=["bot_id", "symbol"],
        set_={k: stmt.excluded[k] for k in ("quantity", "average_price", "realised_pnl",
                                             "updated_at")})


def _position(row: sa.RowMapping) -> Position:
    return Position(bot_id=int(row["bot_id"]), symbol=row["symbol"],
                    quantity=float(row["quantity"]), average_price=float(row["average_price"]),
                    realised_pnl=float(row["realised_pnl"]), updated_at=utc(row["updated_at"]))


def _mark(row: sa.RowMapping) -> BotMark:
    return BotMark(bot_id=int(row["bot_id"]), ts=utc(row["ts"]), equity=float(row["equity"]),
                   cash=float(row["cash"]), exposure=float(row["exposure"]),
                   realised_pnl=float(row["realised_pnl"]),
                   unrealised_pnl=float(row["unrealised_pnl"]))


class SqlPositionRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, bot_id: int, symbol: str) -> Position | None:
        row = self.conn.execute(sa.select(positions).where(
            positions.c.bot_id == bot_id, positions.c.symbol == symbol)).mappings().first()
        return _position(row) if row is not None else None

    def find(self, *, tenant_id: int | None = None, bot_id: int | None = None,
             open_only: bool = False) -> list[Position]:
        if bot_id is not None and tenant_id is None and not open_only:  # the order path's
            rows = self.conn.execute(_BY_BOT, {"bot_id": bot_id}).mappings()
            return [_position(r) for r in rows]
        query = sa.select(positions).order_by(positions.c.bot_id, positions.c.symbol)
        if tenant_id is not None:
            query = query.where(positions.c.bot_id.in_(
                sa.select(bots.c.id).where(bots.c.tenant_id == tenant_id)))
        if bot_id is not None:
            query = query.where(positions.c.bot_id == bot_id)
        if open_only:
            query = query.where(positions.c.quantity != 0)
        return [_position(r) for r in self.conn.execute(query).mappings()]

    def put(self, position: Position) -> None:
        self.put_many([position])

    def put_many(self, batch: Sequence[Position]) -> None:
        if not batch:
            return
        self.conn.execute(_upsert(self.conn.dialect.name), [
            {"bot_id": p.bot_id, "symbol": p.symbol, "quantity": p.quantity,
             "average_price": p.average_price, "realised_pnl": p.realised_pnl,
             "updated_at": p.updated_at} for p in batch])


class SqlBotMarkRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, mark: BotMark) -> None:
        values = {"bot_id": mark.bot_id, "ts": mark.ts, "equity": mark.equity,
                  "cash": mark.cash, "exposure": mark.exposure,
                  "realised_pnl": mark.realised_pnl, "unrealised_pnl": mark.unrealised_pnl}
        stmt = dialect_insert(self.conn, bot_marks).values(**values)
        self.conn.execute(stmt.on_conflict_do_update(
            index_elements=["bot_id", "ts"],
            set_={k: v for k, v in values.items() if k not in ("bot_id", "ts")}))

    def series(self, bot_id: int, *, since: datetime | None = None,
               until: datetime | None = None) -> list[BotMark]:
        query = sa.select(bot_marks).where(bot_marks.c.bot_id == bot_id).order_by(bot_marks.c.ts)
        if since is not None:
            query = query.where(bot_marks.c.ts >= since)
        if until is not None:
            query = query.where(bot_marks.c.ts <= until)
        return [_mark(r) for r in self.conn.execute(query).mappings()]

    def latest(self, bot_id: int) -> BotMark | None:
        row = self.conn.execute(sa.select(bot_marks).where(bot_marks.c.bot_id == bot_id)
                                .order_by(bot_marks.c.ts.desc()).limit(1)).mappings().first()
        return _mark(row) if row is not None else None
