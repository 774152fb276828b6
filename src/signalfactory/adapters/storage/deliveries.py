"""The outbox in SQL (``DeliveryRepository``): rows written with their signals, leased by
delivery workers, every attempt recorded.

Every state change after the claim is one conditional UPDATE that names the lease it expects
(``status='sending' AND lease_owner=:me``): a worker whose lease expired and was taken over
writes nothing, so a row is never finished twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping

from signalfactory.adapters.storage.tables import deliveries, delivery_attempts
from signalfactory.domain.delivery import (
    DEAD,
    DELIVERED,
    PENDING,
    SENDING,
    SUPPRESSED,
    Delivery,
    DeliveryAttempt,
    DeliveryCount,
    NewDelivery,
)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes that are UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def delivery_from_row(m: RowMapping) -> Delivery:
    created = _utc(m["created_at"])
    if created is None:  # the column is NOT NULL with a server default
        raise ValueError("a delivery row without created_at")
    payload = m["payload"]
    return Delivery(
        id=str(m["id"]), tenant_id=int(m["tenant_id"]), endpoint_id=int(m["endpoint_id"]),
        subscription_id=m["subscription_id"], signal_id=m["signal_id"],
        campaign_id=m["campaign_id"], priority=int(m["priority"]), status=str(m["status"]),
        payload=dict(payload) if isinstance(payload, dict) else {},
        attempts=int(m["attempts"]), next_attempt_at=_utc(m["next_attempt_at"]),
        lease_owner=m["lease_owner"], lease_until=_utc(m["lease_until"]),
        last_error=m["last_error"], created_at=created, delivered_at=_utc(m["delivered_at"]))


def _pending_due(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(deliveries.c.status == PENDING,
                   sa.or_(deliveries.c.next_attempt_at.is_(None),
                          deliveries.c.next_attempt_at <= now))


def _lease_expired(now: datetime) -> sa.ColumnElement[bool]:
    """Leased by a worker whose lease ran out (it died or hung)."""
    return sa.and_(deliveries.c.status == SENDING, deliveries.c.lease_until <= now)


def _leased_by(delivery_id: str, owner: str) -> sa.ColumnElement[bool]:
    return sa.and_(deliveries.c.id == delivery_id, deliveries.c.status == SENDING,
                   deliveries.c.lease_owner == owner)


class SqlDeliveryRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def enqueue(self, rows: Sequence[NewDelivery]) -> int:
        if not rows:
            return 0
        dialect = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        values = [{"id": r.id, "tenant_id": r.tenant_id, "endpoint_id": r.endpoint_id,
                   "subscription_id": r.subscription_id, "signal_id": r.signal_id,
                   "campaign_id": r.campaign_id, "priority": r.priority, "status": r.status,
                   "payload": r.payload, "attempts": 0,
                   "next_attempt_at": r.next_attempt_at} for r in rows]
        # A row whose (endpoint, signal) is stored already is skipped: the same signal never
        # goes twice to one destination, however often the signal's batch is re-run.
        stmt = dialect.insert(deliveries).on_conflict_do_nothing().returning(deliveries.c.id)
        return len(self.conn.execute(stmt, values).all())

    def claim_due(self, now: datetime, owner: str, lease_until: datetime, limit: int,
                  max_priority: int | None = None) -> list[Delivery]:
        # Two picks, not one with OR: each walks ix_deliveries_due (status, priority, id) in
        # order and stops at ``limit``; an OR made PostgreSQL sort the whole backlog (40 ms
        # at 100,000 pending rows) on every claim.
        ids: list[str] = []
        for due in (_pending_due(now), _lease_expired(now)):
            pick = (sa.select(deliveries.c.id).where(due)
                    .order_by(deliveries.c.priority, deliveries.c.id).limit(limit - len(ids)))
            if max_priority is not None:
                pick = pick.where(deliveries.c.priority <= max_priority)
            if self.conn.dialect.name == "postgresql":
                # Claimers never wait on each other: each takes rows nobody else locked.
                # SQLite needs nothing: the write transaction holds the lock from BEGIN.
                pick = pick.with_for_update(skip_locked=True)
            ids.extend(str(r[0]) for r in self.conn.execute(pick))
            if len(ids) >= limit:
                break
        if not ids:
            return []
        claimed = self.conn.execute(
            sa.update(deliveries).where(deliveries.c.id.in_(ids))
            .values(status=SENDING, lease_owner=owner, lease_until=lease_until,
                    attempts=deliveries.c.attempts + 1)
            .returning(*deliveries.c)).mappings().all()
        return sorted((delivery_from_row(m) for m in claimed),
                      key=lambda d: (d.priority, d.id))

    def record_attempt(self, attempt: DeliveryAttempt) -> None:
        self.conn.execute(delivery_attempts.insert().values(
            delivery_id=attempt.delivery_id, attempt=attempt.attempt,
            started_at=attempt.started_at, status_code=attempt.status_code,
            latency_ms=attempt.latency_ms, error=attempt.error,
            response_excerpt=attempt.response_excerpt))

    def _finish(self, delivery_id: str, owner: str, **values: object) -> bool:
        updated = self.conn.execute(sa.update(deliveries).where(_leased_by(delivery_id, owner))
                                    .values(lease_owner=None, lease_until=None, **values))
        return updated.rowcount > 0

    def mark_delivered(self, delivery_id: str, owner: str, now: datetime) -> bool:
        return self._finish(delivery_id, owner, status=DELIVERED, delivered_at=now,
                            last_error=None)

    def reschedule(self, delivery_id: str, owner: str, next_attempt_at: datetime,
                   error: str) -> bool:
        return self._finish(delivery_id, owner, status=PENDING,
                            next_attempt_at=next_attempt_at, last_error=error)

    def dead_letter(self, delivery_id: str, owner: str, error: str) -> bool:
        return self._finish(delivery_id, owner, status=DEAD, last_error=error)

    def release(self, delivery_ids: Sequence[str], owner: str,
                next_attempt_at: datetime | None) -> int:
        if not delivery_ids:
            return 0
        updated = self.conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id.in_(list(delivery_ids)), deliveries.c.status == SENDING,
                   deliveries.c.lease_owner == owner)
            .values(status=PENDING, lease_owner=None, lease_until=None,
                    next_attempt_at=next_attempt_at,
                    attempts=sa.func.max(deliveries.c.attempts - 1, 0)
                    if self.conn.dialect.name == "sqlite"
                    else sa.func.greatest(deliveries.c.attempts - 1, 0)))
        return int(updated.rowcount)

    def suppress(self, delivery_ids: Sequence[str], reason: str) -> int:
        if not delivery_ids:
            return 0
        updated = self.conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id.in_(list(delivery_ids)),
                   deliveries.c.status.in_((PENDING, SENDING)))
            .values(status=SUPPRESSED, lease_owner=None, lease_until=None, last_error=reason))
        return int(updated.rowcount)

    def get(self, tenant_id: int | None, delivery_id: str) -> Delivery | None:
        query = sa.select(deliveries).where(deliveries.c.id == delivery_id)
        if tenant_id is not None:
            query = query.where(deliveries.c.tenant_id == tenant_id)
        row = self.conn.execute(query).mappings().first()
        return delivery_from_row(row) if row is not None else None

    def find(self, tenant_id: int | None, *, status: str | None = None,
             endpoint_id: int | None = None, subscription_id: int | None = None,
             campaign_id: int | None = None, after_id: str | None = None,
             limit: int = 100) -> list[Delivery]:
        query = sa.select(deliveries).order_by(deliveries.c.id).limit(limit)
        for column, value in ((deliveries.c.tenant_id, tenant_id),
                              (deliveries.c.status, status),
                              (deliveries.c.endpoint_id, endpoint_id),
                              (deliveries.c.subscription_id, subscription_id),
                              (deliveries.c.campaign_id, campaign_id)):
            if value is not None:
                query = query.where(column == value)
        if after_id is not None:
            query = query.where(deliveries.c.id > after_id)
        return [delivery_from_row(m) for m in self.conn.execute(query).mappings()]

    def attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        rows = self.conn.execute(sa.select(delivery_attempts)
                                 .where(delivery_attempts.c.delivery_id == delivery_id)
                                 .order_by(delivery_attempts.c.attempt,
                                           delivery_attempts.c.id)).mappings()
        out = []
        for m in rows:
            started = _utc(m["started_at"])
            if started is None:
                raise ValueError("a delivery attempt without started_at")
            out.append(DeliveryAttempt(
                delivery_id=m["delivery_id"], attempt=int(m["attempt"]), started_at=started,
                status_code=m["status_code"], latency_ms=float(m["latency_ms"]),
                error=m["error"], response_excerpt=m["response_excerpt"]))
        return out

    def replay(self, tenant_id: int | None, delivery_ids: Sequence[str] | None,
               now: datetime, *, endpoint_id: int | None = None) -> int:
        stmt = sa.update(deliveries).where(deliveries.c.status == DEAD)
        if tenant_id is not None:
            stmt = stmt.where(deliveries.c.tenant_id == tenant_id)
        if delivery_ids is not None:
            stmt = stmt.where(deliveries.c.id.in_(list(delivery_ids)))
        if endpoint_id is not None:
            stmt = stmt.where(deliveries.c.endpoint_id == endpoint_id)
        updated = self.conn.execute(stmt.values(status=PENDING, attempts=0,
                                                next_attempt_at=now, lease_owner=None,
                                                lease_until=None))
        return int(updated.rowcount)

    def counts(self) -> list[DeliveryCount]:
        rows = self.conn.execute(
            sa.select(deliveries.c.priority, deliveries.c.status, sa.func.count())
            .group_by(deliveries.c.priority, deliveries.c.status))
        return [DeliveryCount(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    def sent_since(self, subscription_id: int, endpoint_id: int, since: datetime) -> int:
        count = self.conn.execute(
            sa.select(sa.func.count()).select_from(deliveries)
            .where(deliveries.c.subscription_id == subscription_id,
                   deliveries.c.endpoint_id == endpoint_id,
                   sa.or_(sa.and_(deliveries.c.status == DELIVERED,
                                  deliveries.c.delivered_at >= since),
                          deliveries.c.status == SENDING))).scalar_one()
        return int(count)
