"""`PaperExchange`: an exchange account in memory that fills with the backtest's cost model.

It has the shape of ``services.trading.ports.Exchange``. Fills:

- **market orders** fill at once, in full, at the price source's current price moved against
  the trader by the slippage, and pay ``|amount| * fill price * fee_pct + fee_fixed`` in the
  quote currency (`domain.trading.costs.CostModel`, the engine's arithmetic). Which price is
  current is the source's business: replaying bars, the session sets it to the signal bar's
  close (``fill="close"``) or the next bar's open (``fill="next_open"``), so a paper run fills
  where its backtest fills (`domain.trading.quotes`);
- **limit orders** fill at once when marketable (at the slipped price, never worse than the
  limit); otherwise they rest, with their funds locked, and fill at their limit price (no
  slippage) on the first call that finds the current price at or through it. They can be
  cancelled.

Orders are refused, as an exchange refuses them, with `ExchangeRejectedError`: amount or price
off the market's grid, below its minimum amount or notional, or more than the free balance
(a sell beyond the base held needs ``allow_short``; a short sets its value plus fee aside from
free quote cash, the backtest's collateral). A ``client_order_id`` identifies an order:
creating it again returns the order as it is now (a retry after a lost response), never a
second order; reusing it for a different order is refused.

The persistent state lives in the database; an instance is rebuilt from it with
`PaperExchange.from_history` (starting balances + stored orders and trades) or the constructor
(current balances + orders and trades).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from signalfactory.domain.trading.costs import FREE, CostModel
from signalfactory.domain.trading.exchange import (
    ExchangeOrder,
    ExchangeRejectedError,
    ExchangeTrade,
    ExchangeUnavailableError,
    Market,
    OrderRequest,
)
from signalfactory.domain.trading.orders import CANCELLED, FILLED, OPEN, TERMINAL_STATUSES
from signalfactory.domain.trading.precision import on_grid
from signalfactory.domain.trading.quotes import PriceSource, Quote

#: relative slack on balance checks: a fee computed in another order of operations
_FUNDS_TOLERANCE = 1e-9


def _split(symbol: str, quote_currency: str) -> tuple[str, str]:
    if "/" in symbol:
        base, quote = symbol.split("/", 1)
        return base, quote.split(":", 1)[0]
    return symbol, quote_currency


class PaperExchange:
    """See the module docstring. ``markets``: the rules of known symbols; other symbols trade
    without a grid or minimums (``BASE/QUOTE``, or a bare symbol quoted in
    ``quote_currency``)."""

    def __init__(self, *, balances: Mapping[str, float], prices: PriceSource,
                 costs: CostModel = FREE, markets: Mapping[str, Market] | None = None,
                 quote_currency: str = "USDT", orders: Iterable[ExchangeOrder] = (),
                 trades: Iterable[ExchangeTrade] = (), allow_short: bool = False,
                 name: str = "paper") -> None:
        self._name = name
        self._prices = prices
        self._costs = costs
        self._quote_currency = quote_currency
        self._markets: dict[str, Market] = dict(markets or {})
        self._balances: dict[str, float] = {k: float(v) for k, v in balances.items()}
        self._allow_short = allow_short
        self._orders: dict[str, ExchangeOrder] = {}
        self._by_client: dict[str, str] = {}
        for order in orders:
            self._orders[order.exchange_order_id] = order
            self._by_client[order.client_order_id] = order.exchange_order_id
        self._trades: list[ExchangeTrade] = list(trades)
        self._next_id = 1 + max((_number(i) for i in [*self._orders,
                                                      *(t.trade_id for t in self._trades)]),
                                default=0)

    @classmethod
    def from_history(cls, *, initial_balances: Mapping[str, float], prices: PriceSource,
                     orders: Iterable[ExchangeOrder] = (),
                     trades: Iterable[ExchangeTrade] = (), costs: CostModel = FREE,
                     markets: Mapping[str, Market] | None = None, quote_currency: str = "USDT",
                     allow_short: bool = False, name: str = "paper") -> PaperExchange:
        """An account that started with ``initial_balances`` and has made ``trades``."""
        balances = {k: float(v) for k, v in initial_balances.items()}
        stored = list(trades)
        for t in stored:
            base, quote = _split(t.symbol, quote_currency)
            sign = 1.0 if t.side == "buy" else -1.0
            balances[base] = balances.get(base, 0.0) + sign * t.amount
            balances[quote] = balances.get(quote, 0.0) - sign * t.amount * t.price
            balances[t.fee_currency] = balances.get(t.fee_currency, 0.0) - t.fee
        return cls(balances=balances, prices=prices, costs=costs, markets=markets,
                   quote_currency=quote_currency, orders=orders, trades=stored,
                   allow_short=allow_short, name=name)

    # -- the port ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    def markets(self) -> Mapping[str, Market]:
        return dict(self._markets)

    def balances(self) -> Mapping[str, float]:
        self._match_resting()
        return dict(self._balances)

    def create_order(self, request: OrderRequest) -> ExchangeOrder:
        self._match_resting()
        known = self._by_client.get(request.client_order_id)
        if known is not None:
            order = self._orders[known]
            if (order.symbol, order.side, order.type, order.amount) != (
                    request.symbol, request.side, request.type, request.amount):
                raise ExchangeRejectedError(
                    f"client order id {request.client_order_id} was used for another order")
            return order
        market = self.market(request.symbol)
        quote = self._quote(request.symbol)
        self._check(request, market, quote.price)
        order = ExchangeOrder(
            exchange_order_id=str(self._take_id()), client_order_id=request.client_order_id,
            symbol=request.symbol, side=request.side, type=request.type, amount=request.amount,
            filled=0.0, average_price=None, status=OPEN, fee=0.0, updated_at=quote.at,
            price=request.price)
        limit = request.price
        px = self._costs.fill_price(quote.price, request.side)
        if limit is not None:
            marketable = quote.price <= limit if request.side == "buy" else quote.price >= limit
            if not marketable:
                self._require_funds(market, request.side, request.amount, limit)
                return self._store(order)
            px = min(px, limit) if request.side == "buy" else max(px, limit)
        self._require_funds(market, request.side, request.amount, px)
        return self._store(self._fill(order, market, px, quote.at))

    def fetch_order(self, symbol: str, *, client_order_id: str | None = None,
                    exchange_order_id: str | None = None) -> ExchangeOrder | None:
        self._match_resting()
        order = self._find(client_order_id, exchange_order_id)
        return order if order is not None and order.symbol == symbol else None

    def fetch_open_orders(self, symbol: str | None = None) -> Sequence[ExchangeOrder]:
        self._match_resting()
        return [o for o in self._orders.values()
                if o.status == OPEN and (symbol is None or o.symbol == symbol)]

    def cancel_order(self, symbol: str, *, client_order_id: str | None = None,
                     exchange_order_id: str | None = None) -> ExchangeOrder | None:
        self._match_resting()
        order = self._find(client_order_id, exchange_order_id)
        if order is None or order.symbol != symbol:
            return None
        if order.status in TERMINAL_STATUSES:
            return order
        quote = self._prices(symbol)
        at = quote.at if quote is not None else order.updated_at
        return self._store(replace(order, status=CANCELLED, updated_at=at))

    def fetch_my_trades(self, symbol: str,
                        since: datetime | None = None) -> Sequence[ExchangeTrade]:
        self._match_resting()
        return [t for t in self._trades
                if t.symbol == symbol and (since is None or t.executed_at >= since)]

    def close(self) -> None:
        """Nothing to release: the state is in memory."""

    # -- beyond the port: what the service persists and inspects ----------------------------

    def market(self, symbol: str) -> Market:
        """The symbol's rules (no grid and no minimums for a symbol not configured)."""
        found = self._markets.get(symbol)
        if found is not None:
            return found
        base, quote = _split(symbol, self._quote_currency)
        return Market(symbol=symbol, base=base, quote=quote, amount_step=0.0, price_step=0.0,
                      min_amount=0.0, min_notional=0.0)

    def orders(self) -> list[ExchangeOrder]:
        self._match_resting()
        return list(self._orders.values())

    def trades(self) -> list[ExchangeTrade]:
        self._match_resting()
        return list(self._trades)

    # -- inside ------------------------------------------------------------------------------

    def _take_id(self) -> int:
        n = self._next_id
        self._next_id += 1
        return n

    def _find(self, client_order_id: str | None,
              exchange_order_id: str | None) -> ExchangeOrder | None:
        if exchange_order_id is not None:
            return self._orders.get(exchange_order_id)
        if client_order_id is not None:
            known = self._by_client.get(client_order_id)
            return None if known is None else self._orders[known]
        raise ExchangeRejectedError("give a client order id or an exchange order id")

    def _store(self, order: ExchangeOrder) -> ExchangeOrder:
        self._orders[order.exchange_order_id] = order
        self._by_client[order.client_order_id] = order.exchange_order_id
        return order

    def _quote(self, symbol: str) -> Quote:
        quote = self._prices(symbol)
        if quote is None:
            raise ExchangeUnavailableError(f"no price for {symbol} yet: the paper exchange "
                                           "fills against bars, and none has arrived")
        return quote

    def _check(self, request: OrderRequest, market: Market, price: float) -> None:
        amount = request.amount
        if not (math.isfinite(amount) and amount > 0):
            raise ExchangeRejectedError(f"order amount must be positive, got {amount}")
        if request.type not in ("market", "limit"):
            raise ExchangeRejectedError(f"order type {request.type!r} is not supported")
        if request.type == "limit" and not (request.price is not None and request.price > 0):
            raise ExchangeRejectedError("a limit order needs a positive price")
        if request.type == "market" and request.price is not None:
            raise ExchangeRejectedError("a market order takes no price")
        if not on_grid(amount, market.amount_step):
            raise ExchangeRejectedError(f"amount {amount} is not a multiple of "
                                        f"{market.amount_step} ({market.symbol} lot size)")
        if request.price is not None and not on_grid(request.price, market.price_step):
            raise ExchangeRejectedError(f"price {request.price} is not a multiple of "
                                        f"{market.price_step} ({market.symbol} tick size)")
        if amount < market.min_amount or (market.max_amount is not None
                                          and amount > market.max_amount):
            raise ExchangeRejectedError(f"amount {amount} is outside {market.symbol}'s limits")
        if amount * (request.price or price) < market.min_notional:
            raise ExchangeRejectedError(f"order value is below {market.symbol}'s minimum "
                                        f"notional {market.min_notional}")

    def _free(self, currency: str) -> float:
        locked = 0.0
        for o in self._orders.values():
            if o.status != OPEN:
                continue
            m = self.market(o.symbol)
            left = o.amount - o.filled
            if o.side == "buy" and currency == m.quote and o.price is not None:
                locked += left * o.price + self._costs.fee(left, o.price)
            elif o.side == "sell" and currency == m.base:
                locked += left
        return self._balances.get(currency, 0.0) - locked

    def _require_funds(self, market: Market, side: str, amount: float, price: float) -> None:
        cost = amount * price + self._costs.fee(amount, price)
        if side == "buy":
            free = self._free(market.quote)
            if cost > free + _FUNDS_TOLERANCE * max(1.0, abs(free)):
                raise ExchangeRejectedError(f"insufficient {market.quote}: the order needs "
                                            f"{cost:.8g}, {free:.8g} is free")
            return
        held = max(self._free(market.base), 0.0)
        if amount <= held * (1 + _FUNDS_TOLERANCE):
            return
        if not self._allow_short:
            raise ExchangeRejectedError(f"insufficient {market.base}: selling {amount:.8g}, "
                                        f"{held:.8g} is free")
        short = amount - held
        collateral = short * price + self._costs.fee(short, price)
        free = self._free(market.quote)
        if collateral > free + _FUNDS_TOLERANCE * max(1.0, abs(free)):
            raise ExchangeRejectedError(f"insufficient {market.quote} to short {short:.8g} "
                                        f"{market.base}: needs {collateral:.8g}")

    def _fill(self, order: ExchangeOrder, market: Market, price: float,
              at: datetime) -> ExchangeOrder:
        amount = order.amount - order.filled
        fee = self._costs.fee(amount, price)
        sign = 1.0 if order.side == "buy" else -1.0
        self._balances[market.base] = self._balances.get(market.base, 0.0) + sign * amount
        self._balances[market.quote] = (self._balances.get(market.quote, 0.0)
                                        - sign * amount * price - fee)
        self._trades.append(ExchangeTrade(
            trade_id=str(self._take_id()), exchange_order_id=order.exchange_order_id,
            client_order_id=order.client_order_id, symbol=order.symbol, side=order.side,
            amount=amount, price=price, fee=fee, fee_currency=market.quote, executed_at=at))
        return replace(order, filled=order.amount, average_price=price, status=FILLED,
                       fee=order.fee + fee, updated_at=at)

    def _match_resting(self) -> None:
        for order in list(self._orders.values()):
            if order.status != OPEN:
                continue
            limit = order.price
            quote = self._prices(order.symbol)
            if limit is None or quote is None:
                continue
            crossed = quote.price <= limit if order.side == "buy" else quote.price >= limit
            if crossed:
                self._store(self._fill(order, self.market(order.symbol), limit, quote.at))


def _number(text: str) -> int:
    return int(text) if text.isdigit() else 0
