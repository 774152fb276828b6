"""Binance spot's public market-data endpoints, answered from the simulator's symbols."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from signalfactory.testing.exchange_simulator.errors import ApiError, mandatory
from signalfactory.testing.exchange_simulator.market import (
    INTERVAL_MS,
    KLINES_DEFAULT_LIMIT,
    KLINES_MAX_LIMIT,
    SymbolSpec,
)

if TYPE_CHECKING:
    from signalfactory.testing.exchange_simulator.simulator import ExchangeSimulator

Params = Mapping[str, str]
Payload = object
Endpoint = Callable[["ExchangeSimulator", Params], Payload]


def ping(sim: ExchangeSimulator, params: Params) -> Payload:
    return {}


def server_time(sim: ExchangeSimulator, params: Params) -> Payload:
    return {"serverTime": sim.now_ms()}


def exchange_info(sim: ExchangeSimulator, params: Params) -> Payload:
    specs = _selected(sim, params)
    limit, window = sim.request_weight_limit or (6000, 60.0)
    return {
        "timezone": "UTC",
        "serverTime": sim.now_ms(),
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND",
             "intervalNum": max(1, int(window)), "limit": limit},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
             "limit": 61000},
        ],
        "exchangeFilters": [],
        "symbols": [spec.exchange_info() for spec in specs],
    }


def ticker_price(sim: ExchangeSimulator, params: Params) -> Payload:
    now = sim.now_ms()
    rows = [{"symbol": spec.symbol, "price": f"{sim.price_of(spec, now):.8f}"}
            for spec in _selected(sim, params)]
    return rows[0] if "symbol" in params else rows


def ticker_24hr(sim: ExchangeSimulator, params: Params) -> Payload:
    now = sim.now_ms()
    rows = [spec.ticker_24hr(now) for spec in _selected(sim, params)]
    if params.get("type", "FULL") == "MINI":
        keep = ("symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume",
                "quoteVolume", "openTime", "closeTime", "firstId", "lastId", "count")
        rows = [{k: row[k] for k in keep} for row in rows]
    return rows[0] if "symbol" in params else rows


def avg_price(sim: ExchangeSimulator, params: Params) -> Payload:
    spec = sim.symbol_spec(mandatory(params, "symbol"))
    now = sim.now_ms()
    return {"mins": 5, "price": f"{sim.price_of(spec, now):.8f}", "closeTime": now}


def klines(sim: ExchangeSimulator, params: Params) -> Payload:
    spec = sim.symbol_spec(mandatory(params, "symbol"))
    interval = mandatory(params, "interval")
    if interval not in INTERVAL_MS:
        raise ApiError(400, -1120, "Invalid interval.")
    limit = _int(params, "limit", KLINES_DEFAULT_LIMIT)
    if not 1 <= limit <= KLINES_MAX_LIMIT:
        raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    start = _optional_int(params, "startTime")
    end = _optional_int(params, "endTime")
    if start is not None and end is not None and start > end:
        raise ApiError(400, -1023, "Start time is greater than end time.")
    return spec.klines(interval, sim.now_ms(), start, end, limit)


def _selected(sim: ExchangeSimulator, params: Params) -> list[SymbolSpec]:
    if "symbol" in params:
        return [sim.symbol_spec(params["symbol"])]
    if "symbols" in params:
        try:
            names = json.loads(params["symbols"])
        except ValueError:
            raise ApiError(400, -1100, "Illegal characters found in parameter 'symbols'; "
                           "legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\")"
                           "{0,}){0,1}\\]$'.") from None
        return [sim.symbol_spec(str(name)) for name in names]
    return sim.symbol_specs()


def _int(params: Params, name: str, default: int) -> int:
    value = _optional_int(params, name)
    return default if value is None else value


def _optional_int(params: Params, name: str) -> int | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{name}'; "
                       "legal range is '^[0-9]{1,20}$'.") from None


#: (method, path) -> (handler, request weight, weight when no symbol is given)
PUBLIC_ROUTES: dict[tuple[str, str], tuple[Endpoint, int, int]] = {
    ("GET", "/api/v3/ping"): (ping, 1, 1),
    ("GET", "/api/v3/time"): (server_time, 1, 1),
    ("GET", "/api/v3/exchangeInfo"): (exchange_info, 20, 20),
    ("GET", "/api/v3/ticker/price"): (ticker_price, 2, 4),
    ("GET", "/api/v3/ticker/24hr"): (ticker_24hr, 2, 80),
    ("GET", "/api/v3/avgPrice"): (avg_price, 2, 2),
    ("GET", "/api/v3/klines"): (klines, 2, 2),
}
