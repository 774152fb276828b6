"""Strategies, signals and scans over HTTP."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from signalfactory.adapters.storage.tables import strategies
from signalfactory.adapters.storage.unit_of_work import SqlUnitOfWork
from signalfactory.api.auth import PrincipalDep, TraderDep
from signalfactory.api.cached import cached_response
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Problem, RequestModel
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.rules import check_rule
from signalfactory.services.accounts.quotas import enforce_quota
from signalfactory.services.platform import Platform
from signalfactory.services.scans.scan import ScanRequest, get_scan, run_scan
from signalfactory.services.signals.evaluation import query_signals
from signalfactory.services.strategies.catalog import (
    add_strategy,
    ensure_builtins,
    get_strategy,
    list_strategies,
)

router = APIRouter(prefix="/api/v1", responses=AUTH_RESPONSES)

# Row ids are 32-bit integers in the database: larger ids name nothing and are refused (422)
# instead of overflowing the driver.
ROW_ID = Path(ge=1, le=2**31 - 1)
STRATEGY_NOT_FOUND = {404: {"model": Problem, "description": "No such strategy (or version)"}}

RULE_EXAMPLE = ("entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70\n"
                "exit: crosses_below(sma(close, 10), sma(close, 30))")


class StrategyOut(BaseModel):
    id: int
    name: str
    kind: str
    version: int
    rule_text: str | None
    class_path: str | None
    parameters: dict[str, Any]
    timeframe: str
    code_hash: str
    created_by: str
    created_at: str | None
    builtin: bool
    description: str
    versions: int


class StrategyList(BaseModel):
    items: list[StrategyOut]


class RuleIn(RequestModel):
    rule: str = Field(min_length=1, max_length=20_000, examples=[RULE_EXAMPLE])


class StrategyIn(RequestModel):
    name: str = Field(min_length=1, max_length=100, examples=["my_sma_cross"])
    rule: str = Field(min_length=1, max_length=20_000, examples=[RULE_EXAMPLE])
    timeframe: str = Field(default="1d", max_length=8, examples=["1d"])
    description: str = Field(default="", max_length=2000)


class ValidationOut(BaseModel):
    valid: bool
    canonical: str
    lookback: int


def _builtins_stored(platform: Platform) -> None:
    """Store the shipped strategies once per process, on the primary, so that GETs only read
    (from the replica when there is one)."""
    if platform.builtins_stored.is_set():
        return
    with platform.engine.begin() as conn:
        ensure_builtins(conn)
    platform.cache.invalidate("strategies")
    platform.builtins_stored.set()


@router.get("/strategies", response_model=StrategyList, tags=["strategies"],
            summary="Strategies visible to you: built-ins and your own, newest versions")
def get_strategies(principal: PrincipalDep, platform: PlatformDep) -> Response:
    _builtins_stored(platform)

    def load() -> StrategyList:
        with platform.reader.connect() as conn:
            items = list_strategies(conn, principal.tenant_id)
        return StrategyList(items=[StrategyOut(**s.as_dict()) for s in items])

    return cached_response(platform, "strategies", ("list",), load,
                           tenant_id=principal.tenant_id)


@router.get("/strategies/{name}", response_model=StrategyOut, tags=["strategies"],
            summary="One strategy (newest version, or ?version=N)",
            responses=STRATEGY_NOT_FOUND)
def get_one_strategy(principal: PrincipalDep, platform: PlatformDep,
                     name: str = Path(max_length=100),
                     version: int | None = Query(default=None, ge=1, le=2**31 - 1)
                     ) -> Response:
    def load() -> StrategyOut:
        with platform.reader.connect() as conn:
            return StrategyOut(**get_strategy(conn, principal.tenant_id, name,
                                              version).as_dict())

    return cached_response(platform, "strategies", ("one", name.strip().lower(), version),
                           load, tenant_id=principal.tenant_id)


@router.post("/strategies/validate", response_model=ValidationOut, tags=["strategies"],
             summary="Check a rule; errors give the position and what was expected",
             responses={422: {"description": "The rule is invalid; `position` says where"}})
def validate_rule(body: RuleIn, _principal: PrincipalDep) -> ValidationOut:
    checked = check_rule(body.rule)
    return ValidationOut(valid=True, canonical=checked.canonical_text, lookback=checked.lookback)


@router.post("/strategies", response_model=StrategyOut, status_code=201, tags=["strategies"],
             summary="Add a rule strategy, or a new version of one",
             responses={200: {"model": StrategyOut,
                              "description": "The same rule is already the newest version: "
                                             "nothing new was stored"}})
def create_strategy(body: StrategyIn, principal: TraderDep, platform: PlatformDep,
                    response: Response) -> StrategyOut:
    with platform.database.write() as uow:
        # TRANSITIONAL (accounts): quotas take a unit of work; the strategy SQL below uses
        # its connection until strategies are behind their repository.
        conn = cast(SqlUnitOfWork, uow).connection
        exists = conn.execute(sa.select(strategies.c.id).where(
            strategies.c.tenant_id == principal.tenant_id,
            strategies.c.name == body.name.strip().lower())).first()
        if exists is None:
            enforce_quota(uow, principal, "strategies")
        item, created = add_strategy(conn, principal.tenant_id, body.name, rule_text=body.rule,
                                     timeframe=body.timeframe, description=body.description,
                                     created_by=principal.key_prefix or "api")
    platform.cache.invalidate("strategies")
    if not created:
        response.status_code = 200
    return StrategyOut(**item.as_dict())


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


@router.get("/signals", response_model=SignalPage, tags=["signals"],
            summary="Signals, oldest first, with filters and cursor pagination")
def get_signals(principal: PrincipalDep, platform: PlatformDep,
                since: datetime | None = Query(default=None, examples=["2024-01-01"]),
                symbol: str | None = Query(default=None, max_length=64),
                strategy: str | None = Query(default=None, max_length=100),
                side: str | None = Query(default=None, pattern="^(long|short|exit)$"),
                min_score: float | None = Query(default=None, allow_inf_nan=False),
                cursor: str | None = Query(default=None, max_length=64),
                limit: int = Query(default=100, ge=1, le=1000)) -> Response:
    after_id = _decode_cursor(cursor)

    def load() -> SignalPage:
        # Opened and closed in this one thread (a yield dependency would hop threads three
        # times); the page is validated once, not again by the response model.
        with platform.reader.connect() as conn:
            rows = query_signals(conn, principal.tenant_id, since=since, symbol=symbol,
                                 strategy=strategy, side=side, min_score=min_score,
                                 after_id=after_id, limit=limit)
        next_cursor = _encode_cursor(rows[-1]["id"]) if len(rows) == limit else None
        return SignalPage.model_validate({"items": rows, "next_cursor": next_cursor})

    # Every signal write (evaluation, scan, live, retention) bumps the "signals" generation.
    return cached_response(platform, "signals", (since.isoformat() if since else None,
                                                 symbol, strategy, side, min_score, after_id,
                                                 limit), load, tenant_id=principal.tenant_id)


class ScanIn(RequestModel):
    strategy: str | None = Field(default=None, max_length=100, examples=["sma_cross"])
    rule: str | None = Field(default=None, max_length=20_000)
    universe: str | None = Field(default=None, max_length=128, examples=["sector=technology"])
    as_of: datetime | None = Field(default=None, examples=["2024-06-28"])
    top: int | None = Field(default=None, ge=1, le=10_000, examples=[20])
    timeframe: str | None = Field(default=None, max_length=8, examples=["1d"])
    parameters: dict[str, float | int] | None = Field(
        default=None, description="Overrides for a built-in strategy's parameters",
        examples=[{"fast": 5, "slow": 20}])


class ScanResult(BaseModel):
    rank: int
    symbol: str
    side: str
    score: float | None
    price: float
    bar_ts: str
    values: dict[str, float]


class ScanOut(BaseModel):
    id: int
    status: str
    error: str | None
    strategy_version_id: int | None
    rule_text: str | None
    universe: str | None
    timeframe: str
    as_of: str | None
    top: int | None
    instruments: int
    matches: int
    created_at: str | None
    finished_at: str | None
    results: list[ScanResult]


@router.post("/scans", response_model=ScanOut, status_code=201, tags=["scans"],
             summary="Scan a universe with a strategy or rule and store the ranking",
             responses={404: {"model": Problem, "description": "No such strategy, or no "
                                                               "instruments with bars"}})
def create_scan(body: ScanIn, principal: TraderDep, platform: PlatformDep) -> ScanOut:
    if (body.strategy is None) == (body.rule is None):
        raise BadInputError("give exactly one of 'strategy' or 'rule'")
    with platform.database.write() as uow:
        ensure_builtins(cast(SqlUnitOfWork, uow).connection)  # TRANSITIONAL (accounts)
        enforce_quota(uow, principal, "scans")
    request = ScanRequest(tenant_id=principal.tenant_id, strategy=body.strategy,
                          rule=body.rule, universe=body.universe, as_of=body.as_of,
                          top=body.top, timeframe=body.timeframe, parameters=body.parameters)
    return ScanOut(**run_scan(platform, request))


@router.get("/scans/{scan_id}", response_model=ScanOut, tags=["scans"],
            summary="A stored scan and its ranked results",
            responses={404: {"model": Problem, "description": "No such scan in this tenant"}})
def read_scan(principal: PrincipalDep, platform: PlatformDep,
              scan_id: int = ROW_ID) -> Response:
    # A stored scan never changes, so its entry needs no invalidation; misses (404) are
    # not cached.
    return cached_response(platform, "scans", ("one", scan_id),
                           lambda: ScanOut(**get_scan(platform, principal.tenant_id, scan_id)),
                           tenant_id=principal.tenant_id)
