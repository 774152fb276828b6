"""Hand-written indicators against slow, obviously-correct reference loops."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.indicators import compute, registry

NAN = math.nan


def make_bars(n: int, seed: int, symbol: str = "X") -> BarSeries:
    rng = np.random.default_rng(seed)
    close = 40.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    open_ = close * (1.0 + rng.normal(0.0, 0.005, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.02, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.02, n))
    volume = rng.uniform(1e4, 1e6, n).round()
    return BarSeries(symbol, np.arange(n, dtype=np.int64), open_, high, low, close, volume)


def close_enough(actual: np.ndarray, expected: list[float], rtol: float = 1e-9) -> None:
    exp = np.array(expected, dtype=float)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(exp))
    np.testing.assert_allclose(actual[~np.isnan(exp)], exp[~np.isnan(exp)], rtol=rtol,
                               atol=1e-12)


# -- reference implementations: plain loops over Python floats ---------------------------------

def ref_rolling(values: list[float], n: int, fn) -> list[float]:  # type: ignore[no-untyped-def]
    return [fn(values[i - n + 1:i + 1]) if i >= n - 1 else NAN for i in range(len(values))]


def ref_ema(values: list[float], n: int) -> list[float]:
    out, k, prev = [], 2.0 / (n + 1), NAN
    for i, x in enumerate(values):
        if i < n - 1:
            out.append(NAN)
            continue
        prev = sum(values[:n]) / n if i == n - 1 else prev + k * (x - prev)
        out.append(prev)
    return out


def ref_atr(high: list[float], low: list[float], close: list[float], n: int) -> list[float]:
    """Wilder's ATR the way TA-Lib seeds it: the mean of the first n true ranges."""
    tr = [NAN] + [max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
                  for i in range(1, len(close))]
    out, prev = [], NAN
    for i in range(len(close)):
        if i < n:
            out.append(NAN)
            continue
        prev = sum(tr[1:n + 1]) / n if i == n else (prev * (n - 1) + tr[i]) / n
        out.append(prev)
    return out


def ref_vwap(b: BarSeries, n: int | None) -> list[float]:
    tp = [(h + lo + c) / 3 for h, lo, c in zip(b.high, b.low, b.close, strict=True)]
    out = []
    for i in range(len(b)):
        lo = 0 if n is None else i - n + 1
        if lo < 0:
            out.append(NAN)
            continue
        pv = sum(tp[j] * b.volume[j] for j in range(lo, i + 1))
        v = sum(b.volume[j] for j in range(lo, i + 1))
        out.append(pv / v if v else NAN)
    return out


def ref_supertrend(b: BarSeries, n: int, mult: float) -> tuple[list[float], list[float]]:
    atr = ref_atr(list(b.high), list(b.low), list(b.close), n)
    value, direction = [NAN] * len(b), [NAN] * len(b)
    upper = lower = trend = NAN
    for i in range(len(b)):
        if math.isnan(atr[i]):
            continue
        mid = (b.high[i] + b.low[i]) / 2
        bu, bl = mid + mult * atr[i], mid - mult * atr[i]
        if math.isnan(trend):
            upper, lower, trend = bu, bl, 1.0
        else:
            upper = bu if bu < upper or b.close[i - 1] > upper else upper
            lower = bl if bl > lower or b.close[i - 1] < lower else lower
            if trend == 1.0 and b.close[i] < lower:
                trend = -1.0
            elif trend == -1.0 and b.close[i] > upper:
                trend = 1.0
        direction[i] = trend
        value[i] = lower if trend == 1.0 else upper
    return value, direction


def ref_midpoint(b: BarSeries, n: int) -> list[float]:
    return [(max(b.high[i - n + 1:i + 1]) + min(b.low[i - n + 1:i + 1])) / 2
            if i >= n - 1 else NAN for i in range(len(b))]


def ref_percentrank(x: list[float], n: int) -> list[float]:
    return [100.0 * sum(1 for v in x[i - n:i] if v <= x[i]) / n if i >= n else NAN
            for i in range(len(x))]


# -- tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 3, 20])
def test_rolling_vwap(n: int) -> None:
    b = make_bars(80, 1)
    close_enough(compute("vwap", b, timeperiod=n)["real"], ref_vwap(b, n))


def test_cumulative_vwap() -> None:
    b = make_bars(80, 2)
    close_enough(compute("cum_vwap", b)["real"], ref_vwap(b, None))


def test_vwap_is_undefined_without_volume() -> None:
    b = make_bars(10, 3)
    b.volume[:] = 0.0
    assert np.isnan(compute("vwap", b, timeperiod=3)["real"]).all()
    assert np.isnan(compute("cum_vwap", b)["real"]).all()


@pytest.mark.parametrize(("n", "mult"), [(10, 3.0), (3, 1.5), (1, 0.5)])
def test_supertrend(n: int, mult: float) -> None:
    b = make_bars(300, 4)
    got = compute("supertrend", b, timeperiod=n, multiplier=mult)
    value, direction = ref_supertrend(b, n, mult)
    close_enough(got["value"], value)
    close_enough(got["direction"], direction)
    assert set(np.unique(got["direction"][n:])) <= {-1.0, 1.0}
    assert len(set(np.unique(got["direction"][n:]))) == 2  # the data does change trend


def test_ichimoku_lines_and_forward_shifted_cloud() -> None:
    b = make_bars(200, 5)
    got = compute("ichimoku", b)  # 9, 26, 52, displacement 26
    tenkan, kijun = ref_midpoint(b, 9), ref_midpoint(b, 26)
    close_enough(got["tenkan"], tenkan)
    close_enough(got["kijun"], kijun)
    senkou_a = [(tenkan[i - 26] + kijun[i - 26]) / 2 if i >= 26 else NAN for i in range(200)]
    senkou_b = [ref_midpoint(b, 52)[i - 26] if i >= 26 else NAN for i in range(200)]
    close_enough(got["senkou_a"], senkou_a)
    close_enough(got["senkou_b"], senkou_b)
    close_enough(got["chikou"], list(b.close))
    assert registry["ichimoku"].lookback() == 52 - 1 + 26
    assert int(np.isnan(got["senkou_b"]).sum()) == 77


@pytest.mark.parametrize("name", ["vwap", "cum_vwap", "supertrend", "ichimoku", "donchian",
                                  "keltner", "zscore", "percentrank"])
def test_no_look_ahead(name: str) -> None:
    """The value at bar t is the same whether or not later bars exist or change."""
    b = make_bars(250, 6)
    args = [b.close] if registry[name].series_inputs else []
    full = compute(name, b, *args)
    cut = 180
    head = BarSeries("X", b.ts[:cut], b.open[:cut], b.high[:cut], b.low[:cut], b.close[:cut],
                     b.volume[:cut])
    part = compute(name, head, *[a[:cut] for a in args])
    for out in full:
        np.testing.assert_array_equal(full[out][:cut], part[out])


@pytest.mark.parametrize("n", [1, 2, 20])
def test_donchian(n: int) -> None:
    b = make_bars(100, 7)
    got = compute("donchian", b, timeperiod=n)
    upper = ref_rolling(list(b.high), n, max)
    lower = ref_rolling(list(b.low), n, min)
    close_enough(got["upper"], upper)
    close_enough(got["lower"], lower)
    close_enough(got["middle"], [(u + lo) / 2 for u, lo in zip(upper, lower, strict=True)])


def test_keltner() -> None:
    b = make_bars(150, 8)
    got = compute("keltner", b, timeperiod=20, multiplier=1.5, atr_period=10)
    ema = ref_ema(list(b.close), 20)
    atr = ref_atr(list(b.high), list(b.low), list(b.close), 10)
    close_enough(got["middle"], ema)
    close_enough(got["upper"], [m + 1.5 * a for m, a in zip(ema, atr, strict=True)])
    close_enough(got["lower"], [m - 1.5 * a for m, a in zip(ema, atr, strict=True)])
    assert registry["keltner"].lookback((20, 1.5, 10)) == 19
    assert registry["keltner"].lookback((5, 1.5, 10)) == 10


@pytest.mark.parametrize("n", [2, 5, 30])
def test_zscore(n: int) -> None:
    b = make_bars(120, 9)
    x = list(b.close)
    expected = ref_rolling(x, n, lambda w: (w[-1] - statistics.fmean(w)) / statistics.pstdev(w))
    close_enough(compute("zscore", b, b.close, timeperiod=n)["real"], expected, rtol=1e-6)


def test_zscore_of_a_flat_window_is_undefined() -> None:
    b = make_bars(30, 10)
    flat = np.full(30, 5.0)
    assert np.isnan(compute("zscore", b, flat, timeperiod=5)["real"]).all()


@pytest.mark.parametrize("n", [1, 4, 25])
def test_percentrank(n: int) -> None:
    b = make_bars(90, 11)
    got = compute("percentrank", b, b.close, timeperiod=n)["real"]
    close_enough(got, ref_percentrank(list(b.close), n))


def test_percentrank_hand_computed() -> None:
    b = make_bars(6, 12)
    x = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 0.0])
    got = compute("percentrank", b, x, timeperiod=3)["real"]
    # at 3: previous 3, 1, 2 vs 2 -> 1 and 2 are <= 2 -> 66.7; at 4: 1, 2, 2 vs 5 -> 100
    close_enough(got, [NAN, NAN, NAN, 200 / 3, 100.0, 0.0])


def test_series_inputs_with_warm_up_propagate_it() -> None:
    b = make_bars(100, 13)
    rsi = talib.RSI(b.close, 14)  # NaN for 14 bars
    got = compute("zscore", b, rsi, timeperiod=10)["real"]
    assert np.isnan(got[:14 + 9]).all() and not np.isnan(got[14 + 9:]).any()
    got = compute("percentrank", b, rsi, timeperiod=10)["real"]
    assert np.isnan(got[:14 + 10]).all() and not np.isnan(got[14 + 10:]).any()


@pytest.mark.parametrize(("ours", "theirs", "params", "outputs"), [
    ("donchian", "DONCHIAN", (20,), ("upper", "middle", "lower")),
    ("cum_vwap", "VWAP", (), ("real",)),
    ("supertrend", "SUPERTREND", (10, 3.0), ("value", "direction")),
    ("percentrank", "PERCENTRANK", (20,), ("real",)),
])
def test_agrees_with_talib_where_it_has_the_indicator(ours: str, theirs: str, params: tuple,  # type: ignore[type-arg]
                                                      outputs: tuple) -> None:  # type: ignore[type-arg]
    """Newer TA-Lib (C 0.8) ships some of these; they must agree with ours."""
    if not hasattr(talib, theirs):
        pytest.skip(f"the installed TA-Lib has no {theirs}")
    b = make_bars(400, 14)
    ind = registry[ours]
    args = [b.close] if ind.series_inputs else []
    prices = [b.column(i.field) for i in ind.inputs if i.field]
    got = compute(ours, b, *args, **dict(zip([p.name for p in ind.params], params, strict=True)))
    expected = getattr(talib, theirs)(*(args or prices), *params)
    expected = expected if isinstance(expected, tuple) else (expected,)
    lookback = ind.lookback(params)
    for out, exp in zip(outputs, expected, strict=True):
        exp = exp.astype(float)
        exp[:lookback] = np.nan  # TA-Lib writes 0 into an integer output's warm-up
        close_enough(got[out], list(exp), rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=6),
       st.sampled_from(["vwap", "cum_vwap", "supertrend", "ichimoku", "donchian", "keltner",
                        "zscore", "percentrank"]))
def test_universe_equals_each_instrument_alone(lengths: list[int], name: str) -> None:
    series = [make_bars(n, seed=i, symbol=f"S{i}") for i, n in enumerate(lengths)]
    universe = BarUniverse.from_series(series)
    args = [universe.close] if registry[name].series_inputs else []
    got = compute(name, universe, *args, timeperiod=5) if name not in (
        "cum_vwap", "ichimoku") else compute(name, universe, *args)
    for i, bars in enumerate(series):
        rows = slice(int(universe.offsets[i]), int(universe.offsets[i + 1]))
        alone_args = [bars.close] if args else []
        alone = compute(name, bars, *alone_args, timeperiod=5) if name not in (
            "cum_vwap", "ichimoku") else compute(name, bars, *alone_args)
        for out in got:
            np.testing.assert_array_equal(got[out][rows], alone[out])


def test_every_builtin_documents_its_warm_up() -> None:
    for name in ["vwap", "cum_vwap", "supertrend", "ichimoku", "donchian", "keltner", "zscore",
                 "percentrank"]:
        ind = registry[name]
        assert ind.source == "builtin"
        assert "warm-up" in ind.doc.lower() or "no warm-up" in ind.doc.lower()
        assert ind.warmup
