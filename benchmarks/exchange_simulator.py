"""Exchange simulator speed: per-request latency over loopback, with uvicorn as the reference.

    .venv/bin/python benchmarks/exchange_simulator.py [--requests 2000]

The trading benchmark needs the whole order path at p95 <= 20 ms and >= 100 orders/s, so the
simulator's own share must stay in the low milliseconds. Measured in one run, one keep-alive
connection, sequential requests (latency, not concurrency):

(a) the simulator's ``http.server`` (ThreadingHTTPServer, one write per response):
    ping, klines (500 candles), a signed market order;
(b) reference: the same ping answered by Starlette on uvicorn (httptools) in a thread;
(c) the real ccxt client: fetch_ticker and create_order through ``CcxtExchange`` (budget,
    retries, mapping included), p50/p95 and orders per second.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header

from signalfactory.adapters.exchanges.ccxt_exchange import CcxtExchange
from signalfactory.adapters.exchanges.request_budget import RequestBudget
from signalfactory.domain.trading.exchange import OrderRequest
from signalfactory.testing.exchange_simulator import ExchangeSimulator, SymbolSpec, synthetic_bars


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100)
    return statistics.median(ordered) * 1000, q[94] * 1000, q[98] * 1000


def measure(n: int, fn: Callable[[], object]) -> list[float]:
    for _ in range(min(50, n)):
        fn()  # warm up: connection, caches
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def report(name: str, samples: list[float]) -> float:
    p50, p95, p99 = percentiles(samples)
    print(f"{name:<42} p50 {p50:7.3f} ms   p95 {p95:7.3f} ms   p99 {p99:7.3f} ms")
    return p50


def getter(host: str, port: int, path: str) -> Callable[[], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=5)

    def get() -> bytes:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
        return body

    return get


def signed_order(sim: ExchangeSimulator, host: str, port: int) -> Callable[[], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    counter = iter(range(10**9))

    def post() -> bytes:
        i = next(counter)
        query = urlencode({"symbol": "BTCUSDT", "side": "BUY" if i % 2 else "SELL",
                           "type": "MARKET", "quantity": "0.001",
                           "newClientOrderId": f"bench-{i}",
                           "timestamp": int(time.time() * 1000)})
        signature = hmac.new(sim.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        conn.request("POST", "/api/v3/order", body=f"{query}&signature={signature}",
                     headers={"X-MBX-APIKEY": sim.api_key,
                              "Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"order: {response.status} {body[:200]!r}")
        return body

    return post


def start_uvicorn() -> tuple[object, int]:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ping(request: object) -> JSONResponse:
        return JSONResponse({})

    app = Starlette(routes=[Route("/api/v3/ping", ping)])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    return server, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    n = args.requests
    bars = synthetic_bars(5000, interval="1m", start_price=30_000.0)
    spec = SymbolSpec("BTC", "USDT", bars=bars, price=30_000.0)
    with ExchangeSimulator([spec], balances={"USDT": 10**9, "BTC": 10**6}) as sim:
        host, port = sim.url.removeprefix("http://").split(":")
        header(f"(a) simulator, http.server, {n} sequential requests on one connection")
        ours = report("GET /api/v3/ping", measure(n, getter(host, int(port), "/api/v3/ping")))
        report("GET /api/v3/klines (500 x 1m)", measure(n, getter(
            host, int(port), "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=500")))
        report("POST /api/v3/order (signed, market)",
               measure(n, signed_order(sim, host, int(port))))

        header("(b) reference: Starlette on uvicorn, same ping")
        server, uv_port = start_uvicorn()
        ref = report("GET /api/v3/ping (uvicorn)", measure(n, getter(host, uv_port,
                                                                   "/api/v3/ping")))
        server.should_exit = True  # type: ignore[attr-defined]
        print(f"simulator / uvicorn p50 latency: {ours / ref:.2f}x")

        header("(c) through the real ccxt client (CcxtExchange: budget, retries, mapping)")
        exchange = CcxtExchange(
            "binance", api_key=sim.api_key, secret=sim.secret,
            config=sim.ccxt_config(rate_limit_ms=0.1),
            budget=RequestBudget(weight_limit="1000000/minute", order_limit=None))
        exchange.markets()
        report("fetch_ticker", measure(n // 2, lambda: exchange.client.fetch_ticker("BTC/USDT")))
        counter = iter(range(10**9))

        def order() -> object:
            i = next(counter)
            return exchange.create_order(OrderRequest(
                "BTC/USDT", "buy" if i % 2 else "sell", "market", 0.001, f"ccxt-{i}",
                reference_price=30_000.0))

        samples = measure(n, order)
        report("create_order (market)", samples)
        print(f"sequential orders per second: {len(samples) / sum(samples):.0f}")
        exchange.close()


if __name__ == "__main__":
    main()
