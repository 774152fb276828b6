"""Trading: exchange accounts (never their keys), bots with their state and start/stop, orders,
open positions, an equity chart per bot, and the kill switch per scope.

Every change goes through the JSON API (``/api/v1/accounts``, ``/bots``,
``/risk/kill-switch``), which enforces the roles: the page only decides which controls to
show (start/stop and the forms from ``trader``, the kill switch from ``admin``; the global
switch only for the platform's operators, the admins of the default tenant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from signalfactory.domain.tenants import DEFAULT_TENANT_ID
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.domain.trading.bots import BOT, GLOBAL, TENANT, Bot, KillSwitch
from signalfactory.domain.trading.orders import Order, Position
from signalfactory.domain.trading.records import TradingState
from signalfactory.domain.trading.risk import EffectiveState, effective_state
from signalfactory.services.audit.log import visible_tenant
from signalfactory.services.platform import Platform
from signalfactory.services.strategies.catalog import list_strategies
from signalfactory.services.trading import accounts as account_service
from signalfactory.services.trading.killswitch import kill_switches
from signalfactory.web.charts import equity_chart
from signalfactory.web.rendering import render
from signalfactory.web.session import PlatformDep, WebUser, WebUserDep

router = APIRouter(include_in_schema=False)
SHOWN_ORDERS = 100
#: marks per chart: the newest, enough for weeks of hourly bars. One bot's chart at a time
#: (chosen from the list; the newest bot by default) keeps the page quick with many bots.
CHART_POINTS = 2000


@dataclass(frozen=True)
class BotRow:
    bot: Bot
    effective: EffectiveState
    equity: float | None
    realised_pnl: float | None
    unrealised_pnl: float | None


@dataclass(frozen=True)
class ScopeRow:
    """One scope's kill switch and stored trading state, as the kill switch table shows it."""

    scope: str
    scope_id: int
    label: str
    switch: KillSwitch | None
    state: TradingState | None

    @property
    def switch_status(self) -> str:
        if self.switch is None or not self.switch.engaged:
            return "off"
        return "re-armed" if self.switch.rearmed else "engaged"

    @property
    def trading_state(self) -> str:
        if self.switch is not None and self.switch.engaged:
            return "halted"  # an engaged or re-armed (not yet resumed) switch refuses orders
        return self.state.state if self.state is not None else "active"


@dataclass(frozen=True)
class TradingSummary:
    """What the Overview's trading card shows."""

    bots: int
    running: int
    engaged: list[ScopeRow]
    not_active: list[ScopeRow]


def scope_rows(platform: Platform, user: WebUser, bots: list[Bot]) -> list[ScopeRow]:
    """Global, this tenant and each of its bots, with their switch and state."""
    tenant = user.principal.tenant_id
    switches, states = kill_switches(platform, visible_tenant(tenant))
    by_switch = {(s.scope, s.scope_id): s for s in switches}
    by_state = {(s.scope, s.scope_id): s for s in states}
    scopes = [(GLOBAL, 0, "everything (global)"),
              (TENANT, tenant, f"tenant {user.principal.tenant_name}")]
    scopes += [(BOT, b.id, f"bot {b.name}") for b in bots]
    return [ScopeRow(scope, scope_id, label, by_switch.get((scope, scope_id)),
                     by_state.get((scope, scope_id))) for scope, scope_id, label in scopes]


def trading_summary(platform: Platform, user: WebUser) -> TradingSummary:
    with platform.database.read() as uow:
        bots = uow.bots.find(tenant_id=user.principal.tenant_id)
    rows = scope_rows(platform, user, bots)
    return TradingSummary(bots=len(bots), running=sum(b.status == "running" for b in bots),
                          engaged=[r for r in rows if r.switch_status != "off"],
                          not_active=[r for r in rows if r.trading_state != "active"])


def _chart(platform: Platform, bot: Bot) -> dict[str, Any] | None:
    with platform.database.read() as uow:
        marks = uow.bot_marks.series(bot.id)[-CHART_POINTS:]
    if not marks:
        return None
    ts = np.array([datetime_to_ns(m.ts) for m in marks], dtype=np.int64)
    chart = equity_chart(ts, np.array([m.equity for m in marks], dtype=np.float64))
    chart["series"].append({"name": "PnL", "scale": "left", "values": [
        [int(t // 1_000_000_000), m.realised_pnl + m.unrealised_pnl]
        for t, m in zip(ts.tolist(), marks, strict=True)]})
    return chart


@router.get("/trading")
def trading_page(request: Request, user: WebUserDep, platform: PlatformDep,
                 bot: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
    tenant = user.principal.tenant_id
    with platform.database.read(primary=True) as uow:
        bots = uow.bots.find(tenant_id=tenant)
        marks = {each.id: uow.bot_marks.latest(each.id) for each in bots}
        orders: list[Order] = uow.orders.find(tenant_id=tenant, limit=SHOWN_ORDERS)
        positions: list[Position] = uow.positions.find(tenant_id=tenant, open_only=True)
        strategies = sorted(s.name for s in list_strategies(uow, tenant))
    scopes = scope_rows(platform, user, bots)
    # each bot's state from the scopes read once (what services.trading.bots.state_of
    # computes per bot, with its own queries)
    switches = [r.switch for r in scopes if r.switch is not None]
    stored = {(r.scope, r.scope_id): r.state.state for r in scopes if r.state is not None}
    rows = []
    for each in bots:
        mark = marks[each.id]
        state = effective_state(tenant_id=tenant, bot_id=each.id,
                                global_state=stored.get((GLOBAL, 0), "active"),
                                tenant_state=stored.get((TENANT, tenant), "active"),
                                bot_state=stored.get((BOT, each.id), "active"),
                                kill_switches=switches)
        rows.append(BotRow(each, state, mark.equity if mark else None,
                           mark.realised_pnl if mark else None,
                           mark.unrealised_pnl if mark else None))
    accounts = account_service.list_accounts(platform, tenant)
    names = {b.id: b.name for b in bots}
    chosen = next((b for b in bots if b.id == bot), None) or max(
        bots, key=lambda b: b.id, default=None)
    return render(request, "trading.html", {
        "user": user, "active": "trading", "accounts": accounts, "bots": rows,
        "account_names": {a.id: a.name for a in accounts}, "orders": orders,
        "positions": positions, "names": names, "chosen": chosen,
        "chart": _chart(platform, chosen) if chosen is not None else None,
        "scopes": scopes, "strategies": strategies, "operator": tenant == DEFAULT_TENANT_ID,
        "shown_orders": SHOWN_ORDERS})
