"""Accounts, orders and fills of the simulator: Binance spot's matching, much simplified.

Market orders fill at once at the symbol's current price; limit orders that cross fill at the
current price (taker), the rest rest and fill at their limit when the price crosses them later
(maker). Funds of resting orders are locked; commissions are taken from what is received (base
on buys, quote on sells), as Binance does without BNB. All amounts are ``Decimal``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

from signalfactory.testing.exchange_simulator.errors import ApiError
from signalfactory.testing.exchange_simulator.market import SymbolSpec

ZERO = Decimal(0)
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
_INSUFFICIENT = "Account has insufficient balance for requested action."


def fmt(value: Decimal) -> str:
    return f"{value:.8f}"


@dataclass
class SimOrder:
    order_id: int
    api_key: str
    symbol: str
    client_order_id: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT
    price: Decimal  # limit price; 0 for market orders
    orig_qty: Decimal
    time: int
    time_in_force: str = "GTC"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    update_time: int = 0
    #: funds still locked for the unfilled rest (quote for buys, base for sells)
    locked: Decimal = ZERO
    locked_asset: str = ""

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    def to_json(self) -> dict[str, object]:
        """The order as GET /api/v3/order and /openOrders show it."""
        return {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": -1,
            "clientOrderId": self.client_order_id, "price": fmt(self.price),
            "origQty": fmt(self.orig_qty), "executedQty": fmt(self.executed_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote), "status": self.status,
            "timeInForce": self.time_in_force, "type": self.type, "side": self.side,
            "stopPrice": "0.00000000", "icebergQty": "0.00000000", "time": self.time,
            "updateTime": self.update_time, "isWorking": True, "workingTime": self.time,
            "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "NONE",
        }


@dataclass(frozen=True)
class SimTrade:
    trade_id: int
    order_id: int
    api_key: str
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool

    def to_json(self) -> dict[str, object]:
        """The trade as GET /api/v3/myTrades shows it."""
        return {
            "symbol": self.symbol, "id": self.trade_id, "orderId": self.order_id,
            "orderListId": -1, "price": fmt(self.price), "qty": fmt(self.qty),
            "quoteQty": fmt(self.price * self.qty), "commission": fmt(self.commission),
            "commissionAsset": self.commission_asset, "time": self.time,
            "isBuyer": self.side == "BUY", "isMaker": self.is_maker, "isBestMatch": True,
        }


@dataclass
class SimAccount:
    api_key: str
    secret: str
    free: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    orders: dict[int, SimOrder] = field(default_factory=dict)
    trades: list[SimTrade] = field(default_factory=list)
    #: (symbol, client order id) -> the newest order with it; trades per symbol in time order
    by_client_id: dict[tuple[str, str], SimOrder] = field(default_factory=dict)
    trades_by_symbol: dict[str, list[SimTrade]] = field(default_factory=dict)

    def move(self, asset: str, free: Decimal = ZERO, locked: Decimal = ZERO) -> None:
        self.free[asset] = self.free.get(asset, ZERO) + free
        self.locked[asset] = self.locked.get(asset, ZERO) + locked

    def to_json(self, now_ms: int, omit_zero: bool) -> dict[str, object]:
        assets = sorted(set(self.free) | set(self.locked))
        balances = [{"asset": a, "free": fmt(self.free.get(a, ZERO)),
                     "locked": fmt(self.locked.get(a, ZERO))} for a in assets]
        if omit_zero:
            balances = [b for b in balances if Decimal(b["free"]) or Decimal(b["locked"])]
        bps = int(self.taker_fee * 10_000)
        return {
            "makerCommission": int(self.maker_fee * 10_000), "takerCommission": bps,
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": fmt(self.maker_fee), "taker": fmt(self.taker_fee),
                                "buyer": "0.00000000", "seller": "0.00000000"},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": now_ms,
            "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"],
            "uid": abs(hash(self.api_key)) % 10**9,
        }


@dataclass(frozen=True)
class NewOrder:
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None
    client_order_id: str
    time_in_force: str = "GTC"


class Ledger:
    """Accounts and the order book of one simulator; every method holds one lock."""

    def __init__(self, partial_fill: Callable[[], float | None]) -> None:
        self.lock = threading.RLock()
        self.accounts: dict[str, SimAccount] = {}
        self._partial_fill = partial_fill
        self._next_order_id = 1
        self._next_trade_id = 1
        self._open: dict[int, SimOrder] = {}

    def has_open_orders(self) -> bool:
        return bool(self._open)

    def account(self, api_key: str) -> SimAccount | None:
        return self.accounts.get(api_key)

    def add_account(self, account: SimAccount) -> None:
        with self.lock:
            self.accounts[account.api_key] = account

    # -- orders ----------------------------------------------------------------------------

    def place(self, account: SimAccount, spec: SymbolSpec, new: NewOrder, price: Decimal,
              now_ms: int) -> tuple[SimOrder, list[SimTrade]]:
        """Check the filters and funds, then accept and match ``new`` at ``price``."""
        check_filters(spec, new, price)
        with self.lock:
            for order in self._open.values():
                if order.api_key == account.api_key and \
                        order.client_order_id == new.client_order_id:
                    raise ApiError(400, -2010, "Duplicate order sent.")
            limit = new.price if new.type == "LIMIT" else None
            if new.side == "BUY":
                need, asset = new.quantity * (limit if limit is not None else price), spec.quote
            else:
                need, asset = new.quantity, spec.base
            if account.free.get(asset, ZERO) < need:
                raise ApiError(400, -2010, _INSUFFICIENT)
            order = SimOrder(self._next_order_id, account.api_key, spec.symbol,
                             new.client_order_id, new.side, new.type, limit or ZERO,
                             new.quantity, now_ms, new.time_in_force, update_time=now_ms)
            self._next_order_id += 1
            account.orders[order.order_id] = order
            account.by_client_id[(order.symbol, order.client_order_id)] = order
            trades: list[SimTrade] = []
            if new.type == "MARKET":
                trades.append(self._fill(account, spec, order, order.remaining, price, now_ms,
                                         maker=False, partial=True))
                if order.remaining > 0:  # the book ran dry: a market order's rest expires
                    order.status = "EXPIRED"
                return order, trades
            order.locked, order.locked_asset = need, asset
            account.move(asset, free=-need, locked=need)
            self._open[order.order_id] = order
            crosses = price <= order.price if order.side == "BUY" else price >= order.price
            if crosses:
                trades.append(self._fill(account, spec, order, order.remaining, price, now_ms,
                                         maker=False, partial=True))
            return order, trades

    def cancel(self, account: SimAccount, order: SimOrder, now_ms: int) -> SimOrder:
        with self.lock:
            if not order.is_open:
                raise ApiError(400, -2011, "Unknown order sent.")
            self._release(account, order)
            order.status = "CANCELED"
            order.update_time = now_ms
            return order

    def find(self, account: SimAccount, symbol: str, order_id: int | None,
             client_order_id: str | None) -> SimOrder | None:
        with self.lock:
            if order_id is not None:
                order = account.orders.get(order_id)
                return order if order is not None and order.symbol == symbol else None
            if client_order_id is None:
                return None
            return account.by_client_id.get((symbol, client_order_id))

    def open_orders(self, account: SimAccount, symbol: str | None) -> list[SimOrder]:
        with self.lock:
            return [o for o in self._open.values() if o.api_key == account.api_key
                    and (symbol is None or o.symbol == symbol)]

    def match_resting(self, specs: dict[str, SymbolSpec], price_of: Callable[[SymbolSpec], float],
                      now_ms: int) -> int:
        """Fill resting limit orders the current prices cross, at their limit (maker).
        Returns the number of fills."""
        fills = 0
        with self.lock:
            for order in list(self._open.values()):
                spec = specs[order.symbol]
                price = Decimal(repr(price_of(spec)))
                crosses = price <= order.price if order.side == "BUY" else price >= order.price
                if crosses:
                    account = self.accounts[order.api_key]
                    self._fill(account, spec, order, order.remaining, order.price, now_ms,
                               maker=True, partial=True)
                    fills += 1
        return fills

    # -- internals -------------------------------------------------------------------------

    def _fill(self, account: SimAccount, spec: SymbolSpec, order: SimOrder, qty: Decimal,
              price: Decimal, now_ms: int, *, maker: bool, partial: bool) -> SimTrade:
        fraction = self._partial_fill() if partial else None
        if fraction is not None:
            step = Decimal(spec.step_size)
            cut = (qty * Decimal(repr(fraction)) / step).to_integral_value(ROUND_DOWN) * step
            qty = max(cut, step) if qty > step else qty
        quote = qty * price
        fee_rate = account.maker_fee if maker else account.taker_fee
        if order.side == "BUY":
            fee, fee_asset = qty * fee_rate, spec.base
            if order.type == "LIMIT":
                reserved = qty * order.price
                order.locked -= reserved
                account.move(spec.quote, free=reserved - quote, locked=-reserved)
            else:
                account.move(spec.quote, free=-quote)
            account.move(spec.base, free=qty - fee)
        else:
            fee, fee_asset = quote * fee_rate, spec.quote
            if order.type == "LIMIT":
                order.locked -= qty
                account.move(spec.base, locked=-qty)
            else:
                account.move(spec.base, free=-qty)
            account.move(spec.quote, free=quote - fee)
        order.executed_qty += qty
        order.cum_quote += quote
        order.update_time = now_ms
        order.status = "FILLED" if order.remaining <= 0 else "PARTIALLY_FILLED"
        if order.status == "FILLED":
            self._open.pop(order.order_id, None)
            if order.locked:  # rounding dust of a buy's reservation goes back
                self._release(account, order)
        trade = SimTrade(self._next_trade_id, order.order_id, account.api_key, spec.symbol,
                         order.side, price, qty, fee, fee_asset, now_ms, maker)
        self._next_trade_id += 1
        account.trades.append(trade)
        account.trades_by_symbol.setdefault(spec.symbol, []).append(trade)
        return trade

    def _release(self, account: SimAccount, order: SimOrder) -> None:
        account.move(order.locked_asset, free=order.locked, locked=-order.locked)
        order.locked = ZERO
        self._open.pop(order.order_id, None)


def check_filters(spec: SymbolSpec, new: NewOrder, price: Decimal) -> None:
    """Binance's symbol filters: PRICE_FILTER, LOT_SIZE, NOTIONAL (or MIN_NOTIONAL)."""
    tick, step, min_qty, max_qty, min_notional, max_notional = spec.decimals
    if new.price is not None:
        min_price, max_price = Decimal(spec.min_price), Decimal(spec.max_price)
        if new.price < min_price or new.price > max_price or (new.price - min_price) % tick:
            raise ApiError(400, -1013, "Filter failure: PRICE_FILTER")
    qty = new.quantity
    if qty < min_qty or qty > max_qty or (qty - min_qty) % step:
        raise ApiError(400, -1013, "Filter failure: LOT_SIZE")
    notional = qty * (new.price if new.price is not None else price)
    if notional < min_notional:
        name = "MIN_NOTIONAL" if spec.legacy_min_notional else "NOTIONAL"
        raise ApiError(400, -1013, f"Filter failure: {name}")
    if not spec.legacy_min_notional and new.price is not None and notional > max_notional:
        raise ApiError(400, -1013, "Filter failure: NOTIONAL")
