"""Bots, exchange accounts, risk limits and trading states."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

AccountKind = Literal["paper", "ccxt"]

# Trading states, worst last. ``reducing``: exits only; ``halted``: no new orders at all.
ACTIVE = "active"
REDUCING = "reducing"
HALTED = "halted"
TRADING_STATES = (ACTIVE, REDUCING, HALTED)
STATE_RANK = {ACTIVE: 0, REDUCING: 1, HALTED: 2}

# Where a state or a kill switch applies.
GLOBAL = "global"
TENANT = "tenant"
BOT = "bot"
SCOPES = (GLOBAL, TENANT, BOT)

# Bot run status (whether a runner should be working it), separate from its trading state.
STOPPED = "stopped"
RUNNING = "running"
BOT_STATUSES = (STOPPED, RUNNING)


@dataclass(frozen=True)
class RiskLimits:
    """Pre-trade limits; ``None`` means no limit. Money in the account's quote currency."""

    max_order_notional: float | None = None
    max_symbol_notional: float | None = None
    max_open_positions: int | None = None
    max_orders_per_minute: int | None = None
    #: loss since the start of the UTC day (realised + unrealised), as a positive amount
    daily_loss_limit: float | None = None
    #: peak-to-trough fall of equity as a fraction (0.2 = 20 %)
    max_drawdown: float | None = None
    #: consecutive marks a loss breach must be seen on before it changes the state
    confirm_marks: int = 2


@dataclass(frozen=True)
class ExchangeAccount:
    """Where a bot trades: a paper account or a ccxt exchange account of a tenant.

    Credentials are stored sealed in their own rows (two slots, one active); this record never
    carries them.
    """

    id: int
    tenant_id: int
    name: str
    kind: AccountKind
    #: ccxt exchange id (``binance``...) or ``paper``
    exchange: str
    quote_currency: str
    created_at: datetime
    #: adapter options that are not secret (e.g. API URLs of a simulator, sandbox mode)
    options: dict[str, object] = field(default_factory=dict)
    #: paper accounts: starting cash
    initial_cash: float = 0.0


@dataclass(frozen=True)
class Bot:
    """A tenant's strategy version trading some symbols on one account under limits."""

    id: int
    tenant_id: int
    name: str
    strategy_version_id: int
    account_id: int
    symbols: tuple[str, ...]
    timeframe: str
    #: the capital this bot may use, in the account's quote currency
    allocation: float
    #: sizing as in backtests: ``fraction`` | ``cash`` | ``units`` (``risk`` needs ATR)
    sizing: str
    size_value: float
    limits: RiskLimits
    status: str
    state: str
    created_at: datetime
    updated_at: datetime
    #: fee and slippage the paper exchange applies (the backtest's cost model)
    fee_pct: float = 0.0
    slippage_bps: float = 0.0
    direction: str = "long"


@dataclass(frozen=True)
class KillSwitch:
    """A kill switch at one scope. Engaged stays engaged until an admin re-arms it; a re-armed
    switch still blocks trading until ``resume`` (two deliberate steps)."""

    scope: str
    scope_id: int
    engaged: bool
    rearmed: bool
    changed_at: datetime
    changed_by: str
    reason: str
    flatten: bool = False
