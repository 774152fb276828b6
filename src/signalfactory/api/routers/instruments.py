"""Instruments: what the store holds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from signalfactory.api.auth import PrincipalDep
from signalfactory.api.cached import cached_response
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES

router = APIRouter(prefix="/api/v1", tags=["instruments"], responses=AUTH_RESPONSES)


class Instrument(BaseModel):
    id: int
    symbol: str
    venue: str
    asset_class: str
    currency: str
    tags: dict[str, Any]


class InstrumentList(BaseModel):
    items: list[Instrument]
    count: int


@router.get("/instruments", response_model=InstrumentList,
            summary="List instruments, optionally by tag (sector=technology)")
def get_instruments(_principal: PrincipalDep, platform: PlatformDep,
                    tag: str | None = Query(default=None, max_length=128,
                                            examples=["sector=technology"]),
                    limit: int = Query(default=1000, ge=1, le=10000)) -> Response:
    def load() -> InstrumentList:
        with platform.database.read() as uow:
            found = uow.instruments.find(tag=tag)[:limit]
        items = [Instrument(id=i.id, symbol=i.symbol, venue=i.venue, asset_class=i.asset_class,
                            currency=i.currency, tags=dict(i.tags)) for i in found]
        return InstrumentList(items=items, count=len(items))

    # Instruments are shared by all tenants; bar writes that add or retag them invalidate.
    return cached_response(platform, "instruments", ("list", tag, limit), load)
