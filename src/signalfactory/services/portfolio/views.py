"""Orders, positions and portfolio figures of a tenant, as the API and the CLI show them.

Another tenant's bot or order answers exactly like a missing one. Portfolio figures are the
trading core's (``domain.trading.portfolio``): each bot's equity marks as an ``EquityCurve``
with the bot's allocation as its start, the tenant's the sum of its bots' curves
(``combine_curves``), figures by the backtests' definitions, annualised by the bot's
timeframe (the tenant's by UTC days, ``daily_curve``: its bots may run on different
timeframes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from signalfactory.domain.backtest.metrics import CurveFigures
from signalfactory.domain.errors import BadInputError, NotFoundError
from signalfactory.domain.timeframes import Timeframe
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.domain.trading.bots import Bot
from signalfactory.domain.trading.orders import ORDER_STATUSES, Order, Position
from signalfactory.domain.trading.portfolio import (
    EquityCurve,
    combine_curves,
    daily_curve,
    figures,
)
from signalfactory.services.platform import Platform
from signalfactory.services.ports import UnitOfWork

MAX_PAGE = 1000
_SECONDS_PER_YEAR = 365.25 * 86_400  # crypto markets trade every day
_SYMBOL_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/:._-")


def _bot(uow: UnitOfWork, tenant_id: int, bot_id: int) -> Bot:
    found = uow.bots.get(tenant_id, bot_id)
    if found is None:
        raise NotFoundError(f"no bot {bot_id}; list yours with GET /api/v1/bots")
    return found


def list_orders(platform: Platform, tenant_id: int, *, bot_id: int | None = None,
                status: str | None = None, symbol: str | None = None, limit: int = 100,
                offset: int = 0) -> list[Order]:
    """The tenant's orders, newest first."""
    if status is not None and status not in ORDER_STATUSES:
        raise BadInputError(f"status must be one of {', '.join(ORDER_STATUSES)}",
                            rule="status")
    if symbol is not None and (not symbol or len(symbol) > 64
                               or not set(symbol) <= _SYMBOL_CHARS):
        raise BadInputError("symbol: letters, digits and / : . _ - only", rule="symbol")
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise BadInputError(f"limit must be 1..{MAX_PAGE} and offset 0 or more", rule="page")
    with platform.database.read() as uow:
        if bot_id is not None:
            _bot(uow, tenant_id, bot_id)
        return uow.orders.find(tenant_id=tenant_id, bot_id=bot_id,
                               statuses=[status] if status else None, symbol=symbol,
                               limit=limit, offset=offset)


def get_order(platform: Platform, tenant_id: int, order_id: int) -> Order:
    with platform.database.read() as uow:
        found = uow.orders.get(tenant_id, order_id)
    if found is None:
        raise NotFoundError(f"no order {order_id}")
    return found


def list_positions(platform: Platform, tenant_id: int, *, bot_id: int | None = None,
                   open_only: bool = True) -> list[Position]:
    with platform.database.read() as uow:
        if bot_id is not None:
            _bot(uow, tenant_id, bot_id)
        return uow.positions.find(tenant_id=tenant_id, bot_id=bot_id, open_only=open_only)


@dataclass(frozen=True)
class PortfolioLine:
    """A bot's (or, with ``bot`` None, the tenant's) equity, PnL and figures."""

    bot: Bot | None
    allocation: float
    equity: float
    realised_pnl: float
    unrealised_pnl: float
    marks: int
    figures: CurveFigures | None


@dataclass(frozen=True)
class Portfolio:
    bots: list[PortfolioLine]
    total: PortfolioLine


def _bars_per_year(bot: Bot) -> float:
    return _SECONDS_PER_YEAR / Timeframe.parse(bot.timeframe).seconds


def _curve(uow: UnitOfWork, bot: Bot) -> tuple[EquityCurve, float, float]:
    marks = uow.bot_marks.series(bot.id)
    curve = EquityCurve.of([(datetime_to_ns(m.ts), m.equity) for m in marks], bot.allocation)
    last = marks[-1] if marks else None
    return (curve, last.realised_pnl if last else 0.0, last.unrealised_pnl if last else 0.0)


def _figures(curve: EquityCurve, bars_per_year: float) -> CurveFigures | None:
    if len(curve) == 0 or not curve.initial > 0:
        return None
    return figures(curve, bars_per_year)


def portfolio(platform: Platform, tenant_id: int, *, bot_id: int | None = None) -> Portfolio:
    """Every bot of the tenant (or one) and their sum."""
    with platform.database.read() as uow:
        bots = ([_bot(uow, tenant_id, bot_id)] if bot_id is not None
                else uow.bots.find(tenant_id=tenant_id))
        curves = [(bot, *_curve(uow, bot)) for bot in bots]
    lines = [PortfolioLine(bot=bot, allocation=bot.allocation,
                           equity=float(c.equity[-1]) if len(c) else bot.allocation,
                           realised_pnl=realised, unrealised_pnl=unrealised, marks=len(c),
                           figures=_figures(c, _bars_per_year(bot)))
             for bot, c, realised, unrealised in curves]
    marked = [c for _, c, _, _ in curves if len(c)]
    total_figures = None
    if marked:
        combined = daily_curve(combine_curves(marked))
        total_figures = _figures(combined, 365.25)
    total = PortfolioLine(bot=None, allocation=math.fsum(b.allocation for b in bots),
                          equity=math.fsum(line.equity for line in lines),
                          realised_pnl=math.fsum(line.realised_pnl for line in lines),
                          unrealised_pnl=math.fsum(line.unrealised_pnl for line in lines),
                          marks=sum(line.marks for line in lines), figures=total_figures)
    return Portfolio(bots=lines, total=total)
