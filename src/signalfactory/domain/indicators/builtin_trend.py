"""SuperTrend and Ichimoku Kinko Hyo."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import talib

from signalfactory.domain.indicators.slices import (
    each_slice,
    njit_cached,
    rolling_max,
    rolling_min,
)
from signalfactory.domain.indicators.spec import (
    FloatArray,
    Indicator,
    Input,
    IntArray,
    Param,
    ParamValue,
)

_HLC = (Input("high", "high"), Input("low", "low"), Input("close", "close"))


@njit_cached
def _supertrend_loop(high: FloatArray, low: FloatArray, close: FloatArray, atr: FloatArray,
                     offsets: IntArray, multiplier: float) -> tuple[FloatArray, FloatArray]:
    n = high.shape[0]
    value = np.full(n, np.nan)
    direction = np.full(n, np.nan)
    for k in range(offsets.shape[0] - 1):
        a, b = offsets[k], offsets[k + 1]
        started = False
        upper = lower = trend = 0.0
        for i in range(a, b):
            if np.isnan(atr[i]) or np.isnan(close[i]):
                started = False  # a gap restarts the recursion
                continue
            mid = (high[i] + low[i]) / 2.0
            basic_upper = mid + multiplier * atr[i]
            basic_lower = mid - multiplier * atr[i]
            if not started:
                upper, lower, trend, started = basic_upper, basic_lower, 1.0, True
            else:
                prev_close = close[i - 1]
                # a band only moves against the trend when price closed through it
                if basic_upper < upper or prev_close > upper:
                    upper = basic_upper
                if basic_lower > lower or prev_close < lower:
                    lower = basic_lower
                if trend > 0.0 and close[i] < lower:
                    trend = -1.0
                elif trend < 0.0 and close[i] > upper:
                    trend = 1.0
            direction[i] = trend
            value[i] = lower if trend > 0.0 else upper
    return value, direction


def _supertrend(inputs: Sequence[FloatArray], offsets: IntArray,
                params: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
    high, low, close = inputs
    atr = each_slice(talib.ATR, [high, low, close], offsets, int(params[0]))
    value, direction = _supertrend_loop(high, low, close, atr, offsets, float(params[1]))
    return value, direction


SUPERTREND = Indicator(
    name="supertrend", title="SuperTrend", group="Overlap Studies", source="builtin",
    inputs=_HLC,
    params=(Param("timeperiod", "int", 10, minimum=1, maximum=100_000, doc="ATR period"),
            Param("multiplier", "float", 3.0, minimum=0.0, maximum=1e6,
                  doc="ATR multiples between the median price and the bands")),
    outputs=("value", "direction"),
    warmup="NaN for the first timeperiod bars (the ATR warm-up)",
    kernel=_supertrend, lookback_fn=lambda p: int(p[0]),
    doc="""SuperTrend (Olivier Seban's rule as popularised on TradingView).

    basic bands = (high + low) / 2 +- multiplier * ATR(timeperiod) (TA-Lib ATR, Wilder).
    The final upper band only rises when the previous close was above it (otherwise it keeps
    its value or falls to the basic band); the final lower band likewise only falls when the
    previous close was below it. ``direction`` is +1 (up trend) or -1 (down trend): it
    starts at +1 on the first defined bar, turns -1 when the close falls below the final
    lower band and +1 when it rises above the final upper band. ``value`` is the lower band
    in an up trend and the upper band in a down trend.
    Warm-up: NaN for the first ``timeperiod`` bars.""")


def _midpoint(high: FloatArray, low: FloatArray, offsets: IntArray, n: int) -> FloatArray:
    result: FloatArray = (rolling_max(high, offsets, n) + rolling_min(low, offsets, n)) / 2.0
    return result


def _forward(x: FloatArray, offsets: IntArray, d: int) -> FloatArray:
    """The value plotted ``d`` bars ahead on a chart is the one known ``d`` bars ago."""
    out = np.full_like(x, np.nan)
    bounds: list[int] = offsets.tolist()
    for a, b in itertools.pairwise(bounds):
        if b - a > d:
            out[a + d:b] = x[a:b - d]
    return out


def _ichimoku(inputs: Sequence[FloatArray], offsets: IntArray,
              params: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
    high, low, close = inputs
    tenkan_n, kijun_n, senkou_n, d = (int(p) for p in params)
    tenkan = _midpoint(high, low, offsets, tenkan_n)
    kijun = _midpoint(high, low, offsets, kijun_n)
    senkou_a = _forward((tenkan + kijun) / 2.0, offsets, d)
    senkou_b = _forward(_midpoint(high, low, offsets, senkou_n), offsets, d)
    return tenkan, kijun, senkou_a, senkou_b, close.copy()


def _ichimoku_lookback(params: tuple[ParamValue, ...]) -> int:
    tenkan_n, kijun_n, senkou_n, d = (int(p) for p in params)
    return max(tenkan_n, kijun_n, senkou_n) - 1 + d


ICHIMOKU = Indicator(
    name="ichimoku", title="Ichimoku Kinko Hyo", group="Overlap Studies", source="builtin",
    inputs=_HLC,
    params=(Param("tenkan", "int", 9, minimum=1, maximum=100_000),
            Param("kijun", "int", 26, minimum=1, maximum=100_000),
            Param("senkou", "int", 52, minimum=1, maximum=100_000),
            Param("displacement", "int", 26, minimum=0, maximum=100_000)),
    outputs=("tenkan", "kijun", "senkou_a", "senkou_b", "chikou"),
    warmup="tenkan: tenkan-1, kijun: kijun-1, senkou_a: max(tenkan,kijun)-1+displacement, "
           "senkou_b: senkou-1+displacement, chikou: none",
    kernel=_ichimoku, lookback_fn=_ichimoku_lookback,
    doc="""Ichimoku, aligned for signals: every output at bar t uses only bars up to t.

    - tenkan = (highest high + lowest low) / 2 over ``tenkan`` bars; kijun likewise over
      ``kijun`` bars (current bar included).
    - senkou_a / senkou_b: charts draw the cloud ``displacement`` bars ahead. Here the value
      at bar t is the cloud *as drawn at bar t*, i.e. computed from data up to
      t - displacement: senkou_a[t] = (tenkan + kijun)[t - displacement] / 2 and
      senkou_b[t] = midpoint over ``senkou`` bars ending at t - displacement. So
      ``close > ichimoku().senkou_a`` is "price above the cloud" as seen on a chart, with no
      look-ahead.
    - chikou: charts draw the close ``displacement`` bars back; that point only becomes
      known at bar t, where it equals close[t]. So chikou[t] = close[t]; compare it with the
      price it is drawn against using look-back, e.g. ``ichimoku().chikou > high[26]``.
    Warm-up: tenkan - 1 and kijun - 1 bars for those lines; max(tenkan, kijun) - 1 +
    displacement for senkou_a, senkou - 1 + displacement for senkou_b, none for chikou.
    ``lookback`` reports the largest, senkou - 1 + displacement with the defaults (77).""")
