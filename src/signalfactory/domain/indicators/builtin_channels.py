"""Donchian and Keltner channels, built from TA-Lib MAX/MIN, EMA and ATR."""

from __future__ import annotations

from collections.abc import Sequence

import talib

from signalfactory.domain.indicators.slices import each_slice, rolling_max, rolling_min
from signalfactory.domain.indicators.spec import (
    FloatArray,
    Indicator,
    Input,
    IntArray,
    Param,
    ParamValue,
)

_HLC = (Input("high", "high"), Input("low", "low"), Input("close", "close"))


def _donchian(inputs: Sequence[FloatArray], offsets: IntArray,
              params: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
    high, low = inputs
    n = int(params[0])
    upper = rolling_max(high, offsets, n)
    lower = rolling_min(low, offsets, n)
    return upper, (upper + lower) / 2.0, lower


DONCHIAN = Indicator(
    name="donchian", title="Donchian Channel", group="Volatility Indicators", source="builtin",
    inputs=(Input("high", "high"), Input("low", "low")),
    params=(Param("timeperiod", "int", 20, minimum=1, maximum=100_000,
                  doc="bars in the window, current bar included"),),
    outputs=("upper", "middle", "lower"),
    warmup="NaN for the first timeperiod - 1 bars",
    kernel=_donchian, lookback_fn=lambda p: int(p[0]) - 1,
    doc="""Donchian channel: upper = highest high and lower = lowest low of the last
    ``timeperiod`` bars, the current bar included; middle = (upper + lower) / 2.
    Warm-up: NaN for the first ``timeperiod - 1`` bars. Because the current bar is part of the
    window, ``close > donchian(20).upper`` can never hold; a breakout compares with the previous
    bar's channel: ``close > donchian(20).upper[1]``.""")


def _keltner(inputs: Sequence[FloatArray], offsets: IntArray,
             params: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
    high, low, close = inputs
    period, multiplier, atr_period = int(params[0]), float(params[1]), int(params[2])
    middle = each_slice(talib.EMA, [close], offsets, period)
    band = multiplier * each_slice(talib.ATR, [high, low, close], offsets, atr_period)
    return middle + band, middle, middle - band


def _keltner_lookback(params: tuple[ParamValue, ...]) -> int:
    return max(int(params[0]) - 1, int(params[2]))


KELTNER = Indicator(
    name="keltner", title="Keltner Channel", group="Volatility Indicators", source="builtin",
    inputs=_HLC,
    params=(Param("timeperiod", "int", 20, minimum=1, maximum=100_000,
                  doc="EMA period of the middle line"),
            Param("multiplier", "float", 2.0, minimum=0.0, maximum=1e6,
                  doc="ATR multiples between middle and bands"),
            Param("atr_period", "int", 10, minimum=1, maximum=100_000,
                  doc="ATR period (Wilder)")),
    outputs=("upper", "middle", "lower"),
    warmup="NaN for the first max(timeperiod - 1, atr_period) bars",
    kernel=_keltner, lookback_fn=_keltner_lookback,
    doc="""Keltner channel: middle = EMA(close, timeperiod) (TA-Lib EMA, seeded with the
    SMA of the first ``timeperiod`` closes); upper/lower = middle +- multiplier *
    ATR(atr_period) (TA-Lib ATR, Wilder smoothing). Warm-up: NaN for the first
    ``max(timeperiod - 1, atr_period)`` bars; the EMA and ATR keep a memory of the start of
    the data (TA-Lib unstable period).""")
