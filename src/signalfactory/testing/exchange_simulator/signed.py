"""Binance spot's SIGNED endpoints: account, order, openOrders, allOrders, myTrades.

A signed request carries ``X-MBX-APIKEY`` and ``signature`` = hex HMAC-SHA256, keyed by the
account's secret, over the query string followed directly by the body (the signature removed),
plus ``timestamp`` (ms) and an optional ``recvWindow`` (default 5000, at most 60000). The
timestamp is checked against the machine's clock, which the client shares, not against the
simulator's market clock (tests freeze or move that one).
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from hashlib import sha256
from typing import TYPE_CHECKING

from signalfactory.testing.exchange_simulator.errors import ApiError, mandatory
from signalfactory.testing.exchange_simulator.trading import (
    NewOrder,
    SimAccount,
    SimOrder,
    SimTrade,
    fmt,
)

if TYPE_CHECKING:
    from signalfactory.testing.exchange_simulator.simulator import ExchangeSimulator

Params = Mapping[str, str]
SignedEndpoint = Callable[["ExchangeSimulator", SimAccount, Params], object]
MAX_RECV_WINDOW = 60_000


def authenticate(sim: ExchangeSimulator, query: str, body: str,
                 headers: Mapping[str, str], params: Params) -> SimAccount:
    """The account a signed request belongs to, or Binance's error for why not."""
    api_key = headers.get("x-mbx-apikey")
    if not api_key:
        raise ApiError(401, -2014, "API-key format invalid.")
    account = sim.ledger.account(api_key)
    if account is None:
        raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
    timestamp = _int_param(params, "timestamp", required=True) or 0
    recv_window = _int_param(params, "recvWindow", required=False) or 5000
    if recv_window > MAX_RECV_WINDOW:
        raise ApiError(400, -1131, "recvWindow must be less than 60000")
    signature = mandatory(params, "signature")
    payload = _without_signature(query) + _without_signature(body)
    expected = hmac.new(account.secret.encode(), payload.encode(), sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise ApiError(400, -1022, "Signature for this request is not valid.")
    server_ms = int(time.time() * 1000)
    if timestamp >= server_ms + 1000:
        raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the "
                       "server's time.")
    if server_ms - timestamp > recv_window:
        raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    return account


def _without_signature(text: str) -> str:
    return "&".join(part for part in text.split("&") if not part.startswith("signature="))


def account_info(sim: ExchangeSimulator, account: SimAccount, params: Params) -> object:
    with sim.ledger.lock:
        return account.to_json(sim.now_ms(), params.get("omitZeroBalances") == "true")


def new_order(sim: ExchangeSimulator, account: SimAccount, params: Params) -> object:
    spec = sim.symbol_spec(mandatory(params, "symbol"))
    side = mandatory(params, "side")
    if side not in ("BUY", "SELL"):
        raise ApiError(400, -1117, "Invalid side.")
    order_type = mandatory(params, "type")
    if order_type not in ("MARKET", "LIMIT"):
        raise ApiError(400, -1116, "Invalid orderType.")
    now = sim.now_ms()
    price = Decimal(repr(sim.price_of(spec, now)))
    limit_price = None
    tif = "GTC"
    if order_type == "LIMIT":
        tif = mandatory(params, "timeInForce")
        limit_price = _decimal(params, "price", required=True)
    if "quantity" not in params and order_type == "MARKET" and "quoteOrderQty" in params:
        quote_qty = _decimal(params, "quoteOrderQty", required=True)
        step = Decimal(spec.step_size)
        quantity = (quote_qty / price / step).to_integral_value("ROUND_DOWN") * step
    else:
        quantity = _decimal(params, "quantity", required=True)
    client_id = params.get("newClientOrderId") or f"sim{uuid.uuid4().hex[:19]}"
    new = NewOrder(spec.symbol, side, order_type, quantity, limit_price, client_id, tif)
    order, trades = sim.ledger.place(account, spec, new, price, now)
    return _ack(order, trades, params.get("newOrderRespType", "FULL"))


def _ack(order: SimOrder, trades: list[SimTrade], resp_type: str) -> object:
    ack: dict[str, object] = {"symbol": order.symbol, "orderId": order.order_id,
                              "orderListId": -1, "clientOrderId": order.client_order_id,
                              "transactTime": order.time}
    if resp_type == "ACK":
        return ack
    full = order.to_json()
    ack.update({k: full[k] for k in ("price", "origQty", "executedQty", "cummulativeQuoteQty",
                                     "status", "timeInForce", "type", "side", "workingTime",
                                     "origQuoteOrderQty", "selfTradePreventionMode")})
    if resp_type == "FULL":
        ack["fills"] = [{"price": fmt(t.price), "qty": fmt(t.qty),
                         "commission": fmt(t.commission), "commissionAsset": t.commission_asset,
                         "tradeId": t.trade_id} for t in trades]
    return ack


def _lookup(sim: ExchangeSimulator, account: SimAccount, params: Params,
            missing: ApiError) -> SimOrder:
    symbol = sim.symbol_spec(mandatory(params, "symbol")).symbol
    order_id = _int_param(params, "orderId", required=False)
    client_id = params.get("origClientOrderId") or None
    if order_id is None and client_id is None:
        raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but "
                       "both were empty/null!")
    order = sim.ledger.find(account, symbol, order_id, client_id)
    if order is None:
        raise missing
    return order


def query_order(sim: ExchangeSimulator, account: SimAccount, params: Params) -> object:
    order = _lookup(sim, account, params, ApiError(400, -2013, "Order does not exist."))
    with sim.ledger.lock:
        return order.to_json()


def cancel_order(sim: ExchangeSimulator, account: SimAccount, params: Params) -> object:
    order = _lookup(sim, account, params, ApiError(400, -2011, "Unknown order sent."))
    sim.ledger.cancel(account, order, sim.now_ms())
    return _cancelled(order, params.get("newClientOrderId") or f"cancel{order.order_id}")


def _cancelled(order: SimOrder, cancel_id: str) -> dict[str, object]:
    full = order.to_json()
    out: dict[str, object] = {"symbol": order.symbol, "origClientOrderId": order.client_order_id,
                              "orderId": order.order_id, "orderListId": -1,
                              "clientOrderId": cancel_id, "transactTime": order.update_time}
    out.update({k: full[k] for k in ("price", "origQty", "executedQty", "cummulativeQuoteQty",
                                     "status", "timeInForce", "type", "side",
                                     "selfTradePreventionMode")})
    return out


def open_orders(sim: ExchangeSimulator, account: SimAccount, params: Params) -> object:
    symbol = sim.symbol_spec(params["symbol"]).symbol if params.get("symbol") else None
    with sim.ledger.lock:
        return [o.to_json() for o in sim.ledger.open_orders(account, symbol)]


def cancel_open_orders(sim: ExchangeSimulator, account: SimAccount, params: Params) -> object:
    symbol = sim.symbol_spec(mandatory(params, "symbol")).symbol
    now = sim.now_ms()
    out = []
    with sim.ledger.lock:
        orders = sim.ledger.open_orders(account, symbol)
        if not orders:
            raise ApiError(400, -2011, "Unknown order sent.")
        for order in orders:
            sim.ledger.cancel(account, order, now)
            out.append(_cancelled(order, f"cancel{order.order_id}"))
    return out


def all_orders(sim: ExchangeSimulator, account: SimAccount, params: Params) -> object:
    symbol = sim.symbol_spec(mandatory(params, "symbol")).symbol
    from_id = _int_param(params, "orderId", required=False)
    start = _int_param(params, "startTime", required=False)
    end = _int_param(params, "endTime", required=False)
    limit = _limit(params)
    with sim.ledger.lock:
        rows = [o for o in account.orders.values() if o.symbol == symbol
                and (from_id is None or o.order_id >= from_id)
                and (start is None or o.time >= start) and (end is None or o.time <= end)]
        rows = rows[:limit] if from_id is not None or start is not None else rows[-limit:]
        return [o.to_json() for o in rows]


def my_trades(sim: ExchangeSimulator, account: SimAccount, params: Params) -> object:
    symbol = sim.symbol_spec(mandatory(params, "symbol")).symbol
    order_id = _int_param(params, "orderId", required=False)
    from_id = _int_param(params, "fromId", required=False)
    start = _int_param(params, "startTime", required=False)
    end = _int_param(params, "endTime", required=False)
    limit = _limit(params)
    with sim.ledger.lock:
        rows = [t for t in account.trades_by_symbol.get(symbol, ())
                if (order_id is None or t.order_id == order_id)
                and (from_id is None or t.trade_id >= from_id)
                and (start is None or t.time >= start) and (end is None or t.time <= end)]
    # Binance: the oldest first from fromId/startTime on, otherwise the most recent ``limit``
    rows = rows[:limit] if from_id is not None or start is not None else rows[-limit:]
    return [t.to_json() for t in rows]


def _limit(params: Params) -> int:
    limit = _int_param(params, "limit", required=False) or 500
    if not 1 <= limit <= 1000:
        raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def _int_param(params: Params, name: str, *, required: bool) -> int | None:
    text = mandatory(params, name) if required else params.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal "
                       "range is '^[0-9]{1,20}$'.") from None


def _decimal(params: Params, name: str, *, required: bool) -> Decimal:
    text = mandatory(params, name) if required else params.get(name, "0")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; legal "
                       "range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.") from None
    if not value.is_finite() or value <= 0:
        raise ApiError(400, -1013, "Invalid quantity." if name == "quantity"
                       else "Invalid price.")
    return value


#: (method, path) -> (handler, request weight, weight when no symbol is given)
SIGNED_ROUTES: dict[tuple[str, str], tuple[SignedEndpoint, int, int]] = {
    ("GET", "/api/v3/account"): (account_info, 20, 20),
    ("POST", "/api/v3/order"): (new_order, 1, 1),
    ("GET", "/api/v3/order"): (query_order, 4, 4),
    ("DELETE", "/api/v3/order"): (cancel_order, 1, 1),
    ("GET", "/api/v3/openOrders"): (open_orders, 6, 80),
    ("DELETE", "/api/v3/openOrders"): (cancel_open_orders, 1, 1),
    ("GET", "/api/v3/allOrders"): (all_orders, 20, 20),
    ("GET", "/api/v3/myTrades"): (my_trades, 20, 20),
}
