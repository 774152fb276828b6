"""The outbox in memory (``DeliveryRepository``), with the SQL repository's semantics: a
unique (endpoint, signal), leases, conditional finishes, attempts per row."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

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
from signalfactory.testing.memory import MemoryState


@dataclass
class DeliveryStore:
    rows: dict[str, Delivery] = field(default_factory=dict)
    attempts: list[DeliveryAttempt] = field(default_factory=list)


def delivery_store(state: MemoryState) -> DeliveryStore:
    return state.store("deliveries", DeliveryStore)


def _due(row: Delivery, now: datetime) -> bool:
    if row.status == PENDING:
        return row.next_attempt_at is None or row.next_attempt_at <= now
    return row.status == SENDING and row.lease_until is not None and row.lease_until <= now


class MemoryDeliveryRepository:
    def __init__(self, state: MemoryState) -> None:
        self.data = delivery_store(state)

    def enqueue(self, rows: Sequence[NewDelivery]) -> int:
        taken: set[tuple[int, int | None]] = {
            (r.endpoint_id, r.signal_id) for r in self.data.rows.values()
            if r.signal_id is not None}
        added = 0
        for new in rows:
            key = (new.endpoint_id, new.signal_id)
            if new.id in self.data.rows or (new.signal_id is not None and key in taken):
                continue
            taken.add(key)
            self.data.rows[new.id] = Delivery(
                id=new.id, tenant_id=new.tenant_id, endpoint_id=new.endpoint_id,
                subscription_id=new.subscription_id, signal_id=new.signal_id,
                campaign_id=new.campaign_id, priority=new.priority, status=new.status,
                payload=dict(new.payload), attempts=0, next_attempt_at=new.next_attempt_at,
                lease_owner=None, lease_until=None, last_error=None,
                created_at=datetime.now(UTC), delivered_at=None)
            added += 1
        return added

    def claim_due(self, now: datetime, owner: str, lease_until: datetime, limit: int,
                  max_priority: int | None = None) -> list[Delivery]:
        due = sorted((r for r in self.data.rows.values() if _due(r, now)
                      and (max_priority is None or r.priority <= max_priority)),
                     key=lambda r: (r.priority, r.id))[:limit]
        claimed = []
        for row in due:
            row = self.data.rows[row.id] = dataclasses.replace(
                row, status=SENDING, lease_owner=owner, lease_until=lease_until,
                attempts=row.attempts + 1)
            claimed.append(row)
        return claimed

    def record_attempt(self, attempt: DeliveryAttempt) -> None:
        self.data.attempts.append(attempt)

    def _finish(self, delivery_id: str, owner: str, **changes: object) -> bool:
        row = self.data.rows.get(delivery_id)
        if row is None or row.status != SENDING or row.lease_owner != owner:
            return False
        self.data.rows[delivery_id] = dataclasses.replace(
            row, lease_owner=None, lease_until=None, **changes)  # type: ignore[arg-type]
        return True

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
        released = 0
        for delivery_id in delivery_ids:
            row = self.data.rows.get(delivery_id)
            if row is not None and self._finish(delivery_id, owner, status=PENDING,
                                                next_attempt_at=next_attempt_at,
                                                attempts=max(row.attempts - 1, 0)):
                released += 1
        return released

    def suppress(self, delivery_ids: Sequence[str], reason: str) -> int:
        done = 0
        for delivery_id in delivery_ids:
            row = self.data.rows.get(delivery_id)
            if row is not None and row.status in (PENDING, SENDING):
                self.data.rows[delivery_id] = dataclasses.replace(
                    row, status=SUPPRESSED, lease_owner=None, lease_until=None,
                    last_error=reason)
                done += 1
        return done

    def get(self, tenant_id: int | None, delivery_id: str) -> Delivery | None:
        row = self.data.rows.get(delivery_id)
        return row if row is not None and tenant_id in (None, row.tenant_id) else None

    def find(self, tenant_id: int | None, *, status: str | None = None,
             endpoint_id: int | None = None, subscription_id: int | None = None,
             campaign_id: int | None = None, after_id: str | None = None,
             limit: int = 100) -> list[Delivery]:
        wanted = {"tenant_id": tenant_id, "status": status, "endpoint_id": endpoint_id,
                  "subscription_id": subscription_id, "campaign_id": campaign_id}
        out = [r for _, r in sorted(self.data.rows.items())
               if all(v is None or getattr(r, k) == v for k, v in wanted.items())
               and (after_id is None or r.id > after_id)]
        return out[:limit]

    def attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        return sorted((a for a in self.data.attempts if a.delivery_id == delivery_id),
                      key=lambda a: a.attempt)

    def replay(self, tenant_id: int | None, delivery_ids: Sequence[str] | None,
               now: datetime, *, endpoint_id: int | None = None) -> int:
        chosen = set(delivery_ids) if delivery_ids is not None else None
        done = 0
        for ident, row in list(self.data.rows.items()):
            if (row.status == DEAD and tenant_id in (None, row.tenant_id)
                    and (chosen is None or ident in chosen)
                    and endpoint_id in (None, row.endpoint_id)):
                self.data.rows[ident] = dataclasses.replace(
                    row, status=PENDING, attempts=0, next_attempt_at=now, lease_owner=None,
                    lease_until=None)
                done += 1
        return done

    def counts(self) -> list[DeliveryCount]:
        tally: dict[tuple[int, str], int] = {}
        for row in self.data.rows.values():
            tally[(row.priority, row.status)] = tally.get((row.priority, row.status), 0) + 1
        return [DeliveryCount(p, s, n) for (p, s), n in sorted(tally.items())]

    def sent_since(self, subscription_id: int, endpoint_id: int, since: datetime) -> int:
        return sum(1 for r in self.data.rows.values()
                   if r.subscription_id == subscription_id and r.endpoint_id == endpoint_id
                   and (r.status == SENDING or (r.status == DELIVERED
                                                and r.delivered_at is not None
                                                and r.delivered_at >= since)))
