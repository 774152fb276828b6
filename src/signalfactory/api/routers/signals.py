"""Stored signals over HTTP: filtered pages with a cursor."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from signalfactory.api.auth import CredentialsDep, authenticate_scope
from signalfactory.api.cached import cached_json
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Symbol, Time
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.signals import SignalRow, StoredSignal
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork
from signalfactory.services.signals.evaluation import signal_page_rows

router = APIRouter(prefix="/api/v1", responses=AUTH_RESPONSES)


class SignalOut(BaseModel):
    id: int
    bar_ts: str
    symbol: str
    side: str
    strategy: str
    strategy_version: int
    timeframe: str
    score: float | None
    price: float
    values: dict[str, float]
    created_at: str | None
    code_hash: str = Field(description="sha256 of the code that produced the signal (for an "
                                       "uploaded Python strategy: of its source)")

    @classmethod
    def of(cls, s: StoredSignal) -> SignalOut:
        return cls(id=s.id, bar_ts=s.bar_ts.isoformat(), symbol=s.symbol, side=s.side,
                   strategy=s.strategy, strategy_version=s.strategy_version,
                   timeframe=s.timeframe, score=s.score, price=s.price,
                   values=dict(s.values),
                   created_at=s.created_at.isoformat() if s.created_at else None,
                   code_hash=s.code_hash)


class SignalPage(BaseModel):
    items: list[SignalOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= to get the next page; null "
                                                "at the end")


def _decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        value = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadInputError("cursor is not valid; use the next_cursor of a previous page")\
            from None
    if not 0 <= value < 2**63:  # ids are 64-bit
        raise BadInputError("cursor is not valid; use the next_cursor of a previous page")
    return value


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def page_json(rows: list[SignalRow], limit: int) -> str:
    """A ``SignalPage`` body written straight from the rows: orjson writes each row's keys in
    order, the same bytes ``SignalPage.model_dump_json`` gives (a test holds the two equal)
    without a model per row."""
    next_cursor = _encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
    return orjson.dumps({"items": rows, "next_cursor": next_cursor}).decode()


def signal_page(platform: Platform, scope: Scope, *, since: datetime | None,
                symbol: str | None, strategy: str | None, side: str | None,
                min_score: float | None, cursor: str | None, limit: int) -> Response:
    """The page for validated parameters, in the caller's worker thread: one hop for the key
    lookup, the cache and the page together. The key first: an unknown or revoked one is a
    401 whatever the cursor says.

    Without a replica the key's row and the page are read on one connection (the page reads
    the primary anyway): one checkout a request instead of two. With a replica the key is
    read on the primary and the page on the replica."""
    filters = {"since": since, "symbol": symbol, "strategy": strategy, "side": side,
               "min_score": min_score}
    if platform.database.has_replica:
        principal = authenticate_scope(platform, scope)
        return _page(platform, None, principal.tenant_id, filters, cursor, limit)
    with platform.database.read(primary=True) as uow:
        principal = authenticate_scope(platform, scope, uow)
        return _page(platform, uow, principal.tenant_id, filters, cursor, limit)


def _page(platform: Platform, uow: UnitOfWork | None, tenant_id: int,
          filters: dict[str, Any], cursor: str | None, limit: int) -> Response:
    """The page in ``uow``, or in a read of its own (the replica's, when there is one)."""
    after_id = _decode_cursor(cursor)

    def rows_in(uow: UnitOfWork) -> list[SignalRow]:
        return signal_page_rows(uow, tenant_id, after_id=after_id, limit=limit, **filters)

    def load() -> str:
        if uow is not None:
            return page_json(rows_in(uow), limit)
        with platform.database.read() as own:
            return page_json(rows_in(own), limit)

    since = filters["since"]
    # Every signal write (evaluation, scan, live, retention) bumps the "signals" generation.
    return cached_json(platform, "signals", (since.isoformat() if since else None,
                                             filters["symbol"], filters["strategy"],
                                             filters["side"], filters["min_score"], after_id,
                                             limit),
                       load, tenant_id=tenant_id)


@router.get("/signals", response_model=SignalPage, tags=["signals"],
            summary="Signals, oldest first, with filters and cursor pagination")
async def get_signals(request: Request, _key: CredentialsDep, platform: PlatformDep,
                      since: Annotated[Time | None, Query(examples=["2024-01-01"])] = None,
                      symbol: Annotated[Symbol | None, Query()] = None,
                      strategy: str | None = Query(default=None, max_length=100),
                      side: str | None = Query(default=None, pattern="^(long|short|exit)$"),
                      min_score: float | None = Query(default=None, allow_inf_nan=False),
                      cursor: str | None = Query(default=None, max_length=64),
                      limit: int = Query(default=100, ge=1, le=1000)) -> Response:
    # Most requests never get here: api/hot_reads.py serves them with the same parameters
    # and ``signal_page``; this route answers the rest (HEAD, invalid parameters: the 422)
    # and documents the endpoint.
    return await run_in_threadpool(signal_page, platform, request.scope, since=since,
                                   symbol=symbol, strategy=strategy, side=side,
                                   min_score=min_score, cursor=cursor, limit=limit)
