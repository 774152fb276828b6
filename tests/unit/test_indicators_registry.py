"""The TA-Lib-backed registry: complete, faithful to TA-Lib's metadata, equal to its output."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from talib import abstract

from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.indicators import compute, registry
from signalfactory.domain.indicators.registry import BUILTINS
from signalfactory.domain.indicators.talib_backed import ma_types

TA_NAMES: list[str] = sorted(talib.get_functions())
BUILTIN_NAMES = {b.name for b in BUILTINS}


def registry_name(ta_name: str) -> str:
    lower = ta_name.lower()
    return f"talib_{lower}" if lower in BUILTIN_NAMES else lower


def make_bars(n: int, seed: int, symbol: str = "X") -> BarSeries:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    open_ = close * (1.0 + rng.normal(0.0, 0.005, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.02, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.02, n))
    volume = rng.uniform(1e4, 1e6, n).round()
    return BarSeries(symbol, np.arange(n, dtype=np.int64), open_, high, low, close, volume)


def info(ta_name: str) -> dict:  # type: ignore[type-arg]
    return abstract.Function(ta_name).info  # type: ignore[attr-defined, no-any-return]


def series_for(ta_name: str, bars: BarSeries) -> list[np.ndarray]:
    """What to pass for each caller-supplied input: the TA-Lib default price, or periods."""
    out = []
    for value in info(ta_name)["input_names"].values():
        if isinstance(value, str):
            out.append(np.full(len(bars), 7.0) if value == "periods" else bars.column(value))
    return out


def talib_reference(ta_name: str, bars: BarSeries, series: list[np.ndarray],
                    params: tuple) -> tuple[np.ndarray, ...]:  # type: ignore[type-arg]
    """TA-Lib called directly; integer outputs as float with the warm-up NaN."""
    args: list[np.ndarray] = []
    given_series = iter(series)
    for value in info(ta_name)["input_names"].values():
        if isinstance(value, str):
            args.append(next(given_series))
        else:
            args.extend(bars.column(f) for f in value)
    result = getattr(talib, ta_name)(*args, *params)
    outputs = result if isinstance(result, tuple) else (result,)
    converted = []
    for out in outputs:
        if out.dtype != np.float64:
            defined = np.ones(len(out), dtype=bool)
            for arg in args:
                defined &= ~np.isnan(arg)
            first = int(np.argmax(defined)) if defined.any() else max(len(out) - 1, 0)
            fn = abstract.Function(ta_name)  # type: ignore[attr-defined]
            fn.set_parameters(dict(zip(info(ta_name)["parameters"], params, strict=True)))
            out = out.astype(np.float64)
            out[: first + fn.lookback] = np.nan
        converted.append(out)
    return tuple(converted)


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(actual[~np.isnan(actual)], expected[~np.isnan(expected)])


def test_every_talib_function_is_registered_with_its_metadata() -> None:
    assert len(TA_NAMES) > 150
    for ta_name in TA_NAMES:
        ind = registry[registry_name(ta_name)]
        meta = info(ta_name)
        assert ind.source == "talib"
        assert [p.name for p in ind.params] == list(meta["parameters"])
        assert [p.default for p in ind.params] == list(meta["parameters"].values())
        assert ind.outputs == tuple(meta["output_names"])
        fields = [f for v in meta["input_names"].values() if not isinstance(v, str) for f in v]
        assert [i.field for i in ind.inputs if i.field] == fields
        assert ind.title == meta["display_name"]


def test_builtins_own_their_names_and_shadowed_talib_functions_stay_reachable() -> None:
    assert registry["vwap"].source == "builtin"
    assert registry["supertrend"].outputs == ("value", "direction")
    for name in BUILTIN_NAMES:
        if name.upper() in TA_NAMES:
            assert registry[f"talib_{name}"].source == "talib"


@pytest.mark.parametrize("ta_name", TA_NAMES)
def test_default_parameters_equal_talib(ta_name: str) -> None:
    bars = make_bars(300, seed=len(ta_name))
    series = series_for(ta_name, bars)
    ind = registry[registry_name(ta_name)]
    got = compute(ind.name, bars, *series)
    expected = talib_reference(ta_name, bars, series, ind.defaults)
    for name, exp in zip(ind.outputs, expected, strict=True):
        assert_same(got[name], exp)
        # the declared warm-up is NaN
        assert np.isnan(got[name][: ind.lookback()]).all()


def _param_values(ta_name: str) -> st.SearchStrategy[tuple]:  # type: ignore[type-arg]
    parts = []
    for p in registry[registry_name(ta_name)].params:
        if p.kind == "matype":
            parts.append(st.sampled_from(ma_types()))
        elif p.kind == "int":
            parts.append(st.integers(1, 40))
        else:
            base = float(p.default) if p.default else 0.5
            parts.append(st.floats(0.2, 1.8).map(lambda f, b=base: round(b * f, 3)))
    return st.tuples(*parts)


@st.composite
def talib_cases(draw: st.DrawFn) -> tuple[str, tuple, int, int, int]:  # type: ignore[type-arg]
    ta_name = draw(st.sampled_from(TA_NAMES))
    params = draw(_param_values(ta_name))
    n = draw(st.integers(1, 150))  # TA-Lib checks nothing on empty input
    lead_nan = draw(st.integers(0, 5))
    return ta_name, params, n, lead_nan, draw(st.integers(0, 2**16))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(talib_cases())
def test_random_parameters_equal_talib_or_both_refuse(case: tuple) -> None:  # type: ignore[type-arg]
    ta_name, params, n, lead_nan, seed = case
    bars = make_bars(n, seed)
    series = [s.copy() for s in series_for(ta_name, bars)]
    for s in series:  # a series input may start undefined, like an indicator's warm-up
        s[:lead_nan] = np.nan
    ind = registry[registry_name(ta_name)]
    try:
        expected = talib_reference(ta_name, bars, series, params)
    except Exception:
        with pytest.raises(BadInputError):
            compute(ind.name, bars, *series, **dict(zip([p.name for p in ind.params], params,
                                                         strict=True)))
        return
    try:
        got = compute(ind.name, bars, *series,
                      **dict(zip([p.name for p in ind.params], params, strict=True)))
    except BadInputError:
        # our parameter check is TA-Lib's own: it may only refuse what TA-Lib refuses
        # on some data; here TA-Lib accepted, so the check must agree
        pytest.fail(f"{ta_name}{params} refused although TA-Lib accepts it")
    for name, exp in zip(ind.outputs, expected, strict=True):
        assert_same(got[name], exp)


@pytest.mark.parametrize("name", ["sma", "macd", "bbands", "atr", "stoch", "cdlengulfing",
                                  "minmaxindex", "obv", "beta", "adx", "sar"])
def test_universe_is_computed_per_instrument(name: str) -> None:
    lengths = [40, 0, 1, 5, 120, 33]
    series = [make_bars(n, seed=i, symbol=f"S{i}") for i, n in enumerate(lengths)]
    universe = BarUniverse.from_series(series)
    ind = registry[name]
    got = compute(name, universe)
    for i, bars in enumerate(series):
        rows = slice(int(universe.offsets[i]), int(universe.offsets[i + 1]))
        ta_name = name.upper()
        expected = talib_reference(ta_name, bars, series_for(ta_name, bars), ind.defaults)
        for out, exp in zip(ind.outputs, expected, strict=True):
            assert_same(got[out][rows], exp)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(TA_NAMES), st.data())
def test_lookback_is_talibs(ta_name: str, data: st.DataObject) -> None:
    params = data.draw(_param_values(ta_name))
    ind = registry[registry_name(ta_name)]
    fn = abstract.Function(ta_name)  # type: ignore[attr-defined]
    fn.set_parameters(dict(zip([p.name for p in ind.params], params, strict=True)))
    assert ind.lookback(params) == fn.lookback


def test_short_output_names() -> None:
    assert registry["macd"].output_index("signal") == 1
    assert registry["macd"].output_index("hist") == 2
    assert registry["macd"].output_index(None) == 0
    assert registry["bbands"].output_index("upper") == 0
    assert registry["bbands"].output_index("lowerband") == 2
    assert registry["aroon"].output_index("up") == 1
    assert registry["stoch"].output_index("slowd") == 1
    with pytest.raises(KeyError):
        registry["bbands"].output_index("uper")


@pytest.mark.parametrize(("name", "params", "fragment"), [
    ("rsi", {"timeperiod": 1}, "smallest accepted value is 2"),
    ("sma", {"timeperiod": 0}, "at least 1"),
    ("sma", {"timeperiod": 2.5}, "whole number"),
    ("bbands", {"matype": 99}, "must be one of"),
    ("sma", {"period": 5}, "no parameter 'period'"),
    ("mama", {"fastlimit": 5.0}, "fastlimit"),
])
def test_bad_parameters_are_refused_with_a_reason(name: str, params: dict, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(BadInputError, match=fragment):
        compute(name, make_bars(50, 1), **params)


def test_unknown_indicator_suggests_a_close_name() -> None:
    with pytest.raises(BadInputError, match="did you mean 'rsi'"):
        compute("rsii", make_bars(10, 1))


def test_integer_outputs_become_float_with_nan_warmup() -> None:
    bars = make_bars(60, 3)
    out = compute("minmaxindex", bars, timeperiod=10)["minidx"]
    assert out.dtype == np.float64
    assert np.isnan(out[:9]).all()
    assert not np.isnan(out[9:]).any()
    # an index counts from the instrument's first bar and lies inside the window
    rows = np.arange(9, 60)
    assert ((out[9:] >= rows - 9) & (out[9:] <= rows)).all()
