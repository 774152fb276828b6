"""The dead-letter queue: replaying dead deliveries, and the gauges of the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from signalfactory.domain.delivery import DEAD, PENDING, PRIORITY_NAMES, SENDING
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.message_ids import is_message_id
from signalfactory.services.delivery.outbox import announce
from signalfactory.services.platform import Platform

MAX_REPLAY_IDS = 1000


def replay(platform: Platform, tenant_id: int | None, ids: Sequence[str] | None,
           endpoint_id: int | None = None) -> int:
    """Dead rows back to pending with a fresh attempt budget: the given ids, or every dead
    row of the tenant (of one endpoint when ``endpoint_id``). Returns how many. An unknown
    id, or another tenant's, is refused and nothing is replayed."""
    chosen = None if ids is None else sorted(set(ids))
    if chosen is not None:
        if not chosen:
            raise BadInputError("give at least one delivery id, or none to replay all")
        if len(chosen) > MAX_REPLAY_IDS:
            raise BadInputError(f"replay at most {MAX_REPLAY_IDS} ids at once")
        bad = [i for i in chosen if not is_message_id(i)]
        if bad:
            raise BadInputError(f"not a delivery id: {bad[0]!r} (ids look like msg_01H...)")
    with platform.database.write() as uow:
        if endpoint_id is not None and uow.endpoints.get(tenant_id, endpoint_id) is None:
            raise NotFoundError(f"no endpoint {endpoint_id}")
        if chosen is not None:
            missing = [i for i in chosen if uow.deliveries.get(tenant_id, i) is None]
            if missing:
                raise NotFoundError(f"no delivery {missing[0]}")
        count = uow.deliveries.replay(tenant_id, chosen, platform.clock.now(),
                                      endpoint_id=endpoint_id)
        if count:
            announce(platform, uow, chosen or ["replay"])
    return count


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
