"""Orders, positions and portfolio figures of the calling tenant (any role may read)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from signalfactory.api.auth import PrincipalDep
from signalfactory.api.deps import PlatformDep
from signalfactory.api.routers.bots import PositionOut
from signalfactory.api.schemas import AUTH_RESPONSES, Problem
from signalfactory.domain.trading.orders import ORDER_STATUSES, Order
from signalfactory.services.portfolio import views

router = APIRouter(prefix="/api/v1", tags=["trading"], responses=AUTH_RESPONSES)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such order or bot in this tenant"}}
BotFilter = Query(None, ge=1, le=2**31 - 1, description="Only this bot's")


class OrderOut(BaseModel):
    id: int
    bot_id: int | None
    account_id: int
    client_order_id: str
    exchange_order_id: str | None
    symbol: str
    side: str
    type: str
    quantity: float
    limit_price: float | None
    status: str
    filled_quantity: float
    average_price: float | None
    fee: float
    reason: str
    error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        return cls(**{name: getattr(order, name) for name in cls.model_fields})


class OrderList(BaseModel):
    items: list[OrderOut]


class PositionList(BaseModel):
    items: list[PositionOut]


class PortfolioLineOut(BaseModel):
    bot_id: int | None = Field(description="null: the tenant's total")
    bot_name: str | None
    allocation: float
    equity: float
    realised_pnl: float
    unrealised_pnl: float
    marks: int
    figures: dict[str, float | int | None] | None = Field(
        description="total_return, cagr, volatility, sharpe, sortino, calmar, max_drawdown, "
                    "var_95, cvar_95... (null until the first mark)")

    @classmethod
    def of(cls, line: views.PortfolioLine) -> PortfolioLineOut:
        figures = None
        if line.figures is not None:
            figures = {k: (v if v == v and abs(v) != float("inf") else None)
                       for k, v in asdict(line.figures).items()}
        return cls(bot_id=line.bot.id if line.bot else None,
                   bot_name=line.bot.name if line.bot else None, allocation=line.allocation,
                   equity=line.equity, realised_pnl=line.realised_pnl,
                   unrealised_pnl=line.unrealised_pnl, marks=line.marks, figures=figures)


class PortfolioOut(BaseModel):
    bots: list[PortfolioLineOut]
    total: PortfolioLineOut


@router.get("/orders", response_model=OrderList, responses=NOT_FOUND,
            summary="This tenant's orders, newest first")
def list_orders(principal: PrincipalDep, platform: PlatformDep, bot_id: int | None = BotFilter,
                status: str | None = Query(None, pattern="^(" + "|".join(ORDER_STATUSES) + ")$"),
                symbol: str | None = Query(None, min_length=1, max_length=64,
                                           pattern=r"^[A-Za-z0-9/:._-]+$"),
                limit: int = Query(100, ge=1, le=views.MAX_PAGE),
                offset: int = Query(0, ge=0, le=10_000_000)) -> OrderList:
    return OrderList(items=[OrderOut.of(o) for o in views.list_orders(
        platform, principal.tenant_id, bot_id=bot_id, status=status, symbol=symbol,
        limit=limit, offset=offset)])


@router.get("/orders/{order_id}", response_model=OrderOut, responses=NOT_FOUND,
            summary="One order")
def get_order(principal: PrincipalDep, platform: PlatformDep,
              order_id: int = Path(ge=1, le=2**62)) -> OrderOut:
    return OrderOut.of(views.get_order(platform, principal.tenant_id, order_id))


@router.get("/positions", response_model=PositionList, responses=NOT_FOUND,
            summary="This tenant's positions (open ones unless all=true)")
def list_positions(principal: PrincipalDep, platform: PlatformDep,
                   bot_id: int | None = BotFilter, all: bool = Query(False)) -> PositionList:
    return PositionList(items=[PositionOut.of(p) for p in views.list_positions(
        platform, principal.tenant_id, bot_id=bot_id, open_only=not all)])


@router.get("/portfolio", response_model=PortfolioOut, responses=NOT_FOUND,
            summary="Equity, PnL, Sharpe, Sortino, max drawdown, VaR 95 per bot and in total")
def get_portfolio(principal: PrincipalDep, platform: PlatformDep,
                  bot_id: int | None = BotFilter) -> PortfolioOut:
    result = views.portfolio(platform, principal.tenant_id, bot_id=bot_id)
    return PortfolioOut(bots=[PortfolioLineOut.of(line) for line in result.bots],
                        total=PortfolioLineOut.of(result.total))
