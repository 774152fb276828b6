"""``ExchangeSimulator``: a local Binance spot REST API for tests and benchmarks.

Start it as a context manager; point the real ccxt client at it with :meth:`ccxt_config`::

    with ExchangeSimulator([SymbolSpec("BTC", "USDT", bars=synthetic_bars(2000))]) as sim:
        client = ccxt.binance(sim.ccxt_config())
        client.load_markets()
        client.fetch_ohlcv("BTC/USDT", "1m", since=..., limit=1000)

The clock is the wall clock by default (shifted by :meth:`advance`), or frozen at ``clock_ms``.
Bars opening after "now" are invisible; the candle open now is the last kline.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from signalfactory.testing.exchange_simulator.errors import ApiError
from signalfactory.testing.exchange_simulator.faults import FaultRule, Faults
from signalfactory.testing.exchange_simulator.market import SymbolSpec
from signalfactory.testing.exchange_simulator.public import PUBLIC_ROUTES
from signalfactory.testing.exchange_simulator.server import Response, SimulatorServer
from signalfactory.testing.exchange_simulator.signed import SIGNED_ROUTES, authenticate
from signalfactory.testing.exchange_simulator.trading import (
    ZERO,
    Ledger,
    SimAccount,
    SimOrder,
    SimTrade,
)

DEFAULT_API_KEY = "simulator-api-key"
DEFAULT_SECRET = "simulator-secret"  # noqa: S105 - a test double's well-known secret


class ExchangeSimulator:
    """One simulated venue: symbols with bars and rules, a clock, faults and counters."""

    def __init__(self, symbols: Iterable[SymbolSpec] = (), *, clock_ms: int | None = None,
                 balances: Mapping[str, float | str] | None = None,
                 request_weight_limit: tuple[int, float] | None = None) -> None:
        """``balances`` funds a default account (:attr:`api_key` / :attr:`secret`);
        :meth:`add_account` adds more."""
        self._symbols: dict[str, SymbolSpec] = {}
        for spec in symbols:
            self.add_symbol(spec)
        self.faults = Faults()
        self.ledger = Ledger(self.faults.take_partial_fill)
        self.api_key = DEFAULT_API_KEY
        self.secret = DEFAULT_SECRET
        if balances is not None:
            self.add_account(self.api_key, self.secret, balances)
        self._clock_lock = threading.Lock()
        self._frozen_ms = clock_ms
        self._offset_ms = 0
        #: (weight, window seconds): answer 429 -1003 past it, as Binance does per IP
        self.request_weight_limit = request_weight_limit
        self._weight_window_start = time.monotonic()
        self._weight_used = 0
        self._counts: Counter[tuple[str, str]] = Counter()
        self._count_lock = threading.Lock()
        self.stopping = threading.Event()
        self._server: SimulatorServer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ExchangeSimulator:
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self.stopping.clear()
        self._server = SimulatorServer(self)
        self._server.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # wakes hanging handlers first, so shutdown never waits on them
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> ExchangeSimulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        if self._server is None:
            raise RuntimeError("start the simulator first")
        return f"http://{self._server.host}:{self._server.port}"

    def ccxt_urls(self) -> dict[str, str]:
        """ccxt binance's ``urls['api']`` entries for spot, pointed at this simulator."""
        base = f"{self.url}/api/v3"
        return {"public": base, "private": base, "v1": f"{self.url}/api/v1"}

    def ccxt_config(self, api_key: str | None = None, secret: str | None = None, *,
                    public_only: bool = False,
                    timeout_ms: int = 10_000, rate_limit_ms: float | None = None,
                    **options: Any) -> dict[str, Any]:  # noqa: ANN401 - ccxt's config is untyped
        """Keyword arguments for ``ccxt.binance(...)`` that reach this simulator only.

        Spot markets only, no currency lookup on ``sapi`` and no futures endpoints, so
        ``load_markets`` makes one request (``exchangeInfo``). ``rate_limit_ms`` overrides
        ccxt's throttle spacing (binance: 50 ms per cost unit; an order costs 0.2). Without
        ``api_key`` the default account's keys are used when it exists (not ``public_only``).
        """
        if api_key is None and not public_only and self.ledger.account(self.api_key):
            api_key, secret = self.api_key, self.secret
        config: dict[str, Any] = {
            "urls": {"api": self.ccxt_urls()},
            "enableRateLimit": True,
            "timeout": timeout_ms,
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "defaultType": "spot",
                "warnOnFetchOpenOrdersWithoutSymbol": False,
                "adjustForTimeDifference": False,
                **options,
            },
        }
        if api_key is not None:
            config["apiKey"] = api_key
            config["secret"] = secret or ""
        if rate_limit_ms is not None:
            config["rateLimit"] = rate_limit_ms
        return config

    # -- clock and prices ------------------------------------------------------------------

    def now_ms(self) -> int:
        with self._clock_lock:
            if self._frozen_ms is not None:
                return self._frozen_ms + self._offset_ms
            return int(time.time() * 1000) + self._offset_ms

    def advance(self, seconds: float) -> int:
        """Move the simulator's clock forward; returns the new time in ms."""
        with self._clock_lock:
            self._offset_ms += int(seconds * 1000)
        return self.now_ms()

    def set_time(self, epoch_ms: int) -> None:
        """Freeze the clock at ``epoch_ms``."""
        with self._clock_lock:
            self._frozen_ms = epoch_ms
            self._offset_ms = 0

    def advance_and_match(self, seconds: float) -> int:
        """:meth:`advance`, then fill the resting limit orders the new prices cross."""
        self.advance(seconds)
        return self.match()

    def match(self) -> int:
        """Fill resting limit orders the current prices cross; returns the number of fills."""
        now = self.now_ms()
        return self.ledger.match_resting(self._symbols, lambda spec: self.price_of(spec, now),
                                         now)

    def add_symbol(self, spec: SymbolSpec) -> None:
        self._symbols[spec.symbol] = spec

    def symbol_spec(self, symbol: str) -> SymbolSpec:
        spec = self._symbols.get(symbol)
        if spec is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return spec

    def symbol_specs(self) -> list[SymbolSpec]:
        return list(self._symbols.values())

    def set_price(self, symbol: str, price: float | None) -> None:
        """Pin the price market orders fill at (None: back to the bars' last close) and fill
        the resting limit orders it crosses."""
        self.symbol_spec(symbol).price = price
        self.match()

    def price_of(self, spec: SymbolSpec, now_ms: int | None = None) -> float:
        price = spec.last_price(self.now_ms() if now_ms is None else now_ms)
        if price is None:
            raise ApiError(400, -1013, f"No price for {spec.symbol} yet (no bar has opened).")
        return price

    # -- accounts --------------------------------------------------------------------------

    def add_account(self, api_key: str, secret: str, balances: Mapping[str, float | str],
                    *, maker_fee: str = "0.001", taker_fee: str = "0.001") -> SimAccount:
        account = SimAccount(api_key, secret, maker_fee=Decimal(maker_fee),
                             taker_fee=Decimal(taker_fee))
        for asset, amount in balances.items():
            account.move(asset, free=Decimal(str(amount)))
        self.ledger.add_account(account)
        return account

    def remove_account(self, api_key: str) -> None:
        """Revoke an API key: its requests get -2015 from now on."""
        with self.ledger.lock:
            self.ledger.accounts.pop(api_key, None)

    def balances(self, api_key: str | None = None) -> dict[str, tuple[Decimal, Decimal]]:
        """(free, locked) per asset of an account (default: the default account)."""
        account = self._account(api_key)
        with self.ledger.lock:
            return {a: (account.free.get(a, ZERO), account.locked.get(a, ZERO))
                    for a in sorted(set(account.free) | set(account.locked))}

    def orders(self, api_key: str | None = None) -> list[SimOrder]:
        """Every order of an account, oldest first (live objects: read, do not change)."""
        account = self._account(api_key)
        with self.ledger.lock:
            return list(account.orders.values())

    def trades(self, api_key: str | None = None) -> list[SimTrade]:
        account = self._account(api_key)
        with self.ledger.lock:
            return list(account.trades)

    def _account(self, api_key: str | None) -> SimAccount:
        account = self.ledger.account(api_key or self.api_key)
        if account is None:
            raise KeyError(f"no account with API key {api_key or self.api_key!r}")
        return account

    # -- faults (thread-safe) --------------------------------------------------------------

    def set_latency(self, seconds: float, path: str | None = None) -> None:
        """Delay every response (or those of ``path``) by ``seconds``; 0 removes it."""
        self.faults.set_latency(seconds, path)

    def rate_limit_next(self, count: int = 1, *, retry_after: int = 1, path: str | None = None,
                        method: str | None = None) -> None:
        """The next ``count`` matching requests get 429 -1003 with ``Retry-After``."""
        self.faults.add(FaultRule("rate_limit", count, path, method, seconds=retry_after,
                                  status=429))

    def server_error_next(self, count: int = 1, *, status: int = 503, path: str | None = None,
                          method: str | None = None) -> None:
        """The next ``count`` matching requests fail with ``status`` (not processed)."""
        if not 500 <= status <= 599:
            raise ValueError("a server error has a 5xx status")
        self.faults.add(FaultRule("server_error", count, path, method, status=status))

    def timeout_next(self, count: int = 1, *, seconds: float = 30.0, path: str | None = None,
                     method: str | None = None) -> None:
        """The next ``count`` matching requests hang ``seconds`` (choose more than the client's
        timeout) and are then dropped unprocessed."""
        self.faults.add(FaultRule("timeout", count, path, method, seconds=seconds))

    def drop_response_next(self, count: int = 1, *, path: str | None = "/api/v3/order",
                           method: str | None = "POST", hang: float = 0.0) -> None:
        """The next ``count`` matching requests ARE processed (an order is accepted), then
        the connection is reset without a response (after ``hang`` seconds, to look like a
        timeout instead)."""
        self.faults.add(FaultRule("drop_response", count, path, method, seconds=hang))

    def partial_fill_next(self, count: int = 1, *, fraction: float = 0.5) -> None:
        """The next ``count`` fills execute only ``fraction`` of the remaining quantity: a
        market order's rest expires, a limit order's rest keeps resting."""
        self.faults.set_partial_fills(count, fraction)

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- counters --------------------------------------------------------------------------

    def request_count(self, path: str | None = None, method: str | None = None) -> int:
        """Requests received (faulted ones included) matching ``path`` and ``method``."""
        with self._count_lock:
            return sum(n for (m, p), n in self._counts.items()
                       if (path is None or p == path) and (method is None or m == method))

    def request_counts(self) -> dict[str, int]:
        """``{"POST /api/v3/order": 3, ...}``."""
        with self._count_lock:
            return {f"{m} {p}": n for (m, p), n in self._counts.items()}

    def reset_counters(self) -> None:
        with self._count_lock:
            self._counts.clear()

    # -- dispatch --------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, body: str,
               headers: Mapping[str, str]) -> Response:
        """Answer one request (the HTTP server calls this; benchmarks may call it directly)."""
        with self._count_lock:
            self._counts[(method, path)] += 1
        delay = self.faults.latency(path)
        if delay:
            self.stopping.wait(delay)
        rule = self.faults.take(method, path)
        if rule is not None and rule.kind != "drop_response":
            return self._fault_response(rule)
        try:
            status, payload, extra = 200, self._route(method, path, query, body, headers), {}
        except ApiError as err:
            status, payload = err.status, {"code": err.code, "msg": err.msg}
            extra = {"Retry-After": "1"} if err.status == 429 else {}
        response = Response(status, json.dumps(payload, separators=(",", ":")).encode(), extra)
        if rule is not None:
            return Response(0, b"", drop=True, hang=rule.seconds)
        return response

    def _route(self, method: str, path: str, query: str, body: str,
               headers: Mapping[str, str]) -> object:
        params = dict(parse_qsl(query, keep_blank_values=True))
        if body:
            params.update(parse_qsl(body, keep_blank_values=True))
        public = PUBLIC_ROUTES.get((method, path))
        if public is not None:
            handler, weight, weight_all = public
            self._spend_weight(weight if "symbol" in params else weight_all)
            return handler(self, params)
        signed = SIGNED_ROUTES.get((method, path))
        if signed is not None:
            endpoint, weight, weight_all = signed
            self._spend_weight(weight if "symbol" in params else weight_all)
            account = authenticate(self, query, body, headers, params)
            if self.ledger.has_open_orders():
                self.match()  # the market moved on since the last request
            return endpoint(self, account, params)
        raise ApiError(404, -1000, f"The simulator has no endpoint {method} {path}.")

    def _spend_weight(self, weight: int) -> None:
        if self.request_weight_limit is None:
            return
        limit, window = self.request_weight_limit
        with self._count_lock:
            now = time.monotonic()
            if now - self._weight_window_start >= window:
                self._weight_window_start, self._weight_used = now, 0
            if self._weight_used + weight > limit:
                raise ApiError(429, -1003, f"Too much request weight used; current limit is "
                               f"{limit} request weight per {window:g} SECOND. Please use "
                               "WebSocket Streams for live updates to avoid polling the API.")
            self._weight_used += weight

    def _fault_response(self, rule: FaultRule) -> Response:
        if rule.kind == "rate_limit":
            body = {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) "
                    "is 6000 requests per minute. Please use WebSocket Streams for live "
                    "updates to avoid polling the API."}
            return Response(429, json.dumps(body).encode(),
                            {"Retry-After": str(int(rule.seconds))})
        if rule.kind == "server_error":
            if rule.status in (500, 503):
                body = {"code": -1001, "msg": "Internal error; unable to process your request. "
                        "Please try again."}
                return Response(rule.status, json.dumps(body).encode())
            return Response(rule.status, b"<html><body>Gateway error</body></html>",
                            content_type="text/html")
        return Response(0, b"", drop=True, hang=rule.seconds)  # timeout: hang, never answer
