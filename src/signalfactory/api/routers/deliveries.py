"""The outbox over HTTP: deliveries with their attempts, and the dead-letter queue.

Reads need any role, replays the trader role. Another tenant's delivery answers 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from signalfactory.api.auth import PrincipalDep, TraderDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Problem, RequestModel, alternatives
from signalfactory.domain.delivery import DEAD, Delivery, DeliveryAttempt
from signalfactory.services.delivery import records

router = APIRouter(prefix="/api/v1", tags=["delivery"], responses=AUTH_RESPONSES)

DeliveryStatus = Literal["pending", "sending", "delivered", "dead", "suppressed"]
DELIVERY_ID = Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
ID_QUERY = Query(ge=1, le=2**31 - 1)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such delivery in this tenant"}}


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None

    @classmethod
    def of(cls, a: DeliveryAttempt) -> AttemptOut:
        return cls(attempt=a.attempt, started_at=a.started_at, status_code=a.status_code,
                   latency_ms=a.latency_ms, error=a.error, response_excerpt=a.response_excerpt)


class DeliveryOut(BaseModel):
    id: str = Field(description="The message id: webhook-id on every attempt")
    endpoint_id: int
    subscription_id: int | None
    signal_id: int | None
    campaign_id: int | None
    priority: int
    status: DeliveryStatus
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(id=d.id, endpoint_id=d.endpoint_id, subscription_id=d.subscription_id,
                   signal_id=d.signal_id, campaign_id=d.campaign_id, priority=d.priority,
                   status=d.status,  # type: ignore[arg-type]  # one of DELIVERY_STATUSES
                   payload=dict(d.payload), attempts=d.attempts,
                   next_attempt_at=d.next_attempt_at, last_error=d.last_error,
                   created_at=d.created_at, delivered_at=d.delivered_at)


class DeliveryDetail(DeliveryOut):
    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_after: str | None = Field(description="Pass as ?after= for the next page; null at "
                                               "the end")


class ReplayIn(RequestModel):
    # exactly one selection (the service checks it; the document says it)
    model_config = ConfigDict(json_schema_extra=alternatives((
        ("ids", {"type": "array", "minItems": 1}), "endpoint_id", ("all", {"const": True}))))

    ids: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        default=None, max_length=records.MAX_REPLAY_IDS)
    endpoint_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    all: StrictBool = Field(default=False, description="Every dead delivery of this tenant")


class Replayed(BaseModel):
    replayed: int


def _page(items: list[Delivery], limit: int) -> DeliveryPage:
    return DeliveryPage(items=[DeliveryOut.of(d) for d in items],
                        next_after=items[-1].id if len(items) == limit else None)


@router.get("/deliveries", response_model=DeliveryPage,
            summary="Deliveries of this tenant, oldest first, filtered")
def list_deliveries(principal: PrincipalDep, platform: PlatformDep,
                    status: Annotated[DeliveryStatus | None, Query()] = None,
                    endpoint: Annotated[int | None, ID_QUERY] = None,
                    subscription: Annotated[int | None, ID_QUERY] = None,
                    campaign: Annotated[int | None, ID_QUERY] = None,
                    channel: Annotated[Literal["webhook", "apprise", "email"] | None,
                                       Query()] = None,
                    after: Annotated[str | None, Query(max_length=40,
                                                       pattern=r"^[A-Za-z0-9_-]+$")] = None,
                    limit: Annotated[int, Query(ge=1, le=records.MAX_PAGE)] = 100,
                    ) -> DeliveryPage:
    with platform.database.read() as uow:
        items = records.find_deliveries(uow, principal.tenant_id, status=status,
                                        endpoint_id=endpoint, subscription_id=subscription,
                                        campaign_id=campaign, channel=channel, after=after,
                                        limit=limit)
    return _page(items, limit)


@router.get("/deliveries/dlq", response_model=DeliveryPage,
            summary="The dead-letter queue: deliveries whose every attempt failed")
def list_dead(principal: PrincipalDep, platform: PlatformDep,
              endpoint: Annotated[int | None, ID_QUERY] = None,
              after: Annotated[str | None, Query(max_length=40,
                                                 pattern=r"^[A-Za-z0-9_-]+$")] = None,
              limit: Annotated[int, Query(ge=1, le=records.MAX_PAGE)] = 100) -> DeliveryPage:
    with platform.database.read() as uow:
        items = records.find_deliveries(uow, principal.tenant_id, status=DEAD,
                                        endpoint_id=endpoint, after=after, limit=limit)
    return _page(items, limit)


@router.post("/deliveries/dlq/replay", response_model=Replayed,
             summary="Send dead deliveries again: ids, an endpoint's, or all",
             responses={404: {"model": Problem,
                              "description": "No such delivery or endpoint"}})
def replay(body: ReplayIn, principal: TraderDep, platform: PlatformDep) -> Replayed:
    return Replayed(replayed=records.replay_dead(
        platform, principal.tenant_id, ids=body.ids or (), endpoint_id=body.endpoint_id,
        replay_all=body.all))


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail, responses=NOT_FOUND,
            summary="One delivery with every attempt")
def get_delivery(principal: PrincipalDep, platform: PlatformDep,
                 delivery_id: str = DELIVERY_ID) -> DeliveryDetail:
    with platform.database.read() as uow:
        found = records.get_delivery(uow, principal.tenant_id, delivery_id)
    return DeliveryDetail(**DeliveryOut.of(found.delivery).model_dump(),
                          attempt_log=[AttemptOut.of(a) for a in found.attempts])
