"""``CcxtExchange``: the ``Exchange`` port over ccxt's unified API (sync client).

Every request goes through one path: the shared request budget (``RequestBudget``, weighted,
keyed by exchange and account), ccxt's own rate limiter (``enableRateLimit``), a latency and
error-kind observation, and tenacity's retries for network errors, 429s and 5xx (see
``ccxt_errors``). Orders are checked against the market's precision and limits before
anything is sent; a refusal names the rule.

``create_order`` never sends an order twice: once a request may have reached the exchange
(timeout, reset, 5xx), the next attempt first looks the order up by its client order id and
returns it when it exists.

Sync is enough here: a bot's order path is sequential and one ccxt client is used by one
thread at a time (calls on one adapter are serialised by a lock). ``ccxt.async_support`` would
pay where one process drives many accounts or fans out many reads at once (reconciliation of
hundreds of bots, a kill switch cancelling across accounts): one event loop, concurrent
requests, no thread per account.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import ccxt
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from signalfactory.adapters.exchanges.ccxt_errors import (
    ExchangeObserver,
    PrometheusObserver,
    RetryPolicy,
    error_kind,
    is_retryable,
    maybe_executed,
    rejection_rule,
    translate,
)
from signalfactory.adapters.exchanges.request_budget import RequestBudget
from signalfactory.domain.trading.exchange import (
    ExchangeOrder,
    ExchangeRejectedError,
    ExchangeTrade,
    Market,
    OrderRequest,
)
from signalfactory.domain.trading.orders import (
    CANCELLED,
    EXPIRED,
    FILLED,
    OPEN,
    PARTIALLY_FILLED,
    REJECTED,
    Side,
)

T = TypeVar("T")

#: Binance spot request weights of the unified methods used here (others count 1)
BINANCE_WEIGHTS: dict[str, int] = {
    "load_markets": 20, "fetch_balance": 20, "create_order": 1, "fetch_order": 4,
    "cancel_order": 1, "fetch_open_orders": 6, "fetch_open_orders_all": 80,
    "fetch_my_trades": 20, "fetch_ticker": 2,
}
#: ccxt options for Binance spot trading: only spot markets, no wallet (sapi) calls
BINANCE_OPTIONS: dict[str, Any] = {
    "defaultType": "spot",
    "fetchMarkets": {"types": ["spot"]},
    "fetchCurrencies": False,
    "fetchMargins": False,
    "warnOnFetchOpenOrdersWithoutSymbol": False,
}
_STATUS = {"closed": FILLED, "canceled": CANCELLED, "cancelled": CANCELLED,
           "expired": EXPIRED, "rejected": REJECTED}
_TRADES_PAGE = 1000
_TRADES_MAX_PAGES = 50


class CcxtExchange:
    """One exchange account through ccxt. ``config`` is merged into ccxt's constructor
    arguments (``urls``, ``options``, ``timeout``, ``rateLimit``...); the simulator's
    ``ccxt_config()`` fits there."""

    def __init__(self, exchange_id: str = "binance", *, api_key: str, secret: str,
                 password: str | None = None, account: str | None = None,
                 config: Mapping[str, Any] | None = None,
                 budget: RequestBudget | None = None, retry: RetryPolicy | None = None,
                 observer: ExchangeObserver | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        factory = getattr(ccxt, exchange_id, None)
        if factory is None or not isinstance(factory, type):
            raise ValueError(f"ccxt has no exchange {exchange_id!r}")
        defaults: dict[str, Any] = {"options": dict(BINANCE_OPTIONS)} \
            if exchange_id == "binance" else {}
        merged = _merge(defaults, dict(config or {}))
        merged.update(apiKey=api_key, secret=secret, enableRateLimit=True)
        if password is not None:
            merged["password"] = password
        self._client: Any = factory(merged)
        self._id = exchange_id
        # the budget key names the account without revealing its key
        self._account = account or hashlib.sha256(api_key.encode()).hexdigest()[:16]
        self._budget = budget or RequestBudget()
        self._retry = retry or RetryPolicy()
        self._observer = observer or PrometheusObserver()
        self._sleep = sleep
        self._weights = BINANCE_WEIGHTS if exchange_id == "binance" else {}
        self._lock = threading.RLock()
        self._markets: dict[str, Market] | None = None

    @property
    def name(self) -> str:
        return self._id

    @property
    def client(self) -> Any:  # noqa: ANN401 - ccxt's client is untyped
        """The underlying ccxt client (read-only use: tests, diagnostics)."""
        return self._client

    # -- the port --------------------------------------------------------------------------

    def markets(self) -> Mapping[str, Market]:
        with self._lock:
            if self._markets is None:
                raw = self._request("load_markets", self._client.load_markets)
                self._markets = {symbol: _market(m) for symbol, m in raw.items()
                                 if m.get("spot", True) and m.get("active") is not False}
            return self._markets

    def refresh_markets(self) -> Mapping[str, Market]:
        with self._lock:
            self._markets = None
            self._client.markets = None
            return self.markets()

    def balances(self) -> Mapping[str, float]:
        raw = self._request("fetch_balance", self._client.fetch_balance)
        totals: dict[str, Any] = raw.get("total") or {}
        return {code: float(amount) for code, amount in totals.items() if amount}

    def create_order(self, request: OrderRequest) -> ExchangeOrder:
        """Check precision and limits, then send once: after an attempt whose fate is unknown
        the order is looked up by client order id before anything is sent again."""
        amount, price = self._prepare(request)
        params = {"clientOrderId": request.client_order_id}
        in_doubt = False

        def attempt() -> dict[str, Any]:
            nonlocal in_doubt
            if in_doubt:
                found = self._find_raw(request.symbol, request.client_order_id)
                if found is not None:
                    return found
            try:
                result: dict[str, Any] = self._attempt(
                    "create_order", lambda: self._client.create_order(
                        request.symbol, request.type, request.side, amount, price, params),
                    order=True)
                return result
            except ccxt.InvalidOrder as exc:
                if rejection_rule(exc) == "duplicate":  # already open under this id
                    found = self._find_raw(request.symbol, request.client_order_id)
                    if found is not None:
                        return found
                raise
            except ccxt.BaseError as exc:
                in_doubt = in_doubt or maybe_executed(exc)
                raise

        raw = self._retrying(attempt)
        return self._order(raw, request.client_order_id)

    def fetch_order(self, symbol: str, *, client_order_id: str | None = None,
                    exchange_order_id: str | None = None) -> ExchangeOrder | None:
        if client_order_id is None and exchange_order_id is None:
            raise ValueError("fetch_order needs a client order id or an exchange order id")
        raw = self._retrying(lambda: self._find_raw(symbol, client_order_id, exchange_order_id))
        return None if raw is None else self._order(raw, client_order_id)

    def fetch_open_orders(self, symbol: str | None = None) -> Sequence[ExchangeOrder]:
        endpoint = "fetch_open_orders" if symbol else "fetch_open_orders_all"
        rows = self._request(endpoint, lambda: self._client.fetch_open_orders(symbol))
        return [self._order(row, None) for row in rows]

    def cancel_order(self, symbol: str, *, client_order_id: str | None = None,
                     exchange_order_id: str | None = None) -> ExchangeOrder | None:
        """The cancelled order; an order that already ended is returned as it ended; None when
        the exchange has no such order."""
        if client_order_id is None and exchange_order_id is None:
            raise ValueError("cancel_order needs a client order id or an exchange order id")
        params = {} if exchange_order_id else {"clientOrderId": client_order_id}

        def attempt() -> dict[str, Any] | None:
            try:
                result: dict[str, Any] = self._attempt("cancel_order", lambda: (
                    self._client.cancel_order(exchange_order_id, symbol, params)))
                return result
            except ccxt.OrderNotFound:  # unknown, or no longer open: report how it ended
                return self._find_raw(symbol, client_order_id, exchange_order_id)

        raw = self._retrying(attempt)
        return None if raw is None else self._order(raw, client_order_id)

    def fetch_my_trades(self, symbol: str,
                        since: datetime | None = None) -> Sequence[ExchangeTrade]:
        """Every trade of ``symbol`` from ``since`` on (oldest first), page by page."""
        since_ms = None if since is None else int(since.timestamp() * 1000)
        seen: dict[str, ExchangeTrade] = {}
        for _ in range(_TRADES_MAX_PAGES):
            page = self._request("fetch_my_trades",
                                 functools.partial(self._client.fetch_my_trades, symbol,
                                                   since_ms, _TRADES_PAGE))
            fresh = [t for t in page if str(t["id"]) not in seen]
            for row in fresh:
                seen[str(row["id"])] = _trade(row)
            if len(page) < _TRADES_PAGE or not fresh or since_ms is None:
                break
            since_ms = int(page[-1]["timestamp"])  # same-ms trades come again: deduplicated
        return sorted(seen.values(), key=lambda t: (t.executed_at, t.trade_id))

    def close(self) -> None:
        session = getattr(self._client, "session", None)
        if session is not None:
            session.close()

    # -- checks before sending -------------------------------------------------------------

    def _prepare(self, request: OrderRequest) -> tuple[float, float | None]:
        """(amount, price) on the market's grid, or ExchangeRejectedError naming the rule."""
        market = self.markets().get(request.symbol)
        if market is None:
            raise ExchangeRejectedError(f"{self._id} has no spot market {request.symbol}",
                                        rule="symbol")
        amount = self._to_grid(self._client.amount_to_precision, request.symbol,
                               request.amount)
        if amount <= 0 or amount < market.min_amount:
            raise ExchangeRejectedError(
                f"amount {request.amount:g} of {request.symbol} is {amount:g} on the "
                f"exchange's grid of {market.amount_step:g}, below the minimum "
                f"{market.min_amount:g}", rule="min_amount")
        if market.max_amount is not None and amount > market.max_amount:
            raise ExchangeRejectedError(
                f"amount {amount:g} of {request.symbol} exceeds the maximum "
                f"{market.max_amount:g}", rule="max_amount")
        price = None
        if request.type == "limit":
            if request.price is None or request.price <= 0:
                raise ExchangeRejectedError("a limit order needs a positive price",
                                            rule="price")
            price = self._to_grid(self._client.price_to_precision, request.symbol,
                                  request.price)
            if price <= 0:
                raise ExchangeRejectedError(
                    f"price {request.price:g} is 0 on the grid of {market.price_step:g}",
                    rule="price_precision")
        if market.min_notional > 0:
            reference = price or request.reference_price or self._last_price(request.symbol)
            if amount * reference < market.min_notional:
                raise ExchangeRejectedError(
                    f"order value {amount * reference:g} {market.quote} of {request.symbol} "
                    f"is below the minimum notional {market.min_notional:g}",
                    rule="min_notional")
        return amount, price

    def _to_grid(self, fn: Callable[[str, float], str], symbol: str, value: float) -> float:
        try:
            return float(fn(symbol, value))
        except ccxt.InvalidOrder:  # ccxt refuses values that round to nothing
            return 0.0

    def _last_price(self, symbol: str) -> float:
        ticker = self._request("fetch_ticker", lambda: self._client.fetch_ticker(symbol))
        last = ticker.get("last") or ticker.get("close")
        if not last:
            raise ExchangeRejectedError(f"{self._id} reports no price for {symbol}",
                                        rule="min_notional")
        return float(last)

    # -- requests --------------------------------------------------------------------------

    def _find_raw(self, symbol: str, client_order_id: str | None,
                  exchange_order_id: str | None = None) -> dict[str, Any] | None:
        """One lookup (no retries of its own): the raw order or None when unknown."""
        params = {} if exchange_order_id else {"clientOrderId": client_order_id}
        try:
            found: dict[str, Any] = self._attempt("fetch_order", lambda: (
                self._client.fetch_order(exchange_order_id, symbol, params)))
            return found
        except ccxt.OrderNotFound:
            return None

    def _request(self, endpoint: str, fn: Callable[[], T]) -> T:
        return self._retrying(lambda: self._attempt(endpoint, fn))

    def _retrying(self, fn: Callable[[], T]) -> T:
        policy = self._retry
        retrying = Retrying(stop=stop_after_attempt(policy.attempts), wait=policy.wait,
                            retry=retry_if_exception(is_retryable), reraise=True,
                            sleep=self._sleep)
        with self._lock:
            try:
                return retrying(fn)
            except ccxt.BaseError as exc:
                raise translate(exc, self._id) from exc

    def _attempt(self, endpoint: str, fn: Callable[[], T], *, order: bool = False) -> T:
        """One request: budget, timing, error kind, Retry-After kept on the exception."""
        self._budget.acquire(self._id, self._account, self._weights.get(endpoint, 1),
                             order=order)
        started = time.perf_counter()
        try:
            return fn()
        except ccxt.BaseError as exc:
            self._observer.error(self._id, error_kind(exc))
            if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
                exc.retry_after = _retry_after(self._client.last_response_headers)
            raise
        finally:
            self._observer.request(self._id, endpoint, time.perf_counter() - started)

    # -- ccxt structures to ours ------------------------------------------------------------

    def _order(self, raw: Mapping[str, Any], client_order_id: str | None) -> ExchangeOrder:
        filled = float(raw.get("filled") or 0.0)
        status = _STATUS.get(str(raw.get("status")), OPEN)
        if status == OPEN and filled > 0:
            status = PARTIALLY_FILLED
        average = raw.get("average")
        market = (self._markets or {}).get(str(raw.get("symbol")))
        return ExchangeOrder(
            exchange_order_id=str(raw["id"]),
            client_order_id=str(raw.get("clientOrderId") or client_order_id or ""),
            symbol=str(raw.get("symbol")),
            side=_side(raw.get("side")),
            type="market" if raw.get("type") == "market" else "limit",
            amount=float(raw.get("amount") or 0.0),
            filled=filled,
            average_price=float(average) if average else None,
            status=status,
            fee=_quote_fee(raw, market, float(average) if average else None),
            updated_at=_ms_to_datetime(raw.get("lastUpdateTimestamp")
                                       or raw.get("lastTradeTimestamp")
                                       or raw.get("timestamp")),
        )


def _market(raw: Mapping[str, Any]) -> Market:
    precision = raw.get("precision") or {}
    limits = raw.get("limits") or {}
    amount_limits = limits.get("amount") or {}
    cost_limits = limits.get("cost") or {}
    # ccxt gives steps (TICK_SIZE mode, Binance) or decimal places (DECIMAL_PLACES mode)
    tick_mode = raw.get("precisionMode", ccxt.TICK_SIZE) == ccxt.TICK_SIZE

    def step(value: Any) -> float:  # noqa: ANN401 - ccxt numbers are float | int | None
        if value is None:
            return 0.0
        return float(value) if tick_mode else 10.0 ** -float(value)

    max_amount = amount_limits.get("max")
    return Market(symbol=str(raw["symbol"]), base=str(raw["base"]), quote=str(raw["quote"]),
                  amount_step=step(precision.get("amount")),
                  price_step=step(precision.get("price")),
                  min_amount=float(amount_limits.get("min") or 0.0),
                  min_notional=float(cost_limits.get("min") or 0.0),
                  max_amount=float(max_amount) if max_amount else None)


def _trade(raw: Mapping[str, Any]) -> ExchangeTrade:
    fee = raw.get("fee") or {}
    return ExchangeTrade(
        trade_id=str(raw["id"]), exchange_order_id=str(raw.get("order") or ""),
        client_order_id=None, symbol=str(raw["symbol"]), side=_side(raw.get("side")),
        amount=float(raw["amount"]), price=float(raw["price"]),
        fee=float(fee.get("cost") or 0.0), fee_currency=str(fee.get("currency") or ""),
        executed_at=_ms_to_datetime(raw.get("timestamp")))


def _quote_fee(raw: Mapping[str, Any], market: Market | None, average: float | None) -> float:
    """The order's fees in quote currency where they are reported (the exchange's response to
    an order includes its fills; a later query may not): base-currency fees at the average
    price, others (e.g. BNB) as reported."""
    total = 0.0
    for fee in raw.get("fees") or ([raw["fee"]] if raw.get("fee") else []):
        cost = float(fee.get("cost") or 0.0)
        if market is not None and fee.get("currency") == market.base and average:
            cost *= average
        total += cost
    return total


def _side(value: object) -> Side:
    return "sell" if value == "sell" else "buy"


def _ms_to_datetime(value: object) -> datetime:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return datetime.now(tz=UTC)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out
