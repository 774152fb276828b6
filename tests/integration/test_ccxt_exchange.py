"""CcxtExchange end to end: the real ccxt client against the exchange simulator on loopback.

Covers the port (markets, balances, create/fetch/cancel, open orders, my trades), the checks
made before sending (nothing reaches the simulator, its counters prove it), retries (429 storm,
5xx) with bounded request counts, no duplicate after a response lost after acceptance, and the
request budget shared through Redis (skipped with a reason when Redis is down; failed under
CI=true).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from signalfactory.adapters.exchanges.ccxt_errors import RetryPolicy
from signalfactory.adapters.exchanges.ccxt_exchange import CcxtExchange
from signalfactory.adapters.exchanges.request_budget import RequestBudget
from signalfactory.domain.trading.exchange import (
    ExchangeOperationalError,
    ExchangeRejectedError,
    ExchangeUnavailableError,
    OrderRequest,
)
from signalfactory.domain.trading.orders import Side
from signalfactory.testing.exchange_simulator import ExchangeSimulator, SymbolSpec

REDIS_URL = os.environ.get("SIGNALFACTORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ORDER = "/api/v3/order"
FAST_RETRY = RetryPolicy(attempts=5, initial_wait=0.01, max_wait=2.0)


class RecordingObserver:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, float]] = []
        self.errors: list[tuple[str, str]] = []

    def request(self, exchange: str, endpoint: str, seconds: float) -> None:
        self.requests.append((exchange, endpoint, seconds))

    def error(self, exchange: str, kind: str) -> None:
        self.errors.append((exchange, kind))


@pytest.fixture
def sim() -> Iterator[ExchangeSimulator]:
    specs = [SymbolSpec("BTC", "USDT", tick_size="0.01", step_size="0.00001",
                        min_qty="0.00001", min_notional="5", price=30_000.0),
             SymbolSpec("ETH", "USDT", tick_size="0.01", step_size="0.0001",
                        min_qty="0.0001", min_notional="10", price=2000.0)]
    with ExchangeSimulator(specs, balances={"USDT": 100_000, "BTC": 1}) as simulator:
        yield simulator


def _exchange(sim: ExchangeSimulator, *, secret: str | None = None, timeout_ms: int = 2000,
              budget: RequestBudget | None = None, observer: RecordingObserver | None = None,
              retry: RetryPolicy = FAST_RETRY, api_key: str | None = None) -> CcxtExchange:
    return CcxtExchange(
        "binance", api_key=api_key or sim.api_key, secret=secret or sim.secret,
        config=sim.ccxt_config(timeout_ms=timeout_ms, rate_limit_ms=1), budget=budget,
        retry=retry, observer=observer or RecordingObserver())


@pytest.fixture
def exchange(sim: ExchangeSimulator) -> Iterator[CcxtExchange]:
    adapter = _exchange(sim)
    adapter.markets()
    sim.reset_counters()
    yield adapter
    adapter.close()


def _market(cid: str, amount: float = 0.01, side: Side = "buy",
            symbol: str = "BTC/USDT") -> OrderRequest:
    return OrderRequest(symbol=symbol, side=side, type="market", amount=amount,
                        client_order_id=cid, reference_price=30_000.0)


def _limit(cid: str, price: float, amount: float = 0.01, side: Side = "buy") -> OrderRequest:
    return OrderRequest(symbol="BTC/USDT", side=side, type="limit", amount=amount,
                        client_order_id=cid, price=price)


def test_markets_and_balances(sim: ExchangeSimulator, exchange: CcxtExchange) -> None:
    markets = exchange.markets()
    btc = markets["BTC/USDT"]
    assert (btc.base, btc.quote, btc.amount_step, btc.price_step) == ("BTC", "USDT", 1e-5, 0.01)
    assert (btc.min_amount, btc.min_notional, btc.max_amount) == (1e-5, 5.0, 9000.0)
    assert markets["ETH/USDT"].min_notional == 10.0
    assert exchange.balances() == {"USDT": 100_000.0, "BTC": 1.0}
    exchange.markets()
    assert sim.request_count("/api/v3/exchangeInfo") == 0  # cached


def test_create_fetch_cancel_open_orders_and_trades(sim: ExchangeSimulator,
                                                    exchange: CcxtExchange) -> None:
    started = datetime.now(tz=UTC) - timedelta(seconds=1)
    order = exchange.create_order(_market("sf-m-1", 0.0123456))  # rounded down to the step
    assert (order.status, order.filled, order.amount) == ("filled", 0.01234, 0.01234)
    assert (order.client_order_id, order.average_price) == ("sf-m-1", 30_000.0)
    assert order.fee == pytest.approx(0.01234 * 0.001 * 30_000)  # BTC fee valued in USDT
    assert sim.orders()[0].orig_qty == sim.orders()[0].executed_qty
    assert str(sim.orders()[0].orig_qty) == "0.01234"

    same = exchange.fetch_order("BTC/USDT", client_order_id="sf-m-1")
    assert same is not None and same.exchange_order_id == order.exchange_order_id
    by_id = exchange.fetch_order("BTC/USDT", exchange_order_id=order.exchange_order_id)
    assert by_id is not None and by_id.client_order_id == "sf-m-1"
    assert exchange.fetch_order("BTC/USDT", client_order_id="never-sent") is None

    resting = exchange.create_order(_limit("sf-l-1", 25_000.004))  # price rounded to the tick
    assert (resting.status, resting.filled) == ("open", 0.0)
    assert float(sim.orders()[-1].price) == 25_000.0
    assert [o.client_order_id for o in exchange.fetch_open_orders("BTC/USDT")] == ["sf-l-1"]
    assert [o.client_order_id for o in exchange.fetch_open_orders()] == ["sf-l-1"]
    cancelled = exchange.cancel_order("BTC/USDT", client_order_id="sf-l-1")
    assert cancelled is not None and cancelled.status == "cancelled"
    again = exchange.cancel_order("BTC/USDT", client_order_id="sf-l-1")  # already ended
    assert again is not None and again.status == "cancelled"
    assert exchange.cancel_order("BTC/USDT", client_order_id="never-sent") is None
    assert exchange.fetch_open_orders() == []

    trades = exchange.fetch_my_trades("BTC/USDT", since=started)
    assert [(t.exchange_order_id, t.side, t.amount, t.price, t.fee_currency)
            for t in trades] == [(order.exchange_order_id, "buy", 0.01234, 30_000.0, "BTC")]
    assert exchange.fetch_my_trades("BTC/USDT", since=datetime.now(tz=UTC)
                                    + timedelta(minutes=1)) == []
    assert exchange.balances()["BTC"] == pytest.approx(1 + 0.01234 * 0.999)


def test_refusals_before_sending_name_the_rule(sim: ExchangeSimulator,
                                               exchange: CcxtExchange) -> None:
    cases = [
        (_market("r1", 0.000004), "min_amount"),  # rounds to 0 on the 0.00001 grid
        (_market("r2", 0.0001), "min_notional"),  # 3 USDT < 5
        (OrderRequest("ETH/USDT", "buy", "market", 0.004, "r3"), "min_notional"),  # via ticker
        (_market("r4", 10_000), "max_amount"),
        (_market("r5", symbol="DOGE/USDT"), "symbol"),
        (OrderRequest("BTC/USDT", "buy", "limit", 0.01, "r6"), "price"),
        (_limit("r7", 0.001), "price_precision"),
    ]
    for request, rule in cases:
        with pytest.raises(ExchangeRejectedError) as refused:
            exchange.create_order(request)
        assert refused.value.rule == rule, request
    assert sim.request_count(ORDER) == 0
    assert sim.request_count("/api/v3/ticker/24hr") == 1  # the ETH order had no reference
    assert sim.orders() == []


def test_exchange_rejections_are_not_retried(sim: ExchangeSimulator,
                                             exchange: CcxtExchange) -> None:
    with pytest.raises(ExchangeRejectedError) as refused:
        exchange.create_order(_market("big", 5.0))  # 150,000 USDT > 100,000
    assert refused.value.rule == "insufficient_funds"
    with pytest.raises(ExchangeRejectedError) as refused:
        exchange.create_order(_market("btc-sell", 2.0, side="sell"))
    assert refused.value.rule == "insufficient_funds"
    assert sim.request_count(ORDER, "POST") == 2


def test_bad_credentials_are_operational_errors(sim: ExchangeSimulator) -> None:
    wrong_secret = _exchange(sim, secret="not-the-secret")
    with pytest.raises(ExchangeOperationalError, match="-1022"):
        wrong_secret.create_order(_market("auth-1"))
    unknown_key = _exchange(sim, api_key="nobody")
    with pytest.raises(ExchangeOperationalError, match="-2015"):
        unknown_key.balances()
    assert sim.request_count(ORDER, "POST") == 1  # refused once, never retried
    assert sim.request_count("/api/v3/account") == 1
    assert sim.orders() == []


def test_a_key_revoked_mid_session_is_operational_not_retried(sim: ExchangeSimulator,
                                                              exchange: CcxtExchange) -> None:
    exchange.balances()  # ccxt now reads -2015 as a temporary ban (DDoSProtection)
    sim.remove_account(sim.api_key)
    with pytest.raises(ExchangeOperationalError, match="-2015"):
        exchange.balances()
    assert sim.request_count("/api/v3/account") == 2


def test_429_storm_backs_off_then_succeeds(sim: ExchangeSimulator) -> None:
    observer = RecordingObserver()
    exchange = _exchange(sim, observer=observer)
    exchange.markets()
    sim.rate_limit_next(3, retry_after=0, path=ORDER)
    order = exchange.create_order(_market("storm-1"))
    assert order.status == "filled"
    assert sim.request_count(ORDER, "POST") == 4
    assert sim.request_count(ORDER, "GET") == 0  # a 429 was never processed: no lookup
    assert [o.client_order_id for o in sim.orders()] == ["storm-1"]
    assert observer.errors == [("binance", "rate_limited")] * 3
    # a storm longer than the policy: bounded attempts, then temporarily unavailable
    sim.rate_limit_next(50, retry_after=0, path=ORDER)
    with pytest.raises(ExchangeUnavailableError):
        exchange.create_order(_market("storm-2"))
    assert sim.request_count(ORDER, "POST") == 4 + FAST_RETRY.attempts
    sim.clear_faults()


def test_retry_after_is_honoured(sim: ExchangeSimulator, exchange: CcxtExchange) -> None:
    sim.rate_limit_next(1, retry_after=1, path="/api/v3/account")
    started = time.monotonic()
    assert exchange.balances()["USDT"] == 100_000.0
    assert time.monotonic() - started >= 1.0
    assert sim.request_count("/api/v3/account") == 2


def test_5xx_is_retried_and_looked_up_before_resending(sim: ExchangeSimulator,
                                                       exchange: CcxtExchange) -> None:
    sim.server_error_next(1, status=503, path=ORDER, method="POST")
    sim.server_error_next(1, status=502, path=ORDER, method="POST")
    order = exchange.create_order(_market("5xx-1"))
    assert order.status == "filled"
    # each unknown outcome is checked by client order id before the order goes again
    assert sim.request_count(ORDER, "POST") == 3
    assert sim.request_count(ORDER, "GET") == 2
    assert [o.client_order_id for o in sim.orders()] == ["5xx-1"]


@pytest.mark.parametrize("hang", [0.0, 0.6], ids=["reset", "timeout"])
def test_response_lost_after_acceptance_is_not_sent_twice(sim: ExchangeSimulator,
                                                          hang: float) -> None:
    exchange = _exchange(sim, timeout_ms=300)
    exchange.markets()
    sim.drop_response_next(1, hang=hang)
    order = exchange.create_order(_market("lost-1"))
    assert (order.client_order_id, order.status) == ("lost-1", "filled")
    assert sim.request_count(ORDER, "POST") == 1  # found by client order id, not resent
    assert sim.request_count(ORDER, "GET") == 1
    assert len(sim.orders()) == 1
    assert exchange.balances()["BTC"] == pytest.approx(1 + 0.01 * 0.999)


def test_timeout_before_processing_is_resent_once(sim: ExchangeSimulator) -> None:
    exchange = _exchange(sim, timeout_ms=300)
    exchange.markets()
    sim.timeout_next(1, seconds=0.6, path=ORDER, method="POST")
    order = exchange.create_order(_market("slow-1"))
    assert order.status == "filled"
    assert sim.request_count(ORDER, "POST") == 2
    assert [o.client_order_id for o in sim.orders()] == ["slow-1"]


def test_resending_an_open_order_returns_it(sim: ExchangeSimulator,
                                            exchange: CcxtExchange) -> None:
    first = exchange.create_order(_limit("dup-1", 20_000))
    again = exchange.create_order(_limit("dup-1", 20_000))  # Binance: "Duplicate order sent."
    assert again.exchange_order_id == first.exchange_order_id
    assert len(sim.orders()) == 1


def test_partial_fills(sim: ExchangeSimulator, exchange: CcxtExchange) -> None:
    sim.partial_fill_next(2, fraction=0.4)
    market = exchange.create_order(_market("part-1", 0.01))
    assert (market.status, market.filled) == ("expired", 0.004)  # the rest expired
    limit = exchange.create_order(_limit("part-2", 31_000, 0.01))  # crosses: fills 40 %
    assert (limit.status, limit.filled) == ("partially_filled", 0.004)
    # the simulator matches resting orders on the next request: the rest fills at its limit
    assert exchange.fetch_open_orders("BTC/USDT") == []
    done = exchange.fetch_order("BTC/USDT", client_order_id="part-2")
    assert done is not None and (done.status, done.filled) == ("filled", 0.01)
    trades = exchange.fetch_my_trades("BTC/USDT")
    assert sorted(t.amount for t in trades) == pytest.approx([0.004, 0.004, 0.006])


def test_observer_sees_latency_per_endpoint(sim: ExchangeSimulator) -> None:
    observer = RecordingObserver()
    exchange = _exchange(sim, observer=observer)
    exchange.create_order(_market("obs-1"))
    endpoints = [endpoint for _, endpoint, _ in observer.requests]
    assert endpoints == ["load_markets", "create_order"]
    assert all(0 < seconds < 1 for _, _, seconds in observer.requests)


def test_spent_budget_refuses_without_sending(sim: ExchangeSimulator) -> None:
    budget = RequestBudget(weight_limit="3/minute", order_limit="1/minute", max_wait=0.05)
    exchange = _exchange(sim, budget=budget)
    sim.reset_counters()
    with pytest.raises(ExchangeUnavailableError, match="budget"):
        exchange.markets()  # weight 20 > 3: never fits
    assert sim.request_count() == 0


def _redis_budget(namespace: str, weight_limit: str) -> RequestBudget:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable ({exc}); CI=true requires it")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc})")
    return RequestBudget(REDIS_URL, weight_limit=weight_limit, order_limit=None,
                         max_wait=10.0, namespace=namespace)


def _run_two_adapters(sim: ExchangeSimulator, budgets: tuple[RequestBudget, RequestBudget],
                      calls: int) -> float:
    adapters = [_exchange(sim, budget=b) for b in budgets]

    def work(adapter: CcxtExchange) -> None:
        adapter.markets()  # weight 20
        for _ in range(calls):
            adapter.fetch_open_orders("BTC/USDT")  # weight 6

    threads = [threading.Thread(target=work, args=(a,)) for a in adapters]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def test_budget_is_shared_through_redis(sim: ExchangeSimulator) -> None:
    namespace = f"sftest-{uuid.uuid4().hex[:8]}"
    # each adapter needs 20 + 6 x 6 = 56 weight: within 60 a second alone, not both together
    shared = (_redis_budget(namespace, "60/second"), _redis_budget(namespace, "60/second"))
    elapsed_shared = _run_two_adapters(sim, shared, calls=6)
    separate = (_redis_budget(namespace + "a", "60/second"),
                _redis_budget(namespace + "b", "60/second"))
    elapsed_separate = _run_two_adapters(sim, separate, calls=6)
    assert sim.request_count("/api/v3/openOrders") == 24
    assert elapsed_shared >= 0.5, elapsed_shared  # 112 weight at 60/s waits ~1 s
    assert elapsed_separate < elapsed_shared  # apart, each fits its own 60 at once


def test_budget_storage_follows_the_settings() -> None:
    from limits.storage import MemoryStorage, RedisStorage

    from signalfactory.settings import Settings

    assert isinstance(RequestBudget.from_settings(Settings(redis_url=None)).storage,
                      MemoryStorage)
    assert isinstance(RequestBudget.from_settings(Settings(redis_url=REDIS_URL)).storage,
                      RedisStorage)
