"""Bots over HTTP: create (stopped), start, stop, status. Changes need ``trader``; reading
needs any role. Another tenant's bot answers 404, exactly like a missing one."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from signalfactory.api.auth import PrincipalDep, TraderDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.schemas import AUTH_RESPONSES, Problem, RequestModel
from signalfactory.domain.trading.bots import Bot, RiskLimits
from signalfactory.domain.trading.orders import Position
from signalfactory.services.trading import bots as service

router = APIRouter(prefix="/api/v1", tags=["trading"], responses=AUTH_RESPONSES)

BOT_ID = Path(ge=1, le=2**31 - 1)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such bot in this tenant"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND, 409: {"model": Problem, "description": "Already running / stopped"}}

Money = Field(default=None, gt=0, allow_inf_nan=False)


class LimitsIn(RequestModel):
    max_order_notional: float | None = Money
    max_symbol_notional: float | None = Money
    max_open_positions: int | None = Field(default=None, ge=1, le=100_000)
    max_orders_per_minute: int | None = Field(default=None, ge=1, le=100_000)
    daily_loss_limit: float | None = Money
    max_drawdown: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    confirm_marks: int = Field(default=2, ge=1, le=100)


class BotIn(RequestModel):
    name: str = Field(min_length=1, max_length=100, examples=["btc-trend"])
    strategy: str = Field(min_length=1, max_length=100, description="Stored strategy name")
    version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                description="Strategy version (default: the newest)")
    account_id: int = Field(ge=1, le=2**31 - 1)
    symbols: list[str] = Field(min_length=1, max_length=500)
    timeframe: str | None = Field(default=None, max_length=8)
    allocation: float = Field(gt=0, allow_inf_nan=False)
    sizing: Literal["fraction", "cash", "units"] = "fraction"
    size_value: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    limits: LimitsIn = Field(default_factory=LimitsIn)
    fee_pct: float = Field(default=0.0, ge=0, lt=100, allow_inf_nan=False)
    slippage_bps: float = Field(default=0.0, ge=0, lt=10_000, allow_inf_nan=False)
    direction: Literal["long", "short", "both"] = "long"


class BotOut(BaseModel):
    id: int
    name: str
    strategy_version_id: int
    account_id: int
    symbols: list[str]
    timeframe: str
    allocation: float
    sizing: str
    size_value: float
    limits: dict[str, Any]
    status: str = Field(description="running | stopped")
    state: str = Field(description="active | reducing | halted (the bot's own state)")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, bot: Bot) -> BotOut:
        return cls(id=bot.id, name=bot.name, strategy_version_id=bot.strategy_version_id,
                   account_id=bot.account_id, symbols=list(bot.symbols),
                   timeframe=bot.timeframe, allocation=bot.allocation, sizing=bot.sizing,
                   size_value=bot.size_value, limits=asdict(bot.limits), status=bot.status,
                   state=bot.state, created_at=bot.created_at, updated_at=bot.updated_at)


class PositionOut(BaseModel):
    bot_id: int
    symbol: str
    quantity: float
    average_price: float
    realised_pnl: float
    updated_at: datetime

    @classmethod
    def of(cls, p: Position) -> PositionOut:
        return cls(**asdict(p))


class BotStatusOut(BaseModel):
    bot: BotOut
    effective_state: str = Field(description="The state the bot trades under now")
    state_reason: str | None = Field(description="What imposes it (a kill switch, a limit)")
    last_bar: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    started_at: datetime | None
    reconciled_at: datetime | None
    working_orders: int
    positions: list[PositionOut]
    equity: float | None
    realised_pnl: float | None
    unrealised_pnl: float | None
    marked_at: datetime | None


class BotList(BaseModel):
    items: list[BotOut]


def _status(status: service.BotStatus) -> BotStatusOut:
    from signalfactory.domain.timestamps import ns_to_datetime

    runtime, mark, effective = status.runtime, status.last_mark, status.effective
    return BotStatusOut(
        bot=BotOut.of(status.bot), effective_state=effective.state,
        state_reason=effective.message if effective.rule else None,
        last_bar=ns_to_datetime(runtime.last_bar_ns) if runtime.last_bar_ns else None,
        lease_owner=runtime.lease_owner, lease_until=runtime.lease_until,
        started_at=runtime.started_at, reconciled_at=runtime.reconciled_at,
        working_orders=status.working_orders,
        positions=[PositionOut.of(p) for p in status.positions],
        equity=mark.equity if mark else None,
        realised_pnl=mark.realised_pnl if mark else None,
        unrealised_pnl=mark.unrealised_pnl if mark else None,
        marked_at=mark.ts if mark else None)


@router.post("/bots", response_model=BotOut, status_code=201,
             responses={404: {"model": Problem, "description": "No such strategy or account"}},
             summary="Create a bot (stopped): a stored strategy on symbols of an account")
def post_bot(body: BotIn, principal: TraderDep, platform: PlatformDep) -> BotOut:
    return BotOut.of(service.create_bot(
        platform, principal.tenant_id, name=body.name, strategy=body.strategy,
        version=body.version, account_id=body.account_id, symbols=body.symbols,
        timeframe=body.timeframe, allocation=body.allocation, sizing=body.sizing,
        size_value=body.size_value, limits=RiskLimits(**body.limits.model_dump()),
        fee_pct=body.fee_pct, slippage_bps=body.slippage_bps, direction=body.direction,
        actor=principal.audit_actor))


@router.get("/bots", response_model=BotList, summary="This tenant's bots")
def list_bots(principal: PrincipalDep, platform: PlatformDep,
              status: Literal["running", "stopped"] | None = Query(None)) -> BotList:
    return BotList(items=[BotOut.of(b) for b in
                          service.list_bots(platform, principal.tenant_id, status=status)])


@router.get("/bots/{bot_id}", response_model=BotStatusOut, responses=NOT_FOUND,
            summary="A bot's status: state, runner, positions, working orders, equity")
def get_bot(principal: PrincipalDep, platform: PlatformDep,
            bot_id: int = BOT_ID) -> BotStatusOut:
    return _status(service.bot_status(platform, principal.tenant_id, bot_id))


@router.post("/bots/{bot_id}/start", response_model=BotOut, responses=CONFLICT,
             summary="Start a bot: its runner reconciles, then trades each new bar")
def start_bot(principal: TraderDep, platform: PlatformDep, bot_id: int = BOT_ID) -> BotOut:
    return BotOut.of(service.start_bot(platform, principal.tenant_id, bot_id,
                                       actor=principal.audit_actor))


@router.post("/bots/{bot_id}/stop", response_model=BotOut, responses=CONFLICT,
             summary="Stop a bot (its working orders stay; the kill switch cancels them)")
def stop_bot(principal: TraderDep, platform: PlatformDep, bot_id: int = BOT_ID) -> BotOut:
    return BotOut.of(service.stop_bot(platform, principal.tenant_id, bot_id,
                                      actor=principal.audit_actor))
