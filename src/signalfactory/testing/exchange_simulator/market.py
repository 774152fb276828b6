"""Symbols, their trading rules and bars, and Binance's kline arithmetic.

Bars are stored at one base interval per symbol (open times in ms, aligned to the interval);
klines of a longer Binance interval are aggregated from them on request. Only bars whose open
time is at or before the simulator's clock are visible, so the last kline is the candle still
open "now", as on the real exchange.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from signalfactory.domain.synthetic import generate_symbol

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_MINUTE_MS = 60_000
_DAY_MS = 86_400_000
#: Binance spot kline intervals and their length in ms ("1M" is calendar months: variable).
INTERVAL_MS: dict[str, int] = {
    "1s": 1000, "1m": _MINUTE_MS, "3m": 3 * _MINUTE_MS, "5m": 5 * _MINUTE_MS,
    "15m": 15 * _MINUTE_MS, "30m": 30 * _MINUTE_MS, "1h": 60 * _MINUTE_MS,
    "2h": 120 * _MINUTE_MS, "4h": 240 * _MINUTE_MS, "6h": 360 * _MINUTE_MS,
    "8h": 480 * _MINUTE_MS, "12h": 720 * _MINUTE_MS, "1d": _DAY_MS, "3d": 3 * _DAY_MS,
    "1w": 7 * _DAY_MS, "1M": 31 * _DAY_MS,
}
# Weekly candles open on Monday 00:00 UTC; 1970-01-01 was a Thursday, Monday is 4 days later.
_WEEK_ANCHOR_MS = 4 * _DAY_MS
KLINES_DEFAULT_LIMIT = 500
KLINES_MAX_LIMIT = 1000


def bucket_open(open_ms: IntArray, interval: str) -> IntArray:
    """The open time of the ``interval`` candle each base bar falls into."""
    if interval == "1M":
        months = open_ms.astype("datetime64[ms]").astype("datetime64[M]")
        return months.astype("datetime64[ms]").astype(np.int64)
    step = INTERVAL_MS[interval]
    if interval == "1w":
        out: IntArray = (open_ms - _WEEK_ANCHOR_MS) // step * step + _WEEK_ANCHOR_MS
        return out
    aligned: IntArray = open_ms // step * step
    return aligned


def next_open(open_ms: int, interval: str) -> int:
    """Open time of the candle after the one opening at ``open_ms`` (its close time + 1)."""
    if interval == "1M":
        month = np.datetime64(open_ms, "ms").astype("datetime64[M]") + np.timedelta64(1, "M")
        return int(month.astype("datetime64[ms]").astype(np.int64))
    return open_ms + INTERVAL_MS[interval]


@dataclass(frozen=True)
class Bars:
    """OHLCV of one symbol at one base interval; ``open_ms`` ascending and aligned."""

    interval: str
    open_ms: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        if self.interval not in INTERVAL_MS or self.interval == "1M":
            raise ValueError(f"base interval must be one of {sorted(INTERVAL_MS)} except 1M")
        n = self.open_ms.shape[0]
        for name in ("open", "high", "low", "close", "volume"):
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"{name} has {getattr(self, name).shape[0]} values, "
                                 f"open_ms has {n}")
        if n and (np.any(np.diff(self.open_ms) <= 0)
                  or np.any(self.open_ms % INTERVAL_MS[self.interval] != 0)):
            raise ValueError(f"open_ms must be ascending and aligned to {self.interval}")

    def __len__(self) -> int:
        return int(self.open_ms.shape[0])


def synthetic_bars(count: int, *, interval: str = "1m", end_ms: int | None = None,
                   seed: int = 7, start_price: float | None = None,
                   volatility: float = 1.0) -> Bars:
    """``count`` bars of the platform's synthetic market, the last one open at ``end_ms``
    (floored to the interval; default: the current wall-clock minute).

    The generator's moves are daily-sized; ``volatility`` scales every log price move (e.g.
    ``(1 / 1440) ** 0.5`` for minute bars that move like real minutes)."""
    import time

    step = INTERVAL_MS[interval]
    end = int(time.time() * 1000) if end_ms is None else end_ms
    last_open = end // step * step
    open_ms = last_open - step * np.arange(count - 1, -1, -1, dtype=np.int64)
    series = generate_symbol(np.random.default_rng(seed), "SIM", open_ms * 1_000_000)
    first = float(series.open[0])
    target = first if start_price is None else start_price

    def rescale(prices: FloatArray) -> FloatArray:
        # a power of the price relative to the first open: monotone, so OHLC order holds
        out: FloatArray = target * (prices / first) ** volatility
        return out

    high = np.maximum(series.high, np.maximum(series.open, series.close))
    low = np.minimum(series.low, np.minimum(series.open, series.close))
    return Bars(interval=interval, open_ms=open_ms, open=rescale(series.open),
                high=rescale(high), low=rescale(low), close=rescale(series.close),
                volume=series.volume.astype(np.float64))


@dataclass
class SymbolSpec:
    """One spot symbol: its rules (as exchangeInfo filters) and, optionally, bars.

    ``price`` overrides the bars' last close as the price market orders fill at.
    """

    base: str
    quote: str
    tick_size: str = "0.01"
    step_size: str = "0.00001"
    min_qty: str = "0.00001"
    max_qty: str = "9000.00000000"
    min_price: str = "0.01"
    max_price: str = "1000000.00"
    min_notional: str = "5.00"
    max_notional: str = "9000000.00"
    bars: Bars | None = None
    price: float | None = None
    status: str = "TRADING"
    #: Binance's legacy MIN_NOTIONAL filter instead of NOTIONAL (some symbols still show it)
    legacy_min_notional: bool = False
    _bucket_cache: dict[str, tuple[IntArray, IntArray]] = field(default_factory=dict,
                                                                repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def symbol(self) -> str:
        return f"{self.base}{self.quote}"

    @property
    def decimals(self) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal, Decimal]:
        return (Decimal(self.tick_size), Decimal(self.step_size), Decimal(self.min_qty),
                Decimal(self.max_qty), Decimal(self.min_notional), Decimal(self.max_notional))

    def visible_count(self, now_ms: int) -> int:
        """How many base bars have opened by ``now_ms``."""
        if self.bars is None:
            return 0
        return int(np.searchsorted(self.bars.open_ms, now_ms, side="right"))

    def last_price(self, now_ms: int) -> float | None:
        if self.price is not None:
            return self.price
        n = self.visible_count(now_ms)
        if n == 0 or self.bars is None:
            return None
        return float(self.bars.close[n - 1])

    def buckets(self, interval: str) -> tuple[IntArray, IntArray]:
        """(candle open times, index of each candle's first base bar) for ``interval``."""
        with self._lock:
            cached = self._bucket_cache.get(interval)
            if cached is None:
                if self.bars is None:
                    raise ValueError(f"{self.symbol} has no bars")
                opens = bucket_open(self.bars.open_ms, interval)
                starts = np.flatnonzero(np.concatenate(([True], opens[1:] != opens[:-1])))
                cached = (opens[starts], starts.astype(np.int64))
                self._bucket_cache[interval] = cached
            return cached

    def klines(self, interval: str, now_ms: int, start_ms: int | None, end_ms: int | None,
               limit: int) -> list[list[object]]:
        """Binance's /api/v3/klines rows: with ``startTime`` the first ``limit`` candles opening
        at or after it; with only ``endTime`` the last ``limit`` opening at or before it;
        neither: the latest ``limit``. Candles are never later than the one open now."""
        if self.bars is None or len(self.bars) == 0:
            return []
        visible = self.visible_count(now_ms)
        if visible == 0:
            return []
        base_step = INTERVAL_MS[self.bars.interval]
        if interval != "1M" and INTERVAL_MS[interval] < base_step:
            return []  # finer than the data: the simulator has no such candles
        opens, starts = self.buckets(interval)
        n_candles = int(np.searchsorted(starts, visible, side="left"))
        lo, hi = 0, n_candles
        if end_ms is not None:
            hi = min(hi, int(np.searchsorted(opens, end_ms, side="right")))
        if start_ms is not None:
            lo = int(np.searchsorted(opens, start_ms, side="left"))
            hi = min(hi, lo + limit)
        else:
            lo = max(0, hi - limit)
        if lo >= hi:
            return []
        return self._rows(interval, opens, starts, lo, hi, visible)

    def _rows(self, interval: str, opens: IntArray, starts: IntArray, lo: int, hi: int,
              visible: int) -> list[list[object]]:
        bars = self.bars
        if bars is None:
            raise ValueError(f"{self.symbol} has no bars")
        first = int(starts[lo])
        last = int(starts[hi]) if hi < starts.shape[0] else len(bars)
        last = min(last, visible)
        rel = (starts[lo:hi] - first).astype(np.intp)
        o = bars.open[first:last][rel]
        c_idx = np.concatenate((rel[1:], [last - first])) - 1
        c = bars.close[first:last][c_idx]
        h = np.maximum.reduceat(bars.high[first:last], rel)
        lw = np.minimum.reduceat(bars.low[first:last], rel)
        v = np.add.reduceat(bars.volume[first:last], rel)
        qv = np.add.reduceat(bars.volume[first:last] * bars.close[first:last], rel)
        counts = (np.diff(np.concatenate((rel, [last - first]))) * 10).tolist()
        open_ms = opens[lo:hi].tolist()
        if interval == "1M":
            close_ms = [next_open(t, interval) - 1 for t in open_ms]
        else:
            close_ms = (opens[lo:hi] + (INTERVAL_MS[interval] - 1)).tolist()
        # Python floats format several times faster than numpy scalars
        cols = [[f"{x:.8f}" for x in col.tolist()]
                for col in (o, h, lw, c, v, qv, v / 2, qv / 2)]
        return [[t, cols[0][i], cols[1][i], cols[2][i], cols[3][i], cols[4][i], close_ms[i],
                 cols[5][i], counts[i], cols[6][i], cols[7][i], "0"]
                for i, t in enumerate(open_ms)]

    def exchange_info(self) -> dict[str, object]:
        """This symbol as /api/v3/exchangeInfo lists it."""
        step_places = _places(self.step_size)
        tick_places = _places(self.tick_size)
        notional: dict[str, object]
        if self.legacy_min_notional:
            notional = {"filterType": "MIN_NOTIONAL", "minNotional": _pad(self.min_notional),
                        "applyToMarket": True, "avgPriceMins": 5}
        else:
            notional = {"filterType": "NOTIONAL", "minNotional": _pad(self.min_notional),
                        "applyMinToMarket": True, "maxNotional": _pad(self.max_notional),
                        "applyMaxToMarket": False, "avgPriceMins": 5}
        return {
            "symbol": self.symbol, "status": self.status,
            "baseAsset": self.base, "baseAssetPrecision": 8,
            "quoteAsset": self.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT",
                           "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
            "cancelReplaceAllowed": True, "amendAllowed": True, "pegInstructionsAllowed": True,
            "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": _pad(self.min_price),
                 "maxPrice": _pad(self.max_price), "tickSize": _pad(self.tick_size)},
                {"filterType": "LOT_SIZE", "minQty": _pad(self.min_qty),
                 "maxQty": _pad(self.max_qty), "stepSize": _pad(self.step_size)},
                {"filterType": "ICEBERG_PARTS", "limit": 10},
                {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000",
                 "maxQty": _pad(self.max_qty), "stepSize": "0.00000000"},
                notional,
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER",
                                                "EXPIRE_BOTH"],
            "quantityPrecision": step_places, "pricePrecision": tick_places,
        }

    def ticker_24hr(self, now_ms: int) -> dict[str, object]:
        """/api/v3/ticker/24hr for this symbol from the base bars of the last 24 hours."""
        price = self.last_price(now_ms) or 0.0
        open_price = high = low = price
        volume = quote_volume = 0.0
        count = 0
        if self.bars is not None and len(self.bars):
            hi = self.visible_count(now_ms)
            lo = int(np.searchsorted(self.bars.open_ms, now_ms - _DAY_MS, side="right"))
            if hi > lo:
                open_price = float(self.bars.open[lo])
                high = max(float(self.bars.high[lo:hi].max()), price)
                low = min(float(self.bars.low[lo:hi].min()), price)
                volume = float(self.bars.volume[lo:hi].sum())
                quote_volume = float((self.bars.volume[lo:hi] * self.bars.close[lo:hi]).sum())
                count = (hi - lo) * 10
        change = price - open_price
        pct = change / open_price * 100 if open_price else 0.0
        return {
            "symbol": self.symbol, "priceChange": _fmt(change),
            "priceChangePercent": f"{pct:.3f}",
            "weightedAvgPrice": _fmt(quote_volume / volume if volume else price),
            "prevClosePrice": _fmt(open_price), "lastPrice": _fmt(price),
            "lastQty": "0.00000000", "bidPrice": _fmt(price), "bidQty": "1.00000000",
            "askPrice": _fmt(price), "askQty": "1.00000000", "openPrice": _fmt(open_price),
            "highPrice": _fmt(high), "lowPrice": _fmt(low), "volume": _fmt(volume),
            "quoteVolume": _fmt(quote_volume), "openTime": now_ms - _DAY_MS,
            "closeTime": now_ms, "firstId": 0 if count else -1, "lastId": count - 1,
            "count": count,
        }


def _fmt(value: float | np.floating[npt.NBitBase]) -> str:
    """Binance prints decimals as strings with 8 places."""
    return f"{float(value):.8f}"


def _pad(text: str) -> str:
    return f"{Decimal(text):.8f}"


def _places(text: str) -> int:
    exponent = Decimal(text).normalize().as_tuple().exponent
    return max(0, -int(exponent))
