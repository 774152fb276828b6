"""Quota usage in SQL: daily counters and counts of what a tenant holds (``UsageRepository``)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from signalfactory.adapters.storage.tables import (
    strategies,
    subscriptions,
    tenants,
    usage_counters,
)


class SqlUsageRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def lock_tenant(self, tenant_id: int) -> None:
        # Two concurrent creations must not both take a tenant's last slot. SQLite already
        # serialises writers (a write unit of work holds the database lock).
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(sa.select(tenants.c.id).where(tenants.c.id == tenant_id)
                              .with_for_update())

    def count_held(self, tenant_id: int, kind: str) -> int:
        if kind == "strategies":
            query = sa.select(sa.func.count()).select_from(strategies).where(
                strategies.c.tenant_id == tenant_id, strategies.c.builtin.is_(sa.false()))
        elif kind == "subscriptions":
            query = sa.select(sa.func.count()).select_from(subscriptions).where(
                subscriptions.c.tenant_id == tenant_id)
        else:
            raise ValueError(f"{kind!r} is not a count quota; known: strategies, subscriptions")
        return int(self.conn.execute(query).scalar_one())

    def take_daily(self, tenant_id: int, kind: str, day: date, limit: int | None) -> bool:
        if limit is not None and limit <= 0:
            return False
        insert = pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert
        table = usage_counters
        # One statement: insert the day's first use, or add one while under the limit. No
        # row back means the limit is reached and nothing was counted.
        stmt = insert(table).values(tenant_id=tenant_id, kind=kind, day=day, count=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "kind", "day"], set_={"count": table.c.count + 1},
            where=None if limit is None else table.c.count < limit)
        return self.conn.execute(stmt.returning(table.c.count)).first() is not None

    def daily_used(self, tenant_id: int, kind: str, day: date) -> int:
        value = self.conn.execute(sa.select(usage_counters.c.count).where(
            usage_counters.c.tenant_id == tenant_id, usage_counters.c.kind == kind,
            usage_counters.c.day == day)).scalar()
        return int(value or 0)
