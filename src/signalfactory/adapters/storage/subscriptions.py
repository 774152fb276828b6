"""Subscriptions in SQL (``SubscriptionRepository``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from signalfactory.adapters.storage.tables import subscriptions
from signalfactory.domain.errors import ConflictError
from signalfactory.domain.streaming import NewSubscription, Subscription


def _subscription(row: Row[tuple[object, ...]]) -> Subscription:
    m = row._mapping
    return Subscription(id=int(m["id"]), tenant_id=int(m["tenant_id"]), name=m["name"],
                        strategies=tuple(m["strategies"] or ()),
                        symbols=tuple(m["symbols"] or ()), min_score=m["min_score"],
                        created_at=m["created_at"])


class SqlSubscriptionRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, new: NewSubscription) -> Subscription:
        try:
            # A savepoint: a taken name leaves the caller's transaction usable.
            with self.conn.begin_nested():
                inserted = self.conn.execute(subscriptions.insert().values(
                    tenant_id=new.tenant_id, name=new.name, strategies=list(new.strategies),
                    symbols=list(new.symbols), min_score=new.min_score))
                new_id = int(inserted.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError:
            raise ConflictError(f"a subscription named {new.name!r} exists; choose another "
                                "name or delete it first") from None
        found = self.get(new.tenant_id, new_id)
        if found is None:  # cannot happen inside one transaction; keeps the type honest
            raise ConflictError(f"subscription {new_id} vanished while being stored")
        return found

    def for_tenant(self, tenant_id: int) -> list[Subscription]:
        rows = self.conn.execute(sa.select(subscriptions)
                                 .where(subscriptions.c.tenant_id == tenant_id)
                                 .order_by(subscriptions.c.id))
        return [_subscription(r) for r in rows]

    def get(self, tenant_id: int, subscription_id: int) -> Subscription | None:
        row = self.conn.execute(sa.select(subscriptions).where(
            subscriptions.c.id == subscription_id,
            subscriptions.c.tenant_id == tenant_id)).first()
        return _subscription(row) if row is not None else None

    def delete(self, tenant_id: int, subscription_id: int) -> bool:
        deleted = self.conn.execute(subscriptions.delete().where(
            subscriptions.c.id == subscription_id, subscriptions.c.tenant_id == tenant_id))
        return deleted.rowcount > 0
