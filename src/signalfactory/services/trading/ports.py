"""Ports of trading. The exchange port has two adapters of the same shape:
``adapters.exchanges.paper.PaperExchange`` and ``adapters.exchanges.ccxt_exchange.CcxtExchange``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from signalfactory.domain.trading.exchange import (
    ExchangeOrder,
    ExchangeTrade,
    Market,
    OrderRequest,
)


class Exchange(Protocol):
    """One exchange account. Errors: ``ExchangeRejectedError`` (never retried),
    ``ExchangeUnavailableError`` (retried by the caller's policy), ``ExchangeOperationalError``.

    ``create_order`` must be safe to call again with the same ``client_order_id`` after a lost
    response: callers first ``fetch_order(client_order_id=...)`` when in doubt.
    """

    @property
    def name(self) -> str: ...

    def markets(self) -> Mapping[str, Market]: ...

    def balances(self) -> Mapping[str, float]:
        """Free + locked amount per currency."""
        ...

    def create_order(self, request: OrderRequest) -> ExchangeOrder: ...

    def fetch_order(self, symbol: str, *, client_order_id: str | None = None,
                    exchange_order_id: str | None = None) -> ExchangeOrder | None:
        """The order, or None when the exchange has no order with that id."""
        ...

    def fetch_open_orders(self, symbol: str | None = None) -> Sequence[ExchangeOrder]: ...

    def cancel_order(self, symbol: str, *, client_order_id: str | None = None,
                     exchange_order_id: str | None = None) -> ExchangeOrder | None: ...

    def fetch_my_trades(self, symbol: str,
                        since: datetime | None = None) -> Sequence[ExchangeTrade]: ...

    def close(self) -> None: ...
