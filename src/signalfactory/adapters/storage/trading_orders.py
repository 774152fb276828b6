"""Orders and fills in SQL (``OrderRepository``).

The unique keys carry idempotency: (account, client order id) for orders, (account, trade id)
for fills. Inserts use ``ON CONFLICT DO NOTHING`` so a repeat finds the stored row instead of
failing the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.jobs import dialect_insert
from signalfactory.adapters.storage.tables_trading import fills, orders
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

_OPEN_STATUSES = sa.not_(orders.c.status.in_(sorted(TERMINAL_STATUSES)))


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
        stmt = dialect_insert(self.conn, orders).values(
            tenant_id=order.tenant_id, bot_id=order.bot_id, account_id=order.account_id,
            client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
            type=order.type, quantity=order.quantity, limit_price=order.limit_price,
            status=PENDING, reason=order.reason, bar_ns=order.bar_ns,
            reference_price=order.reference_price, reserved=order.reserved,
            filled_quantity=0.0, fee=0.0, created_at=now, updated_at=now)
        inserted = self.conn.execute(stmt.on_conflict_do_nothing(
            index_elements=["account_id", "client_order_id"]).returning(orders.c.id)).first()
        found = self.by_client_id(order.account_id, order.client_order_id)
        if found is None:  # cannot happen: inserted or already there, in this transaction
            raise NotFoundError(f"order {order.client_order_id} vanished while being stored")
        return found, inserted is not None

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

    def update(self, order_id: int, update: OrderUpdate, now: datetime) -> Order:
        values: dict[str, object] = {"updated_at": now}
        for name in ("exchange_order_id", "filled_quantity", "average_price", "fee", "error"):
            value = getattr(update, name)
            if value is not None:
                values[name] = value
        if update.status in TERMINAL_STATUSES:
            values["reserved"] = 0.0
        # A terminal order keeps its status: a late or repeated report cannot reopen it.
        self.conn.execute(orders.update().where(orders.c.id == order_id, _OPEN_STATUSES)
                          .values(status=update.status, **values))
        found = self.get(None, order_id)
        if found is None:
            raise NotFoundError(f"no order {order_id}")
        return found

    def find(self, *, tenant_id: int | None = None, bot_id: int | None = None,
             account_id: int | None = None, statuses: Sequence[str] | None = None,
             symbol: str | None = None, limit: int = 100, offset: int = 0) -> list[Order]:
        query = sa.select(orders).order_by(orders.c.id.desc()).limit(limit).offset(offset)
        if tenant_id is not None:
            query = query.where(orders.c.tenant_id == tenant_id)
        if bot_id is not None:
            query = query.where(orders.c.bot_id == bot_id)
        if account_id is not None:
            query = query.where(orders.c.account_id == account_id)
        if statuses is not None:
            query = query.where(orders.c.status.in_(list(statuses)))
        if symbol is not None:
            query = query.where(orders.c.symbol == symbol)
        return [order_from_row(r) for r in self.conn.execute(query).mappings()]

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
        stmt = dialect_insert(self.conn, fills).values(
            account_id=fill.account_id, order_id=fill.order_id, trade_id=fill.trade_id,
            symbol=fill.symbol, side=fill.side, quantity=fill.quantity, price=fill.price,
            fee=fill.fee, fee_currency=fill.fee_currency, executed_at=fill.executed_at)
        inserted = self.conn.execute(stmt.on_conflict_do_nothing(
            index_elements=["account_id", "trade_id"]).returning(fills.c.id)).first()
        return inserted is not None

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
