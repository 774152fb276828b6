"""The platform's exchange factory: a paper account gets a `PaperExchange` built from its
stored state, a ccxt account a `CcxtExchange` with its opened key.

A ccxt account's non-secret ``options`` configure its adapter:

- ``ccxt``: merged into ccxt's constructor arguments (``urls`` of a simulator or testnet,
  ``timeout``, ``rateLimit``, ``options``);
- ``weight_limit`` / ``order_limit``: the shared request budget of the account (``limits``
  notation, default Binance spot's ``6000/minute`` and ``100/10 seconds``); a simulator or
  an exchange with other limits says so here.

Two adjustments to the adapters, made here rather than in them:

- `PaperIds`: a paper exchange numbers its orders and trades from 1 in each instance; an
  account's instances (one per tick, per process) would reuse numbers, and trade ids are
  unique per account in the database. Ids this instance makes get a random per-instance
  prefix; ids of stored orders pass through unchanged.
- `CcxtAckExchange` (``ccxt_ack``, imported when a ccxt account is first used: ccxt is slow
  to import) keeps the fills an order's acknowledgement reports, sparing a ``myTrades``
  request per order.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from signalfactory.adapters.exchanges.paper import PaperExchange
from signalfactory.adapters.exchanges.request_budget import (
    BINANCE_ORDER_LIMIT,
    BINANCE_WEIGHT_LIMIT,
    RequestBudget,
)

if TYPE_CHECKING:
    from signalfactory.adapters.exchanges.ccxt_ack import CcxtAckExchange
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.trading.bots import ExchangeAccount
from signalfactory.domain.trading.exchange import (
    ExchangeOrder,
    ExchangeTrade,
    Market,
    OrderRequest,
)
from signalfactory.domain.trading.records import Credentials, PaperBook
from signalfactory.settings import Settings


class PaperIds:
    """A `PaperExchange` whose own ids carry a prefix unique to this instance."""

    def __init__(self, inner: PaperExchange, prefix: str | None = None) -> None:
        self.inner = inner
        self.prefix = prefix or f"p{uuid.uuid4().hex[:12]}-"

    def _out_id(self, value: str) -> str:
        return f"{self.prefix}{value}" if value.isdigit() else value

    def _in_id(self, value: str | None) -> str | None:
        if value is not None and value.startswith(self.prefix):
            return value[len(self.prefix):]
        return value

    def _order(self, order: ExchangeOrder) -> ExchangeOrder:
        return dataclasses.replace(order, exchange_order_id=self._out_id(order.exchange_order_id),
                                   trades=tuple(self._trade(t) for t in order.trades))

    def _trade(self, trade: ExchangeTrade) -> ExchangeTrade:
        return dataclasses.replace(trade, trade_id=self._out_id(trade.trade_id),
                                   exchange_order_id=self._out_id(trade.exchange_order_id))

    @property
    def name(self) -> str:
        return self.inner.name

    def markets(self) -> Mapping[str, Market]:
        return self.inner.markets()

    def balances(self) -> Mapping[str, float]:
        return self.inner.balances()

    def create_order(self, request: OrderRequest) -> ExchangeOrder:
        before = len(self.inner.trades())
        order = self.inner.create_order(request)
        # the trades this order made now, on the acknowledgement (as Binance's FULL ack)
        made = tuple(t for t in self.inner.trades()[before:]
                     if t.exchange_order_id == order.exchange_order_id)
        return self._order(dataclasses.replace(order, trades=made))

    def fetch_order(self, symbol: str, *, client_order_id: str | None = None,
                    exchange_order_id: str | None = None) -> ExchangeOrder | None:
        found = self.inner.fetch_order(symbol, client_order_id=client_order_id,
                                       exchange_order_id=self._in_id(exchange_order_id))
        return None if found is None else self._order(found)

    def fetch_open_orders(self, symbol: str | None = None) -> Sequence[ExchangeOrder]:
        return [self._order(o) for o in self.inner.fetch_open_orders(symbol)]

    def cancel_order(self, symbol: str, *, client_order_id: str | None = None,
                     exchange_order_id: str | None = None) -> ExchangeOrder | None:
        found = self.inner.cancel_order(symbol, client_order_id=client_order_id,
                                        exchange_order_id=self._in_id(exchange_order_id))
        return None if found is None else self._order(found)

    def fetch_my_trades(self, symbol: str,
                        since: datetime | None = None) -> Sequence[ExchangeTrade]:
        return [self._trade(t) for t in self.inner.fetch_my_trades(symbol, since)]

    def close(self) -> None:
        self.inner.close()


class DefaultExchangeFactory:
    """``platform.exchanges``: builds an account's adapter (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._budgets: dict[tuple[str, str], RequestBudget] = {}

    def _budget(self, options: Mapping[str, object]) -> RequestBudget:
        weight = str(options.get("weight_limit") or BINANCE_WEIGHT_LIMIT)
        orders = str(options.get("order_limit") or BINANCE_ORDER_LIMIT)
        key = (weight, orders)
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = RequestBudget.from_settings(
                self.settings, weight_limit=weight, order_limit=orders)
        return budget

    def __call__(self, account: ExchangeAccount, credentials: Credentials | None, *,
                 paper: PaperBook | None = None) -> PaperIds | CcxtAckExchange:
        if account.kind == "paper":
            if paper is None:
                raise BadInputError("a paper exchange is built from the account's stored state",
                                    rule="exchange")
            return PaperIds(PaperExchange(
                balances=paper.balances, prices=paper.prices, costs=paper.costs,
                quote_currency=account.quote_currency, orders=paper.open_orders,
                allow_short=paper.allow_short, name=f"paper:{account.id}"))
        if credentials is None:
            raise BadInputError(f"exchange account {account.id} has no active API key",
                                rule="credentials")
        config = account.options.get("ccxt")
        if config is not None and not isinstance(config, Mapping):
            raise BadInputError("the 'ccxt' option of an account must be an object",
                                rule="options")
        from signalfactory.adapters.exchanges.ccxt_ack import CcxtAckExchange  # ccxt: slow

        try:
            return CcxtAckExchange(account.exchange, api_key=credentials.api_key,
                                   secret=credentials.secret, password=credentials.password,
                                   account=f"account-{account.id}",
                                   config=dict(config or {}),
                                   budget=self._budget(account.options))
        except ValueError as exc:  # an exchange id ccxt does not know
            raise BadInputError(str(exc), rule="exchange") from exc
