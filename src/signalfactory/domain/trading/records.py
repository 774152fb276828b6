"""Stored trading records beside the skeleton's: new rows to insert, credentials (sealed),
trading states per scope, a bot's run bookkeeping, equity marks and capital reservations.

Pure data: the repositories in ``adapters/storage/trading_*.py`` and
``signalfactory.testing.trading`` store and return these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from signalfactory.domain.trading.bots import AccountKind, RiskLimits
from signalfactory.domain.trading.costs import CostModel
from signalfactory.domain.trading.exchange import ExchangeOrder
from signalfactory.domain.trading.orders import OrderType, Side
from signalfactory.domain.trading.quotes import PriceSource
from signalfactory.domain.trading.risk import LossMonitor

# Credential slots: each exchange account has two, so a second key can be added before the
# first is revoked. ``active``: the key the exchange adapter uses; ``standby``: stored and
# promoted when the active one is revoked; ``revoked``: kept (sealed) for the record only,
# its slot free for a new key.
CREDENTIAL_SLOTS = (1, 2)
CREDENTIAL_ACTIVE = "active"
CREDENTIAL_STANDBY = "standby"
CREDENTIAL_REVOKED = "revoked"
CREDENTIAL_STATUSES = (CREDENTIAL_ACTIVE, CREDENTIAL_STANDBY, CREDENTIAL_REVOKED)

#: the scope id of the global scope (there is one)
GLOBAL_SCOPE_ID = 0


@dataclass(frozen=True)
class NewExchangeAccount:
    tenant_id: int
    name: str
    kind: AccountKind
    exchange: str
    quote_currency: str
    options: Mapping[str, object] = field(default_factory=dict)
    initial_cash: float = 0.0


@dataclass(frozen=True)
class ExchangeCredential:
    """One slot's key as stored: ``sealed`` is the secret box's output over the JSON of
    ``{"api_key", "secret", "password"}``; ``key_hint`` is safe to show (last characters)."""

    account_id: int
    slot: int
    status: str
    key_hint: str
    sealed: bytes
    created_at: datetime
    changed_at: datetime


@dataclass(frozen=True)
class Credentials:
    """Opened credentials, handed only to an exchange adapter. Never logged: ``repr`` hides
    the secrets."""

    api_key: str
    secret: str
    password: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(api_key='…{self.api_key[-4:]}', secret=<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True)
class NewBot:
    tenant_id: int
    name: str
    strategy_version_id: int
    account_id: int
    symbols: tuple[str, ...]
    timeframe: str
    allocation: float
    sizing: str
    size_value: float
    limits: RiskLimits
    fee_pct: float = 0.0
    slippage_bps: float = 0.0
    direction: str = "long"
    fill: str = "close"
    fee_fixed: float = 0.0
    whole_units: bool = True
    atr_period: int = 14
    atr_multiple: float = 1.0


@dataclass(frozen=True)
class BotRuntime:
    """What a bot's runner keeps between bars: who runs it (a lease) and how far it got."""

    bot_id: int
    #: the newest bar the bot decided on (ns); the runner resumes after it
    last_bar_ns: int
    lease_owner: str | None
    lease_until: datetime | None
    started_at: datetime | None
    #: the last successful reconciliation with the exchange
    reconciled_at: datetime | None = None


@dataclass(frozen=True)
class TradingState:
    """The trading state of one scope (``global``/0, ``tenant``/id, ``bot``/id).

    ``monitor``: what the loss limits remember between marks of the scope (the day's start
    equity, the peak, breaches seen on consecutive marks); None before the first mark."""

    scope: str
    scope_id: int
    state: str
    reason: str
    changed_at: datetime
    changed_by: str
    monitor: LossMonitor | None = None


@dataclass(frozen=True)
class NewOrder:
    """An order row to write ``pending`` before the exchange is called."""

    tenant_id: int
    bot_id: int | None
    account_id: int
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: float
    limit_price: float | None
    reason: str
    bar_ns: int = 0
    reference_price: float = 0.0
    #: cash set aside for this order (buys: notional plus fees), released when it ends
    reserved: float = 0.0
    #: ``pending`` (to be sent), or ``rejected`` with the refusal (stored, never sent)
    status: str = "pending"
    error: str | None = None


@dataclass(frozen=True)
class OrderUpdate:
    """What the exchange said about an order."""

    status: str
    exchange_order_id: str | None = None
    filled_quantity: float | None = None
    average_price: float | None = None
    fee: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class BotMark:
    """A bot's equity marked to market at one time (the equity curve, PnL and drawdown)."""

    bot_id: int
    ts: datetime
    equity: float
    cash: float
    exposure: float
    realised_pnl: float
    unrealised_pnl: float


@dataclass(frozen=True)
class PaperBook:
    """What a paper exchange is built from for one bot's tick: the account's balances and
    resting orders as stored, the prices it fills at, the bot's cost model."""

    balances: Mapping[str, float]
    prices: PriceSource
    costs: CostModel
    open_orders: tuple[ExchangeOrder, ...] = ()
    allow_short: bool = False
