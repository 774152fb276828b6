"""The dead-letter queue: replaying dead deliveries, and the gauges of the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from signalfactory.domain.delivery import DEAD, PENDING, PRIORITY_NAMES, SENDING
from signalfactory.services.delivery.records import replay_dead
from signalfactory.services.platform import Platform


def replay(platform: Platform, tenant_id: int, ids: Sequence[str] | None,
           endpoint_id: int | None = None) -> int:
    """Dead rows of the tenant back to pending with a fresh attempt budget: these ids, or
    (``ids`` None) every dead row, of one endpoint when ``endpoint_id``. The checks (unknown
    ids, rows that are not dead, another tenant's endpoint) are ``replay_dead``'s."""
    return replay_dead(platform, tenant_id, ids=tuple(ids or ()), endpoint_id=endpoint_id,
                       replay_all=ids is None and endpoint_id is None)


class DeliveryGauges:
    """Queue depth per priority and the dead-letter size, from the outbox at scrape time."""

    def refresh(self, platform: Platform) -> None:
        from signalfactory.observability.metrics import (
            DELIVERY_DEAD_LETTER,
            DELIVERY_QUEUE_DEPTH,
        )

        with platform.database.read(primary=True) as uow:
            counts = uow.deliveries.counts()
        depth = dict.fromkeys(PRIORITY_NAMES.values(), 0)
        for c in counts:
            if c.status in (PENDING, SENDING):
                name = PRIORITY_NAMES.get(c.priority, str(c.priority))
                depth[name] = depth.get(name, 0) + c.count
        for name, value in depth.items():
            DELIVERY_QUEUE_DEPTH.labels(name).set(value)
        DELIVERY_DEAD_LETTER.set(sum(c.count for c in counts if c.status == DEAD))
