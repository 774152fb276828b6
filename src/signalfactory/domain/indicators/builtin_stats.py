"""Rolling z-score and rolling percent rank of any series."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import talib

from signalfactory.domain.indicators.slices import each_slice, njit_cached
from signalfactory.domain.indicators.spec import (
    FloatArray,
    Indicator,
    Input,
    IntArray,
    Param,
    ParamValue,
)

#: a window whose standard deviation is below this fraction of its mean's size is flat
_FLAT = 1e-10


def _zscore(inputs: Sequence[FloatArray], offsets: IntArray,
            params: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
    (x,) = inputs
    n = int(params[0])
    mean = each_slice(talib.SMA, [x], offsets, n)
    std = each_slice(talib.STDDEV, [x], offsets, n, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z: FloatArray = (x - mean) / std
    # TA-Lib's running sums leave rounding dust in the variance of a flat window
    z[~(std > _FLAT * np.maximum(np.abs(mean), 1.0))] = np.nan
    return (z,)


ZSCORE = Indicator(
    name="zscore", title="Rolling z-score", group="Statistic Functions", source="builtin",
    inputs=(Input("real", None),),
    params=(Param("timeperiod", "int", 20, minimum=2, maximum=100_000,
                  doc="bars in the window, current bar included"),),
    outputs=("real",),
    warmup="NaN for the first timeperiod - 1 bars",
    kernel=_zscore, lookback_fn=lambda p: int(p[0]) - 1,
    doc="""Rolling z-score: (x - mean) / std over the last ``timeperiod`` values, current
    value included, population standard deviation (TA-Lib SMA and STDDEV). NaN where the
    window is flat (std ~ 0). Warm-up: NaN for the first ``timeperiod - 1`` bars.""")


@njit_cached
def _percentrank_loop(x: FloatArray, offsets: IntArray, window: int) -> FloatArray:
    out = np.full(x.shape[0], np.nan)
    for k in range(offsets.shape[0] - 1):
        a, b = offsets[k], offsets[k + 1]
        for i in range(a + window, b):
            current = x[i]
            if np.isnan(current):
                continue
            below = 0
            defined = True
            for j in range(i - window, i):
                if np.isnan(x[j]):
                    defined = False
                    break
                if x[j] <= current:
                    below += 1
            if defined:
                out[i] = 100.0 * below / window
    return out


def _percentrank(inputs: Sequence[FloatArray], offsets: IntArray,
                 params: tuple[ParamValue, ...]) -> tuple[FloatArray, ...]:
    (x,) = inputs
    return (_percentrank_loop(np.ascontiguousarray(x, dtype=np.float64), offsets,
                              int(params[0])),)


PERCENTRANK = Indicator(
    name="percentrank", title="Rolling percent rank", group="Statistic Functions",
    source="builtin", inputs=(Input("real", None),),
    params=(Param("timeperiod", "int", 20, minimum=1, maximum=100_000,
                  doc="previous values the current one is ranked against"),),
    outputs=("real",),
    warmup="NaN for the first timeperiod bars",
    kernel=_percentrank, lookback_fn=lambda p: int(p[0]),
    doc="""Rolling percent rank (TradingView ``ta.percentrank`` definition): the percentage
    (0..100) of the previous ``timeperiod`` values that are less than or equal to the current
    value. NaN if any of them, or the current value, is undefined. Warm-up: NaN for the first
    ``timeperiod`` bars.""")
