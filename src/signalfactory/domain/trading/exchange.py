"""What an exchange tells us, in our own shapes (independent of ccxt's dicts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from signalfactory.domain.errors import BadInputError, OperationalError, TemporaryError
from signalfactory.domain.trading.orders import OrderType, Side


@dataclass(frozen=True)
class Market:
    """Trading rules of one symbol: amounts and prices are rounded to these before sending."""

    symbol: str
    base: str
    quote: str
    amount_step: float
    price_step: float
    min_amount: float
    min_notional: float
    max_amount: float | None = None


@dataclass(frozen=True)
class OrderRequest:
    symbol: str
    side: Side
    type: OrderType
    amount: float
    client_order_id: str
    price: float | None = None
    #: the price the decision saw (last close): the minimum-notional check of a market order
    #: uses it; without it the ccxt adapter asks the exchange for the last price first
    reference_price: float | None = None


@dataclass(frozen=True)
class ExchangeOrder:
    """An order as the exchange reports it."""

    exchange_order_id: str
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    amount: float
    filled: float
    average_price: float | None
    #: one of orders.ORDER_STATUSES except ``pending``
    status: str
    fee: float
    updated_at: datetime


@dataclass(frozen=True)
class ExchangeTrade:
    trade_id: str
    exchange_order_id: str
    client_order_id: str | None
    symbol: str
    side: Side
    amount: float
    price: float
    fee: float
    fee_currency: str
    executed_at: datetime


class ExchangeRejectedError(BadInputError):
    """The exchange refused the order for a reason retrying will not fix (invalid order,
    insufficient funds, precision): reported, never retried."""


class ExchangeUnavailableError(TemporaryError):
    """Network error, timeout, 5xx, 429: retried with backoff; the breaker counts these."""


class ExchangeOperationalError(OperationalError):
    """Authentication failed, account suspended: a person must act."""
