"""The exchange simulator speaks Binance spot REST well enough for the real ccxt client.

Public endpoints first (markets, tickers, klines with Binance's pagination rules and the candle
still open "now"), then the signed ones (see the second half of this file). Every test talks
to the simulator over loopback HTTP.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import ccxt
import numpy as np
import pytest

from signalfactory.testing.exchange_simulator import (
    Bars,
    ExchangeSimulator,
    SymbolSpec,
    synthetic_bars,
)

MINUTE = 60_000
# 2023-11-14 22:13:20 UTC; the clock sits 30 s into the minute after the last full bar.
NOW = 1_700_000_000_000
CLOCK = NOW // MINUTE * MINUTE + 30_000
N_BARS = 3000


@pytest.fixture(scope="module")
def bars() -> Bars:
    # 100 bars lie in the simulator's future: they must never be served.
    return synthetic_bars(N_BARS + 100, interval="1m", end_ms=CLOCK + 100 * MINUTE,
                          start_price=30_000.0)


@pytest.fixture(scope="module")
def sim(bars: Bars) -> Iterator[ExchangeSimulator]:
    specs = [SymbolSpec("BTC", "USDT", tick_size="0.01", step_size="0.00001",
                        min_notional="5", bars=bars),
             SymbolSpec("ETH", "USDT", tick_size="0.01", step_size="0.0001", price=2000.0,
                        legacy_min_notional=True)]
    with ExchangeSimulator(specs, clock_ms=CLOCK) as simulator:
        yield simulator


@pytest.fixture
def client(sim: ExchangeSimulator) -> Any:
    sim.clear_faults()
    exchange = ccxt.binance(sim.ccxt_config(rate_limit_ms=1))
    exchange.load_markets()
    return exchange


def _get(sim: ExchangeSimulator, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(sim.url + path, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_load_markets_makes_one_request_and_parses_filters(sim: ExchangeSimulator) -> None:
    sim.reset_counters()
    exchange = ccxt.binance(sim.ccxt_config())
    markets = exchange.load_markets()
    assert sim.request_counts() == {"GET /api/v3/exchangeInfo": 1}
    assert set(markets) == {"BTC/USDT", "ETH/USDT"}
    btc = markets["BTC/USDT"]
    assert btc["spot"] and btc["id"] == "BTCUSDT"
    assert btc["precision"]["amount"] == 0.00001 and btc["precision"]["price"] == 0.01
    assert btc["limits"]["cost"]["min"] == 5.0  # from the NOTIONAL filter
    assert markets["ETH/USDT"]["limits"]["cost"]["min"] == 5.0  # legacy MIN_NOTIONAL filter
    assert markets["ETH/USDT"]["limits"]["amount"]["min"] == 0.00001


def test_time_ping_and_tickers(sim: ExchangeSimulator, client: Any, bars: Bars) -> None:
    assert _get(sim, "/api/v3/ping") == (200, {})
    assert _get(sim, "/api/v3/time") == (200, {"serverTime": CLOCK})
    last_close = float(bars.close[N_BARS - 1])
    assert client.fetch_ticker("BTC/USDT")["last"] == pytest.approx(last_close)
    assert client.fetch_ticker("ETH/USDT")["last"] == 2000.0
    status, prices = _get(sim, "/api/v3/ticker/price")
    assert status == 200
    assert {p["symbol"]: float(p["price"]) for p in prices} == {
        "BTCUSDT": pytest.approx(last_close), "ETHUSDT": 2000.0}
    sim.set_price("ETHUSDT", 2100.5)
    try:
        assert client.fetch_ticker("ETH/USDT")["last"] == 2100.5
    finally:
        sim.set_price("ETHUSDT", 2000.0)


def test_errors_are_binance_shaped(sim: ExchangeSimulator, client: Any) -> None:
    assert _get(sim, "/api/v3/klines?symbol=NOPE&interval=1m") == (
        400, {"code": -1121, "msg": "Invalid symbol."})
    status, body = _get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=7m")
    assert (status, body["code"]) == (400, -1120)
    status, body = _get(sim, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1001")
    assert (status, body["code"]) == (400, -1130)
    status, body = _get(sim, "/api/v3/klines?interval=1m")
    assert (status, body["code"]) == (400, -1102)
    with pytest.raises(ccxt.BadSymbol):
        client.fetch_ohlcv("NOPE/USDT")


def test_klines_latest_end_with_the_open_candle(client: Any, bars: Bars) -> None:
    rows = client.fetch_ohlcv("BTC/USDT", "1m")
    assert len(rows) == 500  # Binance's default limit
    assert rows[-1][0] == CLOCK // MINUTE * MINUTE  # the candle open now, nothing later
    assert rows[-1][0] == int(bars.open_ms[N_BARS - 1])
    assert rows[0][0] == int(bars.open_ms[N_BARS - 500])
    assert rows[-1][4] == pytest.approx(float(bars.close[N_BARS - 1]))
    assert rows[-1][5] == pytest.approx(float(bars.volume[N_BARS - 1]))


def test_klines_start_time_limit_and_end_time(client: Any, bars: Bars) -> None:
    start = int(bars.open_ms[10]) + 1  # inside candle 10: the next one (11) comes first
    rows = client.fetch_ohlcv("BTC/USDT", "1m", since=start, limit=1000)
    assert len(rows) == 1000
    assert [r[0] for r in rows] == bars.open_ms[11:1011].tolist()
    assert [r[1] for r in rows] == pytest.approx(bars.open[11:1011].tolist())
    end = int(bars.open_ms[200])
    rows = client.fetch_ohlcv("BTC/USDT", "1m", since=start, params={"until": end})
    assert [r[0] for r in rows] == bars.open_ms[11:201].tolist()  # endTime is inclusive
    rows = client.fetch_ohlcv("BTC/USDT", "1m", limit=5, params={"endTime": end})
    assert [r[0] for r in rows] == bars.open_ms[196:201].tolist()  # the last 5 up to endTime
    # startTime after "now": nothing (the 100 future bars stay hidden)
    assert client.fetch_ohlcv("BTC/USDT", "1m", since=CLOCK + MINUTE) == []


def test_pagination_walks_every_bar_once(sim: ExchangeSimulator, client: Any,
                                         bars: Bars) -> None:
    sim.reset_counters()
    since = int(bars.open_ms[0])
    seen: list[list[float]] = []
    while True:
        page = client.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=1000)
        if not page:
            break
        seen.extend(page)
        since = int(page[-1][0]) + MINUTE
    assert [r[0] for r in seen] == bars.open_ms[:N_BARS].tolist()
    assert sim.request_count("/api/v3/klines") == 4  # 1000 + 1000 + 1000 + an empty page
    # ccxt's own paginator gets the same bars
    paged = client.fetch_ohlcv("BTC/USDT", "1m", since=int(bars.open_ms[0]),
                               params={"paginate": True, "until": CLOCK})
    assert [r[0] for r in paged] == bars.open_ms[:N_BARS].tolist()


def test_hourly_klines_aggregate_minutes(client: Any, bars: Bars) -> None:
    rows = client.fetch_ohlcv("BTC/USDT", "1h", limit=1000)
    opens = bars.open_ms[:N_BARS]
    hours = opens // 3_600_000 * 3_600_000
    assert [r[0] for r in rows] == np.unique(hours).tolist()
    for row in (rows[1], rows[-1]):  # a complete hour and the hour still open
        mask = hours == row[0]
        assert row[1] == pytest.approx(float(bars.open[:N_BARS][mask][0]))
        assert row[2] == pytest.approx(float(bars.high[:N_BARS][mask].max()))
        assert row[3] == pytest.approx(float(bars.low[:N_BARS][mask].min()))
        assert row[4] == pytest.approx(float(bars.close[:N_BARS][mask][-1]))
        assert row[5] == pytest.approx(float(bars.volume[:N_BARS][mask].sum()))


def test_advancing_the_clock_reveals_the_next_candle(bars: Bars) -> None:
    spec = SymbolSpec("BTC", "USDT", bars=bars)
    with ExchangeSimulator([spec], clock_ms=CLOCK) as sim:
        exchange = ccxt.binance(sim.ccxt_config())
        before = exchange.fetch_ohlcv("BTC/USDT", "1m", limit=1)[-1][0]
        sim.advance(60)
        after = exchange.fetch_ohlcv("BTC/USDT", "1m", limit=1)[-1][0]
        assert after - before == MINUTE
        assert exchange.fetch_ticker("BTC/USDT")["last"] == pytest.approx(
            float(bars.close[N_BARS]))


# -- signed endpoints -----------------------------------------------------------------------


@pytest.fixture
def venue() -> Iterator[ExchangeSimulator]:
    specs = [SymbolSpec("BTC", "USDT", price=30_000.0), SymbolSpec("ETH", "USDT", price=2000.0)]
    with ExchangeSimulator(specs, balances={"USDT": 100_000, "BTC": 1}) as simulator:
        yield simulator


@pytest.fixture
def trader(venue: ExchangeSimulator) -> Any:
    exchange = ccxt.binance(venue.ccxt_config(rate_limit_ms=1, timeout_ms=1000))
    exchange.load_markets()
    return exchange


def test_market_order_fills_and_moves_balances(venue: ExchangeSimulator, trader: Any) -> None:
    order = trader.create_order("BTC/USDT", "market", "buy", 0.5,
                                params={"clientOrderId": "sf-buy-1"})
    assert (order["status"], order["filled"], order["average"]) == ("closed", 0.5, 30_000.0)
    assert order["clientOrderId"] == "sf-buy-1"
    balance = trader.fetch_balance()
    assert balance["USDT"]["total"] == pytest.approx(100_000 - 15_000)
    assert balance["BTC"]["total"] == pytest.approx(1 + 0.5 * 0.999)  # fee taken in BTC
    trades = trader.fetch_my_trades("BTC/USDT")
    assert [(t["order"], t["amount"], t["price"]) for t in trades] == [(order["id"], 0.5, 30_000)]
    assert trades[0]["fee"] == {"currency": "BTC", "cost": pytest.approx(0.0005)}
    sell = trader.create_order("BTC/USDT", "market", "sell", 0.25)
    assert sell["status"] == "closed"
    assert trader.fetch_balance()["USDT"]["total"] == pytest.approx(
        85_000 + 7500 * 0.999)  # fee taken in USDT


def test_limit_order_rests_locks_funds_and_fills_when_price_crosses(
        venue: ExchangeSimulator, trader: Any) -> None:
    order = trader.create_order("BTC/USDT", "limit", "buy", 0.1, 29_000,
                                params={"clientOrderId": "sf-limit-1"})
    assert order["status"] == "open"
    assert trader.fetch_balance()["USDT"] == {"free": 97_100.0, "used": 2900.0,
                                              "total": 100_000.0}
    assert [o["id"] for o in trader.fetch_open_orders("BTC/USDT")] == [order["id"]]
    assert [o["id"] for o in trader.fetch_open_orders()] == [order["id"]]
    by_client = trader.fetch_order(None, "BTC/USDT", params={"clientOrderId": "sf-limit-1"})
    assert by_client["id"] == order["id"]
    venue.set_price("BTCUSDT", 29_500)  # not crossed yet
    assert trader.fetch_order(order["id"], "BTC/USDT")["status"] == "open"
    venue.set_price("BTCUSDT", 28_900)
    filled = trader.fetch_order(order["id"], "BTC/USDT")
    assert (filled["status"], filled["filled"], filled["average"]) == ("closed", 0.1, 29_000)
    assert trader.fetch_open_orders("BTC/USDT") == []
    assert trader.fetch_balance()["USDT"] == {"free": 97_100.0, "used": 0.0, "total": 97_100.0}
    assert trader.fetch_my_trades("BTC/USDT")[-1]["takerOrMaker"] == "maker"


def test_cancel_releases_funds_and_unknown_orders_are_binance_errors(
        venue: ExchangeSimulator, trader: Any) -> None:
    order = trader.create_order("BTC/USDT", "limit", "sell", 0.2, 35_000)
    assert trader.fetch_balance()["BTC"]["used"] == pytest.approx(0.2)
    cancelled = trader.cancel_order(order["id"], "BTC/USDT")
    assert cancelled["status"] == "canceled"
    assert trader.fetch_balance()["BTC"] == {"free": 1.0, "used": 0.0, "total": 1.0}
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        trader.cancel_order(order["id"], "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        trader.fetch_order(None, "BTC/USDT", params={"clientOrderId": "never-sent"})


def test_duplicate_client_order_id_of_an_open_order_is_refused(trader: Any) -> None:
    trader.create_order("BTC/USDT", "limit", "buy", 0.1, 20_000, params={"clientOrderId": "d1"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        trader.create_order("BTC/USDT", "limit", "buy", 0.1, 20_000,
                            params={"clientOrderId": "d1"})
    assert len(trader.fetch_open_orders("BTC/USDT")) == 1


def test_filters_and_funds_are_checked_server_side(venue: ExchangeSimulator) -> None:
    status, body = _signed(venue, "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY",
                           type="MARKET", quantity="0.000011")
    assert (status, body) == (400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"})
    status, body = _signed(venue, "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY",
                           type="LIMIT", timeInForce="GTC", quantity="0.001", price="1.005")
    assert body == {"code": -1013, "msg": "Filter failure: PRICE_FILTER"}
    status, body = _signed(venue, "POST", "/api/v3/order", symbol="BTCUSDT", side="BUY",
                           type="MARKET", quantity="0.0001")  # 3 USDT < 5
    assert body == {"code": -1013, "msg": "Filter failure: NOTIONAL"}
    status, body = _signed(venue, "POST", "/api/v3/order", symbol="BTCUSDT", side="SELL",
                           type="MARKET", quantity="2")
    assert body == {"code": -2010,
                    "msg": "Account has insufficient balance for requested action."}
    assert venue.orders() == []


def _signed(sim: ExchangeSimulator, method: str, path: str, *, secret: str | None = None,
            api_key: str | None = None, timestamp: int | None = None,
            **params: str) -> tuple[int, Any]:
    import hashlib
    import hmac
    import time
    from urllib.parse import urlencode

    query = urlencode({**params, "timestamp": timestamp or int(time.time() * 1000)})
    key = (secret or sim.secret).encode()
    query += "&signature=" + hmac.new(key, query.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(  # noqa: S310 - the simulator on loopback
        f"{sim.url}{path}" + ("" if method == "POST" else f"?{query}"),
        data=query.encode() if method == "POST" else None, method=method,
        headers={"X-MBX-APIKEY": api_key or sim.api_key})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_signature_key_and_timestamp_are_checked(venue: ExchangeSimulator) -> None:
    assert _signed(venue, "GET", "/api/v3/account")[0] == 200
    assert _signed(venue, "GET", "/api/v3/account", secret="wrong") == (
        400, {"code": -1022, "msg": "Signature for this request is not valid."})
    assert _signed(venue, "GET", "/api/v3/account", api_key="nobody") == (
        401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
    status, body = _signed(venue, "GET", "/api/v3/account", timestamp=1_600_000_000_000)
    assert (status, body["code"]) == (400, -1021)
    # the real client: a wrong secret is an authentication error, nothing is placed
    bad = ccxt.binance(venue.ccxt_config(venue.api_key, "wrong-secret"))
    bad.load_markets()
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        bad.create_order("BTC/USDT", "market", "buy", 0.01)
    assert venue.orders() == []


def test_faults_look_like_the_real_failures(venue: ExchangeSimulator, trader: Any) -> None:
    venue.rate_limit_next(1, retry_after=7)
    with pytest.raises(ccxt.DDoSProtection):
        trader.fetch_balance()
    assert trader.last_response_headers["Retry-After"] == "7"
    venue.server_error_next(1, status=502)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        trader.fetch_balance()
    venue.timeout_next(1, seconds=3)
    with pytest.raises(ccxt.RequestTimeout):
        trader.fetch_balance()  # the client's timeout is 1 s
    venue.drop_response_next(1)
    with pytest.raises(ccxt.NetworkError):
        trader.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "lost"})
    # the order was accepted even though the client saw a reset
    assert [o.client_order_id for o in venue.orders()] == ["lost"]
    found = trader.fetch_order(None, "BTC/USDT", params={"clientOrderId": "lost"})
    assert found["status"] == "closed"
    assert venue.request_count("/api/v3/order", "POST") == 1
    assert venue.request_count("/api/v3/account") == 3


def test_partial_fills(venue: ExchangeSimulator, trader: Any) -> None:
    venue.partial_fill_next(2, fraction=0.3)
    market = trader.create_order("BTC/USDT", "market", "buy", 0.01)
    assert (market["status"], market["filled"]) == ("expired", 0.003)  # the rest expired
    limit = trader.create_order("BTC/USDT", "limit", "buy", 0.01, 31_000)  # crosses: taker
    assert (limit["status"], limit["filled"], limit["remaining"]) == ("open", 0.003, 0.007)
    assert venue.balances()["USDT"][1] == pytest.approx(0.007 * 31_000)  # the rest's funds
    assert venue.match() == 1  # the rest fills at its limit (maker) on the next match
    done = trader.fetch_order(limit["id"], "BTC/USDT")
    assert (done["status"], done["filled"]) == ("closed", 0.01)
    fills = trader.fetch_my_trades("BTC/USDT", params={"orderId": limit["id"]})
    assert [(t["amount"], t["price"], t["takerOrMaker"]) for t in fills] == [
        (0.003, 30_000, "taker"), (0.007, 31_000, "maker")]
    assert trader.fetch_balance()["USDT"]["used"] == 0.0


def test_latency_and_counters(venue: ExchangeSimulator, trader: Any) -> None:
    import time

    venue.set_latency(0.3, path="/api/v3/account")
    started = time.perf_counter()
    trader.fetch_balance()
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    trader.fetch_ticker("BTC/USDT")  # other paths are not delayed
    assert time.perf_counter() - started < 0.3
    assert venue.request_counts()["GET /api/v3/account"] == 1


def test_synthetic_bars_keep_ohlc_relations_and_scale_volatility() -> None:
    daily_like = synthetic_bars(2000, end_ms=CLOCK, start_price=100.0)
    minute_like = synthetic_bars(2000, end_ms=CLOCK, start_price=100.0,
                                 volatility=(1 / 1440) ** 0.5)
    for bars in (daily_like, minute_like):
        assert bars.open[0] == pytest.approx(100.0)
        assert np.all(bars.high >= np.maximum(bars.open, bars.close))
        assert np.all(bars.low <= np.minimum(bars.open, bars.close))
        assert int(bars.open_ms[-1]) == CLOCK // MINUTE * MINUTE
    spread = lambda b: float(np.log(b.close).std())  # noqa: E731 - a one-line measure
    assert spread(minute_like) < spread(daily_like) / 10
