"""No look-ahead, by property: changing any data after bar t changes nothing at or before t.

For random bars, random signals and random configurations (every fill, direction, sizing and
stop combination), the bars after a random t are replaced by unrelated random bars (prices,
signals and ATR alike). The equity curve up to t and every fill decided up to t must be
bit-for-bit identical.
"""

from __future__ import annotations

import numpy as np
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalfactory.domain.backtest import (
    BacktestConfig,
    BacktestResult,
    Signals,
    run_backtest,
    run_portfolio,
)
from signalfactory.domain.bars import BarSeries, BarUniverse

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def random_bars(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))
    open_ = close * np.exp(rng.normal(0, 0.02, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.04, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.04, n))
    return open_, high, low, close


def random_signals(rng: np.random.Generator, n: int, p: float) -> list[np.ndarray]:
    return [rng.random(n) < p for _ in range(4)]


SIZINGS = [("fraction", 1.0), ("fraction", 0.5), ("cash", 3000.0), ("units", 10.0),
           ("risk", 0.01)]


@st.composite
def configs(draw: st.DrawFn) -> BacktestConfig:
    sizing, value = draw(st.sampled_from(SIZINGS))
    return draw(config_fields(sizing=st.just(sizing), size_value=st.just(value)))


def config_fields(**kw: st.SearchStrategy[object]) -> st.SearchStrategy[BacktestConfig]:
    return st.builds(
        BacktestConfig,
        **kw,
        direction=st.sampled_from(["long", "short", "both"]),
        fill=st.sampled_from(["close", "next_open"]),
        fee_pct=st.sampled_from([0.0, 0.001, 0.01]),
        fee_fixed=st.sampled_from([0.0, 1.0]),
        slippage_bps=st.sampled_from([0.0, 5.0]),
        whole_units=st.booleans(),
        stop_loss=st.sampled_from([None, 0.02, 0.05]),
        take_profit=st.sampled_from([None, 0.03, 0.1]),
        trailing_stop=st.sampled_from([None, 0.04]),
        close_at_end=st.booleans(),
    )


def assert_same_until(a: BacktestResult, b: BacktestResult, t: int) -> None:
    assert np.array_equal(a.equity[: t + 1], b.equity[: t + 1])
    for res_a, res_b in ((a, b), (b, a)):
        ta, tb = res_a.trades, res_b.trades
        entered = np.flatnonzero(ta.entry_idx <= t)
        entered_b = np.flatnonzero(tb.entry_idx <= t)
        assert entered.shape == entered_b.shape
        assert np.array_equal(ta.entry_idx[entered], tb.entry_idx[entered_b])
        assert np.array_equal(ta.entry_price[entered], tb.entry_price[entered_b])
        assert np.array_equal(ta.size[entered], tb.size[entered_b])
        exited = np.flatnonzero(ta.exit_idx <= t)
        exited_b = np.flatnonzero(tb.exit_idx <= t)
        for name in ("exit_idx", "exit_price", "pnl", "fees", "reason"):
            assert np.array_equal(getattr(ta, name)[exited], getattr(tb, name)[exited_b]), name


@SETTINGS
@given(config=configs(), seed=st.integers(0, 2**32 - 1), n=st.integers(2, 80),
       cut=st.floats(0, 1), density=st.sampled_from([0.05, 0.3]))
def test_changing_bars_after_t_changes_nothing_up_to_t(config: BacktestConfig, seed: int,
                                                       n: int, cut: float,
                                                       density: float) -> None:
    rng = np.random.default_rng(seed)
    t = min(int(cut * n), n - 2)  # at least one bar after t to change
    prices = random_bars(rng, n)
    signals = random_signals(rng, n, density)
    atr = rng.uniform(0.5, 5, n)
    other_prices = random_bars(rng, n)
    other_signals = random_signals(rng, n, density)
    other_atr = rng.uniform(0.5, 5, n)

    def spliced(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.concatenate([x[: t + 1], y[t + 1:]])

    p2 = [spliced(x, y) for x, y in zip(prices, other_prices, strict=True)]
    s2 = [spliced(x, y) for x, y in zip(signals, other_signals, strict=True)]
    a = run_backtest(*prices, Signals(*signals), config, atr=atr)
    b = run_backtest(*p2, Signals(*s2), config, atr=spliced(atr, other_atr))
    assert_same_until(a, b, t)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(40, 120), cut=st.floats(0, 1),
       fill=st.sampled_from(["close", "next_open"]),
       direction=st.sampled_from(["long", "both"]))
def test_indicator_signals_keep_the_property(seed: int, n: int, cut: float, fill: str,
                                             direction: str) -> None:
    """The whole pipeline: TA-Lib SMAs of the closes -> crossovers -> engine."""
    rng = np.random.default_rng(seed)
    t = min(int(cut * n), n - 2)
    prices = random_bars(rng, n)
    other = random_bars(rng, n)
    p2 = [np.concatenate([x[: t + 1], y[t + 1:]]) for x, y in zip(prices, other, strict=True)]
    config = BacktestConfig(fill=fill, direction=direction, fee_pct=0.001,  # type: ignore[arg-type]
                            stop_loss=0.05)

    def go(p: list[np.ndarray] | tuple[np.ndarray, ...]) -> BacktestResult:
        sig = Signals.crossover(talib.SMA(p[3], 3), talib.SMA(p[3], 8))
        return run_backtest(*p, sig, config)

    assert_same_until(go(prices), go(p2), t)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), cut=st.floats(0, 1),
       fill=st.sampled_from(["close", "next_open"]))
def test_portfolio_mode_keeps_the_property(seed: int, cut: float, fill: str) -> None:
    rng = np.random.default_rng(seed)
    lengths = [30, 25, 40]
    starts = [0, 10, 5]
    t_cut = int(cut * 44)  # a timestamp step on the union grid 0..44

    def universe(r: np.random.Generator, alt: np.random.Generator | None) -> BarUniverse:
        out = []
        for i, (m, s0) in enumerate(zip(lengths, starts, strict=True)):
            p = random_bars(r, m)
            ts = np.arange(s0, s0 + m, dtype=np.int64)
            if alt is not None:
                q = random_bars(alt, m)
                p = tuple(np.where(ts > t_cut, y, x) for x, y in zip(p, q, strict=True))
            out.append(BarSeries(f"S{i}", ts, *p, np.ones(m)))
        return BarUniverse.from_series(out)

    base = universe(np.random.default_rng(seed), None)
    changed = universe(np.random.default_rng(seed), np.random.default_rng(seed + 1))
    sig = random_signals(rng, base.n_bars, 0.2)
    later = base.ts > t_cut
    sig2 = [np.where(later, rng.random(base.n_bars) < 0.5, s) for s in sig]
    score = rng.random(base.n_bars)
    score2 = np.where(later, rng.random(base.n_bars), score)
    config = BacktestConfig(fill=fill, direction="both", size_value=0.4,  # type: ignore[arg-type]
                            fee_pct=0.001, stop_loss=0.03)
    a = run_portfolio(base, Signals(*sig), config, max_positions=2, score=score)
    b = run_portfolio(changed, Signals(*sig2), config, max_positions=2, score=score2)
    upto = int(np.searchsorted(a.times, t_cut, side="right"))
    assert np.array_equal(a.equity[:upto], b.equity[:upto])
