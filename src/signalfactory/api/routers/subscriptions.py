"""Subscriptions over HTTP: named filters for the live stream, counted by the tier quota."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from signalfactory.api.auth import PrincipalDep, TraderDep
from signalfactory.api.deps import PlatformDep, ReadConnDep
from signalfactory.api.quotas import enforce_quota, register_counter
from signalfactory.api.schemas import AUTH_RESPONSES, RequestModel
from signalfactory.services.streaming.subscriptions import (
    MAX_STRATEGIES,
    MAX_SYMBOLS,
    count_subscriptions,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_subscriptions,
)

router = APIRouter(prefix="/api/v1", tags=["stream"], responses=AUTH_RESPONSES)

register_counter("subscriptions", count_subscriptions)

SUBSCRIPTION_ID = Path(ge=1, le=2**31 - 1)


class SubscriptionIn(RequestModel):
    name: str = Field(min_length=1, max_length=100, examples=["tech momentum"])
    strategies: list[str] = Field(
        default_factory=list, max_length=MAX_STRATEGIES, examples=[["sma_cross"]],
        description="Strategy names; empty = every strategy you can see")
    symbols: list[str] = Field(default_factory=list, max_length=MAX_SYMBOLS,
                               examples=[["AAPL", "MSFT"]],
                               description="Symbols; empty = every symbol")
    min_score: float | None = Field(default=None, allow_inf_nan=False, examples=[0.5],
                                    description="Only signals scoring at least this")


class SubscriptionOut(BaseModel):
    id: int
    name: str
    strategies: list[str]
    symbols: list[str]
    min_score: float | None
    created_at: str | None


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


@router.post("/subscriptions", response_model=SubscriptionOut, status_code=201,
             summary="Subscribe to signals (stream with ?subscription=ID)",
             responses={404: {"description": "A named strategy does not exist"},
                        409: {"description": "A subscription of that name exists"}})
def post_subscription(body: SubscriptionIn, principal: TraderDep,
                      platform: PlatformDep) -> SubscriptionOut:
    with platform.engine.begin() as conn:
        enforce_quota(conn, principal, "subscriptions")
        item = create_subscription(conn, principal.tenant_id, body.name,
                                   strategies_=body.strategies, symbols=body.symbols,
                                   min_score=body.min_score)
    return SubscriptionOut(**item)


@router.get("/subscriptions", response_model=SubscriptionList, summary="Your subscriptions")
def get_subscriptions(principal: PrincipalDep, conn: ReadConnDep) -> SubscriptionList:
    return SubscriptionList(items=[SubscriptionOut(**s) for s in
                                   list_subscriptions(conn, principal.tenant_id)])


@router.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut,
            summary="One subscription", responses={404: {"description": "No such subscription"}})
def get_one_subscription(principal: PrincipalDep, conn: ReadConnDep,
                         subscription_id: int = SUBSCRIPTION_ID) -> SubscriptionOut:
    return SubscriptionOut(**get_subscription(conn, principal.tenant_id, subscription_id))


@router.delete("/subscriptions/{subscription_id}", status_code=204,
               summary="Delete a subscription (open streams using it keep their filter)",
               responses={404: {"description": "No such subscription"}})
def remove_subscription(principal: TraderDep, platform: PlatformDep,
                        subscription_id: int = SUBSCRIPTION_ID) -> Response:
    with platform.engine.begin() as conn:
        delete_subscription(conn, principal.tenant_id, subscription_id)
    return Response(status_code=204)
