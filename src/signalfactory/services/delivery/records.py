"""Reading the outbox (deliveries and their attempts) and replaying the dead-letter queue,
always within one tenant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from signalfactory.domain.delivery import (
    DEAD,
    DELIVERY_STATUSES,
    ENDPOINT_KINDS,
    Delivery,
    DeliveryAttempt,
)
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.services.delivery.endpoints import get_endpoint
from signalfactory.services.delivery.outbox import announce
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

MAX_PAGE = 1000
MAX_REPLAY_IDS = 1000


@dataclass(frozen=True)
class DeliveryWithAttempts:
    delivery: Delivery
    attempts: tuple[DeliveryAttempt, ...]


def find_deliveries(uow: UnitOfWork, tenant_id: int, *, status: str | None = None,
                    endpoint_id: int | None = None, subscription_id: int | None = None,
                    campaign_id: int | None = None, channel: str | None = None,
                    after: str | None = None, limit: int = 100) -> list[Delivery]:
    """Deliveries in id (creation) order after ``after``; ``channel`` keeps those of the
    tenant's endpoints of that kind."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise BadInputError(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    if channel is not None and channel not in ENDPOINT_KINDS:
        raise BadInputError(f"channel must be one of {', '.join(ENDPOINT_KINDS)}")
    if not 1 <= limit <= MAX_PAGE:
        raise BadInputError(f"limit must be 1..{MAX_PAGE}")
    if channel is None:
        endpoint_ids: list[int | None] = [endpoint_id]
    else:
        endpoint_ids = [e.id for e in uow.endpoints.for_tenant(tenant_id)
                        if e.kind == channel and endpoint_id in (None, e.id)]
    found: list[Delivery] = []
    # Ids sort by creation across endpoints, so merging per-endpoint pages keeps the order
    # and the ``after`` cursor exact.
    for one in endpoint_ids:
        found += uow.deliveries.find(tenant_id, status=status, endpoint_id=one,
                                     subscription_id=subscription_id,
                                     campaign_id=campaign_id, after_id=after, limit=limit)
    return sorted(found, key=lambda d: d.id)[:limit]


def get_delivery(uow: UnitOfWork, tenant_id: int, delivery_id: str) -> DeliveryWithAttempts:
    found = uow.deliveries.get(tenant_id, delivery_id)
    if found is None:
        raise NotFoundError(f"no delivery {delivery_id!r}; list yours with "
                            "GET /api/v1/deliveries")
    return DeliveryWithAttempts(delivery=found,
                                attempts=tuple(uow.deliveries.attempts(delivery_id)))


def replay_dead(platform: Platform, tenant_id: int, *, ids: Sequence[str] = (),
                endpoint_id: int | None = None, replay_all: bool = False) -> int:
    """Dead-lettered deliveries back to pending with a fresh attempt budget: these ids, or
    every dead one of an endpoint, or (``replay_all``) every dead one of the tenant. Exactly
    one selection must be given, so an empty request never replays everything."""
    chosen = sum((bool(ids), endpoint_id is not None, replay_all))
    if chosen != 1:
        raise BadInputError("replay: give exactly one of ids, endpoint_id or all=true")
    if len(ids) > MAX_REPLAY_IDS:
        raise BadInputError(f"replay at most {MAX_REPLAY_IDS} ids at once; use endpoint_id "
                            "or all=true for more")
    now = platform.clock.now()
    with platform.database.write() as uow:
        if ids:
            for delivery_id in dict.fromkeys(ids):
                found = uow.deliveries.get(tenant_id, delivery_id)
                if found is None:
                    raise NotFoundError(f"no delivery {delivery_id!r}")
                if found.status != DEAD:
                    raise BadInputError(f"delivery {delivery_id!r} is {found.status}, not "
                                        "dead; only dead-lettered deliveries are replayed")
            replayed = uow.deliveries.replay(tenant_id, list(dict.fromkeys(ids)), now)
        else:
            if endpoint_id is not None:
                get_endpoint(uow, tenant_id, endpoint_id)
            replayed = uow.deliveries.replay(tenant_id, None, now, endpoint_id=endpoint_id)
        if replayed:
            # the replayed rows are due now; which ones the workers find by claiming
            announce(platform, uow, ["replay"])
    return replayed
