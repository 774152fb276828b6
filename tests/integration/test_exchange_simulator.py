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

import numpy as np
import pytest

from signalfactory.testing.exchange_simulator import (
    Bars,
    ExchangeSimulator,
    SymbolSpec,
    synthetic_bars,
)

ccxt = pytest.importorskip("ccxt", reason="ccxt is in the [exchanges] extra")

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
