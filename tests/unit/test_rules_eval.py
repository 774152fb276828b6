"""Vectorised evaluation: semantics, instrument boundaries, sharing, score and values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import talib

from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.indicators import IndicatorRegistry, registry
from signalfactory.domain.rules import Evaluation, check_rule, evaluate


def bars_from_close(close: list[float], symbol: str = "X") -> BarSeries:
    c = np.array(close, dtype=float)
    return BarSeries(symbol, np.arange(len(c), dtype=np.int64) * 10, c.copy(), c + 1.0, c - 1.0,
                     c, np.full(len(c), 100.0))


def make_bars(n: int, seed: int, symbol: str = "X") -> BarSeries:
    rng = np.random.default_rng(seed)
    close = 30.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, n)))
    open_ = close * (1.0 + rng.normal(0.0, 0.01, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.02, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.02, n))
    return BarSeries(symbol, 1_000 + np.arange(n, dtype=np.int64), open_, high, low, close,
                     rng.uniform(1e3, 1e5, n).round())


def universe(lengths: list[int]) -> BarUniverse:
    return BarUniverse.from_series([make_bars(n, seed=i, symbol=f"S{i}")
                                    for i, n in enumerate(lengths)])


COMPLEX = """
entry: crosses_above(ema(close, 5), sma(close, 12)) and rsi(close, 7) < 75
       or close > highest(high, 10)[1] and not (volume < sma(volume, 5))
exit: crosses_below(ema(close, 5), sma(close, 12)) or close < lowest(low, 8)[2]
short_entry: crosses_below(close, bbands(close, 10, 1.5, 1.5).lower) and adx(7) > 10
short_exit: close > bbands(close, 10, 1.5, 1.5).middle or abs(close - hl2) / close > 0.5
"""


def test_crosses_hand_computed() -> None:
    b = bars_from_close([1, 2, 3, 2, 1, 2, 3, 3])
    ev = evaluate("entry: crosses_above(close, 2); exit: crosses_below(close, 2)", b)
    assert np.flatnonzero(ev.entry).tolist() == [2, 6]
    assert np.flatnonzero(ev.exit).tolist() == [4]
    assert not ev.short_entry.any() and not ev.short_exit.any()


def test_look_back_and_crosses_never_cross_instruments() -> None:
    # the second instrument starts higher than the first ended: a naive shift would see a cross
    u = BarUniverse.from_series([bars_from_close([5, 4, 3], "A"), bars_from_close([9, 9], "B")])
    ev = evaluate("entry: close > close[1]; exit: crosses_above(close, 6)", u, block_rows=None)
    assert not ev.entry.any()
    assert not ev.exit.any()


def test_missing_values_never_signal_also_under_not() -> None:
    b = bars_from_close([float(x) for x in range(1, 21)])
    ev = evaluate("entry: not (close < sma(close, 5)); exit: sma(close, 5) != 3", b)
    assert np.flatnonzero(ev.entry).tolist() == list(range(4, 20))
    assert np.flatnonzero(ev.exit).tolist() == list(range(5, 20))  # sma is exactly 3 at bar 4
    # at bar 4 the cross is unknown (the average is undefined at bar 3), so is its negation
    ev = evaluate("entry: not crosses_above(close, sma(close, 5))", b)
    assert np.flatnonzero(ev.entry).tolist() == list(range(5, 20))


def test_division_by_zero_is_undefined() -> None:
    b = bars_from_close([1.0, 2.0, 3.0])
    ev = evaluate("entry: close / (close - 2) > -10; exit: not (close / (close - 2) > -10)", b)
    assert ev.entry.tolist() == [True, False, True]
    assert ev.exit.tolist() == [False, False, False]


def test_prices_and_functions() -> None:
    b = make_bars(30, 1)
    rule = ("entry: close > 0; score: hl2 + 10 * hlc3 + 100 * ohlc4 + 1000 * abs(open - close) "
            "+ min(open, close, 3) - max(high, 100) + highest(high, 3) - lowest(low, 1)")
    ev = evaluate(rule, b)
    expected = ((b.high + b.low) / 2 + 10 * (b.high + b.low + b.close) / 3
                + 100 * (b.open + b.high + b.low + b.close) / 4 + 1000 * np.abs(b.open - b.close)
                + np.minimum(np.minimum(b.open, b.close), 3) - np.maximum(b.high, 100)
                + talib.MAX(b.high, 3) - b.low)
    np.testing.assert_allclose(ev.score, expected, equal_nan=True)


def test_series_and_universe_and_block_sizes_agree() -> None:
    lengths = [60, 0, 1, 45, 7, 90, 33]
    u = universe(lengths)
    whole = evaluate(COMPLEX, u, values="all", block_rows=None)
    assert whole.entry.any() and whole.exit.any() and whole.short_entry.any()
    for block_rows in (1, 50, 128):
        other = evaluate(COMPLEX, u, values="all", block_rows=block_rows)
        assert_same_evaluation(whole, other)
    for i in range(u.n_instruments):
        alone = evaluate(COMPLEX, u.series(i), values="all")
        rows = whole.rows(i)
        for label in ("entry", "exit", "short_entry", "short_exit"):
            np.testing.assert_array_equal(whole.signal(label)[rows], alone.signal(label))
        np.testing.assert_array_equal(whole.score[rows], alone.score)
        for text, arr in whole.values.items():
            np.testing.assert_array_equal(arr[rows], alone.values[text])


def assert_same_evaluation(a: Evaluation, b: Evaluation) -> None:
    for label in ("entry", "exit", "short_entry", "short_exit"):
        np.testing.assert_array_equal(a.signal(label), b.signal(label))
    np.testing.assert_array_equal(a.score, b.score)
    assert a.values.keys() == b.values.keys()
    for text in a.values:
        np.testing.assert_array_equal(a.values[text], b.values[text])


def test_common_subexpressions_are_computed_once() -> None:
    calls: list[tuple] = []  # type: ignore[type-arg]
    sma = registry["sma"]

    def counting_kernel(inputs, offsets, params):  # type: ignore[no-untyped-def]
        calls.append(params)
        return sma.kernel(inputs, offsets, params)

    spy = dataclasses.replace(sma, kernel=counting_kernel, fill_kernel=None)
    spy_registry = IndicatorRegistry([spy, *(ind for name, ind in registry.items()
                                             if name != "sma")])
    rule = check_rule("entry: crosses_above(sma(close, 10), sma(close, 30))\n"
                      "exit: crosses_below(sma(close, timeperiod=10), SMA(close, 30))\n"
                      "score: sma(close, 10) - sma(close, 30)", spy_registry)
    evaluate(rule, universe([50, 70]), block_rows=None)
    assert sorted(calls) == [(10,), (30,)]


def test_default_score_is_the_robustness_of_the_entry() -> None:
    b = make_bars(300, 2)
    ev = evaluate("entry: rsi(close, 14) < 35; exit: rsi(close, 14) > 65", b, values="all")
    rsi = talib.RSI(b.close, 14)
    fired = np.flatnonzero(ev.entry)
    assert fired.size > 5
    np.testing.assert_allclose(ev.score[fired], (35 - rsi[fired]) / (35 + rsi[fired]))
    assert np.isnan(ev.score[~ev.entry]).all()  # exits and quiet bars are not ranked
    assert ((ev.score[fired] > 0) & (ev.score[fired] <= 1)).all()


def test_default_score_of_and_or_and_crosses() -> None:
    b = make_bars(400, 3)
    rule = ("entry: crosses_above(close, sma(close, 10)) and close > 20 "
            "or crosses_below(close, 25)")
    ev = evaluate(rule, b)
    sma = talib.SMA(b.close, 10)
    c = b.close

    def margin(gt: np.ndarray, lt: np.ndarray) -> np.ndarray:
        return (gt - lt) / (np.abs(gt) + np.abs(lt))

    for t in np.flatnonzero(ev.entry):
        options = []
        if c[t] > sma[t] and c[t - 1] <= sma[t - 1] and c[t] > 20:
            options.append(min(margin(c[t], sma[t]), margin(sma[t - 1], c[t - 1]),
                               margin(c[t], 20.0)))
        if c[t] < 25 and c[t - 1] >= 25:
            options.append(min(margin(25.0, c[t]), margin(c[t - 1], 25.0)))
        assert ev.score[t] == pytest.approx(max(options))


def test_score_expression_is_reported_at_every_bar() -> None:
    b = make_bars(50, 4)
    ev = evaluate("entry: close > 0; score: rsi(close, 14) / 100", b)
    np.testing.assert_allclose(ev.score, talib.RSI(b.close, 14) / 100, equal_nan=True)


def test_values_are_kept_at_signal_bars_by_default() -> None:
    u = universe([80, 120])
    rule = "entry: close > sma(close, 10)[1]; exit: rsi(close, 5) > 80"
    full = evaluate(rule, u, values="all")
    sparse = evaluate(rule, u)
    assert full.value_rows is None
    fired = full.entry | full.exit
    assert sparse.value_rows is not None
    np.testing.assert_array_equal(sparse.value_rows, np.flatnonzero(fired))
    assert list(sparse.values) == ["sma(close, 10)", "sma(close, 10)[1]", "rsi(close, 5)"]
    for text, arr in sparse.values.items():
        np.testing.assert_array_equal(arr, full.values[text][fired])
    row = int(sparse.value_rows[3])
    assert sparse.values_at(row) == full.values_at(row)
    quiet = int(np.flatnonzero(~fired)[0])
    assert sparse.values_at(quiet) == {}
    assert evaluate(rule, u, values="none").values == {}
    sma = talib.SMA(u.series(1).close, 10)
    np.testing.assert_array_equal(full.values["sma(close, 10)"][full.rows(1)], sma)


def test_empty_inputs() -> None:
    ev = evaluate("entry: rsi(close, 14) < 30", BarUniverse.empty())
    assert ev.n_bars == 0 and ev.entry.shape == (0,)
    ev = evaluate("entry: rsi(close, 14) < 30", universe([0, 0]))
    assert ev.n_bars == 0 and ev.n_instruments == 2


def test_constant_conditions_broadcast() -> None:
    b = make_bars(5, 5)
    ev = evaluate("entry: 1 < 2 and close > 0; exit: 2 < 1 or (1 < 2)[1]", b)
    assert ev.entry.all()
    assert ev.exit.tolist() == [False, True, True, True, True]
