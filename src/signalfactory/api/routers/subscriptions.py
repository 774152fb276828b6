"""Subscriptions over HTTP: named filters for the live stream, counted by the tier quota."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from signalfactory.api.auth import PrincipalDep, TraderDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, RequestModel, Symbol
from signalfactory.domain.streaming import Subscription, iso_utc
from signalfactory.services.streaming.subscriptions import (
    MAX_STRATEGIES,
    MAX_SYMBOLS,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_subscriptions,
)

router = APIRouter(prefix="/api/v1", tags=["stream"], responses=AUTH_RESPONSES)

SUBSCRIPTION_ID = Path(ge=1, le=2**31 - 1)


class SubscriptionIn(RequestModel):
    name: str = Field(min_length=1, max_length=100, examples=["tech momentum"])
    strategies: list[str] = Field(
        default_factory=list, max_length=MAX_STRATEGIES, examples=[["sma_cross"]],
        description="Strategy names; empty = every strategy you can see")
    symbols: list[Symbol] = Field(default_factory=list, max_length=MAX_SYMBOLS,
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


    @classmethod
    def of(cls, sub: Subscription) -> SubscriptionOut:
        return cls(id=sub.id, name=sub.name, strategies=list(sub.strategies),
                   symbols=list(sub.symbols), min_score=sub.min_score,
                   created_at=iso_utc(sub.created_at))


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


@router.post("/subscriptions", response_model=SubscriptionOut, status_code=201,
             summary="Subscribe to signals (stream with ?subscription=ID)",
             responses={404: {"description": "A named strategy does not exist"},
                        409: {"description": "A subscription of that name exists"}})
def post_subscription(body: SubscriptionIn, principal: TraderDep,
                      platform: PlatformDep) -> SubscriptionOut:
    return SubscriptionOut.of(create_subscription(
        platform, principal.tenant_id, body.name, strategies_=body.strategies,
        symbols=body.symbols, min_score=body.min_score, quota=principal))


@router.get("/subscriptions", response_model=SubscriptionList, summary="Your subscriptions")
def get_subscriptions(principal: PrincipalDep, platform: PlatformDep) -> SubscriptionList:
    with platform.database.read() as uow:
        items = list_subscriptions(uow, principal.tenant_id)
    return SubscriptionList(items=[SubscriptionOut.of(s) for s in items])


@router.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut,
            summary="One subscription", responses={404: {"description": "No such subscription"}})
def get_one_subscription(principal: PrincipalDep, platform: PlatformDep,
                         subscription_id: int = SUBSCRIPTION_ID) -> SubscriptionOut:
    with platform.database.read() as uow:
        return SubscriptionOut.of(get_subscription(uow, principal.tenant_id, subscription_id))


@router.delete("/subscriptions/{subscription_id}", status_code=204,
               summary="Delete a subscription (open streams using it keep their filter)",
               responses={404: {"description": "No such subscription"}})
def remove_subscription(principal: TraderDep, platform: PlatformDep,
                        subscription_id: int = SUBSCRIPTION_ID) -> Response:
    with platform.database.write() as uow:
        delete_subscription(uow, principal.tenant_id, subscription_id)
    return Response(status_code=204)
