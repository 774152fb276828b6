"""Volume-weighted average price: rolling window and cumulative."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from signalfactory.domain.indicators.slices import njit_cached
from signalfactory.domain.indicators.spec import (
    FloatArray,
    Indicator,
    Input,
    IntArray,
    Param,
    ParamValue,
)

_HLCV = (Input("high", "high"), Input("low", "low"), Input("close", "close"),
         Input("volume", "volume"))


@njit_cached
def _vwap_loop(high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray,
               offsets: IntArray, window: int) -> FloatArray:
    """window > 0: rolling over ``window`` bars; window == 0: cumulative from the first bar."""
    n = high.shape[0]
    out = np.full(n, np.nan)
    for k in range(offsets.shape[0] - 1):
        a, b = offsets[k], offsets[k + 1]
        pv_sum = 0.0
        v_sum = 0.0
        missing = 0  # undefined bars inside the window: they make the value undefined
        traded = 0  # bars with non-zero volume inside the window (sums may keep rounding dust)
        for i in range(a, b):
            tp = (high[i] + low[i] + close[i]) / 3.0
            v = volume[i]
            if np.isnan(tp) or np.isnan(v):
                missing += 1
            else:
                pv_sum += tp * v
                v_sum += v
                traded += v != 0.0
            if window > 0 and i - a >= window:
                j = i - window
                tp_old = (high[j] + low[j] + close[j]) / 3.0
                v_old = volume[j]
                if np.isnan(tp_old) or np.isnan(v_old):
                    missing -= 1
                else:
                    pv_sum -= tp_old * v_old
                    v_sum -= v_old
                    traded -= v_old != 0.0
            if window > 0:
                defined = i - a >= window - 1 and missing == 0
            else:
                defined = not (np.isnan(tp) or np.isnan(v))
            if defined and traded > 0 and v_sum != 0.0:
                out[i] = pv_sum / v_sum
    return out


def _vwap(inputs: Sequence[FloatArray], offsets: IntArray,
          params: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
    high, low, close, volume = inputs
    return (_vwap_loop(high, low, close, volume, offsets, int(params[0])),)


def _cum_vwap(inputs: Sequence[FloatArray], offsets: IntArray,
              params: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
    high, low, close, volume = inputs
    return (_vwap_loop(high, low, close, volume, offsets, 0),)


VWAP = Indicator(
    name="vwap", title="Volume Weighted Average Price (rolling)", group="Volume Indicators",
    source="builtin", inputs=_HLCV,
    params=(Param("timeperiod", "int", 20, minimum=1, maximum=100_000,
                  doc="bars in the window, current bar included"),),
    outputs=("real",),
    warmup="NaN for the first timeperiod - 1 bars",
    kernel=_vwap, lookback_fn=lambda p: int(p[0]) - 1,
    doc="""Rolling VWAP: sum(typical * volume) / sum(volume) over the last ``timeperiod``
    bars, typical = (high + low + close) / 3. NaN when the window's volume is zero or a bar
    in it is undefined. Warm-up: NaN for the first ``timeperiod - 1`` bars.""")

CUM_VWAP = Indicator(
    name="cum_vwap", title="Volume Weighted Average Price (cumulative)",
    group="Volume Indicators", source="builtin", inputs=_HLCV, params=(),
    outputs=("real",),
    warmup="none: defined from the first bar",
    kernel=_cum_vwap, lookback_fn=lambda p: 0,
    doc="""Cumulative VWAP anchored at each instrument's first bar in the data: running
    sum(typical * volume) / running sum(volume), typical = (high + low + close) / 3.
    Undefined bars are skipped (NaN at that bar). No warm-up. The domain does not know trading
    sessions, so this does not reset daily; for a session VWAP on intraday bars evaluate one
    session's bars, or use ``vwap`` with a window of one session.""")
