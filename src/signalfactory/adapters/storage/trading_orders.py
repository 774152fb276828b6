"""Orders and fills in SQL (``OrderRepository``).

The unique keys carry idempotency: (account, client order id) for orders, (account, trade id)
for fills. Inserts use ``ON CONFLICT DO NOTHING`` so a repeat finds the stored row instead of
failing the transaction.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import UTCDateTime
from signalfactory.adapters.storage.tables_trading import Money, fills, orders
from signalfactory.adapters.storage.trading_accounts import utc
from signalfactory.domain.errors import NotFoundError
from signalfactory.domain.trading.orders import (
    PENDING,
    TERMINAL_STATUSES,
    Fill,
    Order,
    OrderType,
    Side,
)
from signalfactory.domain.trading.records import NewOrder, OrderUpdate

# written out as comparisons (no expanding IN): it also goes into executemany statements
_OPEN_STATUSES = sa.and_(*(orders.c.status != s for s in sorted(TERMINAL_STATUSES)))


def _insert(dialect: str, table: sa.Table) -> Any:  # noqa: ANN401 - the dialect's Insert
    return (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table))


# Statements of the order path, built once (building one costs more than running it) and
# run with bound values; see the methods that use them.
@functools.cache
def _pending_insert(dialect: str) -> Any:  # noqa: ANN401 - the dialect's Insert
    return _insert(dialect, orders).on_conflict_do_nothing(
        index_elements=["account_id", "client_order_id"]).returning(*orders.c)


@functools.cache
def _fills_insert(dialect: str) -> Any:  # noqa: ANN401 - the dialect's Insert
    return _insert(dialect, fills).on_conflict_do_nothing(
        index_elements=["account_id", "trade_id"]).returning(fills.c.account_id,
                                                             fills.c.trade_id)


@functools.cache
def _find(tenant: bool, bot: bool, account: bool, statuses: bool, symbol: bool
          ) -> sa.Select[Any]:
    query = (sa.select(orders).order_by(orders.c.id.desc())
             .limit(sa.bindparam("lim", type_=sa.Integer()))
             .offset(sa.bindparam("off", type_=sa.Integer())))
    if tenant:
        query = query.where(orders.c.tenant_id == sa.bindparam("tenant_id"))
    if bot:
        query = query.where(orders.c.bot_id == sa.bindparam("bot_id"))
    if account:
        query = query.where(orders.c.account_id == sa.bindparam("account_id"))
    if statuses:
        query = query.where(orders.c.status.in_(sa.bindparam("statuses", expanding=True)))
    if symbol:
        query = query.where(orders.c.symbol == sa.bindparam("symbol"))
    return query


def _kept(name: str, column: sa.Column[Any], type_: sa.types.TypeEngine[Any]
          ) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.bindparam(name, type_=type_), column)


# One UPDATE for what an exchange said: a value left out (None) keeps the stored one; a
# terminal order keeps its status (a late or repeated report cannot reopen it).
_UPDATE = orders.update().where(orders.c.id == sa.bindparam("b_id"), _OPEN_STATUSES).values(
    status=sa.bindparam("b_status"),
    exchange_order_id=_kept("b_eid", orders.c.exchange_order_id, sa.String()),
    filled_quantity=_kept("b_filled", orders.c.filled_quantity, Money),
    average_price=_kept("b_avg", orders.c.average_price, Money),
    fee=_kept("b_fee", orders.c.fee, Money), error=_kept("b_error", orders.c.error, sa.Text()),
    reserved=sa.case((sa.bindparam("b_ends", type_=sa.Boolean()), 0.0),
                     else_=orders.c.reserved),
    updated_at=sa.bindparam("b_now", type_=UTCDateTime))
_UPDATE_RETURNING = _UPDATE.returning(*orders.c)
_BY_ID = sa.select(orders).where(orders.c.id == sa.bindparam("b_id"))


def _update_values(order_id: int, u: OrderUpdate, now: datetime) -> dict[str, object]:
    return {"b_id": order_id, "b_status": u.status, "b_eid": u.exchange_order_id,
            "b_filled": u.filled_quantity, "b_avg": u.average_price, "b_fee": u.fee,
            "b_error": u.error, "b_ends": u.status in TERMINAL_STATUSES, "b_now": now}


def order_from_row(row: sa.RowMapping) -> Order:
    return Order(
        id=int(row["id"]), tenant_id=int(row["tenant_id"]),
        bot_id=int(row["bot_id"]) if row["bot_id"] is not None else None,
        account_id=int(row["account_id"]), client_order_id=row["client_order_id"],
        symbol=row["symbol"], side=cast(Side, row["side"]), type=cast(OrderType, row["type"]),
        quantity=float(row["quantity"]), limit_price=row["limit_price"], status=row["status"],
        created_at=utc(row["created_at"]), updated_at=utc(row["updated_at"]),
        exchange_order_id=row["exchange_order_id"],
        filled_quantity=float(row["filled_quantity"]), average_price=row["average_price"],
        fee=float(row["fee"]), reason=row["reason"], error=row["error"],
        bar_ns=int(row["bar_ns"]), reference_price=float(row["reference_price"]),
        reserved=float(row["reserved"]))


def fill_from_row(row: sa.RowMapping) -> Fill:
    return Fill(account_id=int(row["account_id"]), order_id=int(row["order_id"]),
                trade_id=row["trade_id"], symbol=row["symbol"], side=cast(Side, row["side"]),
                quantity=float(row["quantity"]), price=float(row["price"]),
                fee=float(row["fee"]), fee_currency=row["fee_currency"],
                executed_at=utc(row["executed_at"]))


class SqlOrderRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_pending(self, order: NewOrder, now: datetime) -> tuple[Order, bool]:
        return self.add_pending_many([order], now)[0]

    def add_pending_many(self, new: Sequence[NewOrder], now: datetime
                         ) -> list[tuple[Order, bool]]:
        if not new:
            return []
        values = [{"tenant_id": o.tenant_id, "bot_id": o.bot_id, "account_id": o.account_id,
                   "client_order_id": o.client_order_id, "symbol": o.symbol, "side": o.side,
                   "type": o.type, "quantity": o.quantity, "limit_price": o.limit_price,
                   "status": o.status or PENDING, "error": o.error, "reason": o.reason,
                   "bar_ns": o.bar_ns, "reference_price": o.reference_price,
                   "reserved": o.reserved, "filled_quantity": 0.0, "fee": 0.0,
                   "created_at": now, "updated_at": now} for o in new]
        stmt = _pending_insert(self.conn.dialect.name)
        inserted = {(int(r["account_id"]), r["client_order_id"]): order_from_row(r)
                    for r in self.conn.execute(stmt, values).mappings()}
        existing: dict[tuple[int, str], Order] = {}
        missing = {(o.account_id, o.client_order_id) for o in new} - set(inserted)
        for account_id in {a for a, _ in missing}:
            ids = sorted(c for a, c in missing if a == account_id)
            rows = self.conn.execute(sa.select(orders).where(
                orders.c.account_id == account_id, orders.c.client_order_id.in_(ids)))
            for row in rows.mappings():
                existing[(account_id, row["client_order_id"])] = order_from_row(row)
        out: list[tuple[Order, bool]] = []
        seen: set[tuple[int, str]] = set()
        for o in new:
            key = (o.account_id, o.client_order_id)
            found = inserted.get(key) or existing.get(key)
            if found is None:  # cannot happen: inserted, or it conflicted with a stored row
                raise NotFoundError(f"order {o.client_order_id} vanished while being stored")
            out.append((found, key in inserted and key not in seen))
            seen.add(key)
        return out

    def get(self, tenant_id: int | None, order_id: int) -> Order | None:
        query = sa.select(orders).where(orders.c.id == order_id)
        if tenant_id is not None:
            query = query.where(orders.c.tenant_id == tenant_id)
        row = self.conn.execute(query).mappings().first()
        return order_from_row(row) if row is not None else None

    def by_client_id(self, account_id: int, client_order_id: str) -> Order | None:
        row = self.conn.execute(sa.select(orders).where(
            orders.c.account_id == account_id,
            orders.c.client_order_id == client_order_id)).mappings().first()
        return order_from_row(row) if row is not None else None

    def update_many(self, updates: Sequence[tuple[int, OrderUpdate]], now: datetime
                    ) -> list[Order]:
        if not updates:
            return []
        if len(updates) == 1:  # one statement (UPDATE ... RETURNING) instead of two
            return [self.update(updates[0][0], updates[0][1], now)]
        self.conn.execute(_UPDATE, [_update_values(i, u, now) for i, u in updates])
        ids = [order_id for order_id, _ in updates]
        rows = {int(r["id"]): order_from_row(r) for r in self.conn.execute(
            sa.select(orders).where(orders.c.id.in_(sorted(set(ids))))).mappings()}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise NotFoundError(f"no order {missing[0]}")
        return [rows[i] for i in ids]

    def update(self, order_id: int, update: OrderUpdate, now: datetime) -> Order:
        row = self.conn.execute(_UPDATE_RETURNING, _update_values(order_id, update, now)
                                ).mappings().first()
        if row is None:  # terminal already (kept as it is), or no such order
            row = self.conn.execute(_BY_ID, {"b_id": order_id}).mappings().first()
        if row is None:
            raise NotFoundError(f"no order {order_id}")
        return order_from_row(row)

    def find(self, *, tenant_id: int | None = None, bot_id: int | None = None,
             account_id: int | None = None, statuses: Sequence[str] | None = None,
             symbol: str | None = None, limit: int = 100, offset: int = 0) -> list[Order]:
        query = _find(tenant_id is not None, bot_id is not None, account_id is not None,
                      statuses is not None, symbol is not None)
        values: dict[str, object] = {"lim": limit, "off": offset, "tenant_id": tenant_id,
                                     "bot_id": bot_id, "account_id": account_id,
                                     "symbol": symbol}
        if statuses is not None:
            values["statuses"] = list(statuses)
        return [order_from_row(r) for r in self.conn.execute(query, values).mappings()]

    def count_since(self, bot_id: int, since: datetime) -> int:
        return int(self.conn.execute(sa.select(sa.func.count()).select_from(orders).where(
            orders.c.bot_id == bot_id, orders.c.created_at >= since)).scalar_one())

    def reserved(self, *, account_id: int | None = None, bot_id: int | None = None) -> float:
        query = sa.select(sa.func.coalesce(sa.func.sum(orders.c.reserved), 0.0)).where(
            _OPEN_STATUSES)
        if account_id is not None:
            query = query.where(orders.c.account_id == account_id)
        if bot_id is not None:
            query = query.where(orders.c.bot_id == bot_id)
        return float(self.conn.execute(query).scalar_one())

    def add_fill(self, fill: Fill) -> bool:
        return self.add_fills([fill])[0]

    def add_fills(self, batch: Sequence[Fill]) -> list[bool]:
        if not batch:
            return []
        stmt = _fills_insert(self.conn.dialect.name)
        new = {(int(r[0]), r[1]) for r in self.conn.execute(stmt, [
            {"account_id": f.account_id, "order_id": f.order_id, "trade_id": f.trade_id,
             "symbol": f.symbol, "side": f.side, "quantity": f.quantity, "price": f.price,
             "fee": f.fee, "fee_currency": f.fee_currency, "executed_at": f.executed_at}
            for f in batch])}
        out = []
        for f in batch:  # the same trade twice in one batch is new once
            key = (f.account_id, f.trade_id)
            out.append(key in new)
            new.discard(key)
        return out

    def fills(self, *, order_id: int | None = None, bot_id: int | None = None,
              account_id: int | None = None, limit: int = 1000) -> list[Fill]:
        query = sa.select(fills).order_by(fills.c.id).limit(limit)
        if order_id is not None:
            query = query.where(fills.c.order_id == order_id)
        if bot_id is not None:
            query = query.where(fills.c.order_id.in_(
                sa.select(orders.c.id).where(orders.c.bot_id == bot_id)))
        if account_id is not None:
            query = query.where(fills.c.account_id == account_id)
        return [fill_from_row(r) for r in self.conn.execute(query).mappings()]

    def has_fill(self, account_id: int, trade_id: str) -> bool:
        return self.conn.execute(sa.select(fills.c.id).where(
            fills.c.account_id == account_id, fills.c.trade_id == trade_id)).first() is not None
