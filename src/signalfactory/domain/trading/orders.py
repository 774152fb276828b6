"""Orders from intent to fill.

An ``OrderIntent`` is what a bot decided on a bar; its ``client_order_id`` is derived from the
intent (bot, symbol, side, bar time, reason), so the same decision made again after a crash
yields the same id and is found on the exchange instead of being sent twice. An order row is
written with that id *before* the exchange is called.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]

# Order lifecycle. ``pending``: stored, not yet acknowledged by the exchange (the state a
# crash can leave; reconciliation looks it up by client order id). ``open``/``partially_filled``:
# acknowledged and working. Terminal: ``filled``, ``cancelled``, ``rejected`` (refused by the
# risk engine or the exchange; nothing traded), ``expired``.
PENDING = "pending"
OPEN = "open"
PARTIALLY_FILLED = "partially_filled"
FILLED = "filled"
CANCELLED = "cancelled"
REJECTED = "rejected"
EXPIRED = "expired"
ORDER_STATUSES = (PENDING, OPEN, PARTIALLY_FILLED, FILLED, CANCELLED, REJECTED, EXPIRED)
TERMINAL_STATUSES = frozenset({FILLED, CANCELLED, REJECTED, EXPIRED})

CLIENT_ORDER_ID_PREFIX = "sf"


def client_order_id(bot_id: int, symbol: str, side: Side, bar_ns: int, reason: str) -> str:
    """A stable id for one decision: at most 32 characters of ``[0-9a-zA-Z-]`` (the common
    limit of spot exchanges' client order ids)."""
    key = f"{bot_id}|{symbol}|{side}|{bar_ns}|{reason}".encode()
    digest = hashlib.sha256(key).hexdigest()[:24]
    return f"{CLIENT_ORDER_ID_PREFIX}{bot_id:x}-{digest}"[:32]


@dataclass(frozen=True)
class OrderIntent:
    """What a bot wants to do, before risk checks and sizing to exchange precision."""

    tenant_id: int
    bot_id: int
    account_id: int
    symbol: str
    side: Side
    quantity: float
    type: OrderType = "market"
    limit_price: float | None = None
    #: the bar the decision was made on (ns since the epoch) and why (``entry``, ``exit``,
    #: ``flatten``, ``stop_loss``...): together they make the client order id
    bar_ns: int = 0
    reason: str = "signal"
    #: price the decision saw (last close), used for notional checks of market orders
    reference_price: float = 0.0
    signal_id: str | None = None

    @property
    def client_order_id(self) -> str:
        return client_order_id(self.bot_id, self.symbol, self.side, self.bar_ns, self.reason)

    @property
    def notional(self) -> float:
        price = self.limit_price if self.limit_price is not None else self.reference_price
        return abs(self.quantity) * price


@dataclass(frozen=True)
class Order:
    """An order as stored: written ``pending`` before it is sent, updated from the exchange."""

    id: int
    tenant_id: int
    bot_id: int | None
    account_id: int
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: float
    limit_price: float | None
    status: str
    created_at: datetime
    updated_at: datetime
    exchange_order_id: str | None = None
    filled_quantity: float = 0.0
    average_price: float | None = None
    fee: float = 0.0
    reason: str = "signal"
    error: str | None = None


@dataclass(frozen=True)
class Fill:
    """One execution of an order (an exchange trade); ``trade_id`` is unique per account."""

    account_id: int
    order_id: int
    trade_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    fee_currency: str
    executed_at: datetime


@dataclass(frozen=True)
class Position:
    """A bot's holding of one symbol; quantity > 0 long, < 0 short (spot: never < 0)."""

    bot_id: int
    symbol: str
    quantity: float
    average_price: float
    realised_pnl: float
    updated_at: datetime
