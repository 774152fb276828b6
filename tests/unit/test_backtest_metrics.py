"""Metrics against their documented definitions, written out independently with numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from signalfactory.domain.backtest import (
    SUMMARY_FIELDS,
    BacktestConfig,
    Signals,
    bars_per_year,
    compute_metrics,
    run_backtest,
)
from signalfactory.domain.backtest.engine import Trades
from signalfactory.domain.backtest.metrics import drawdown_stats, summary_nb, value_at_risk
from signalfactory.domain.errors import BadInputError

DAY_NS = 86_400 * 10**9


def no_trades() -> Trades:
    return Trades.from_records(np.zeros((0, 9)))


def test_bars_per_year_per_calendar() -> None:
    assert bars_per_year(86_400) == 252
    assert bars_per_year(86_400, "crypto") == 365
    assert bars_per_year(3_600) == pytest.approx(252 * 6.5)
    assert bars_per_year(3_600, "crypto") == 8_760
    assert bars_per_year(7 * 86_400) == 52
    assert bars_per_year(60) == pytest.approx(252 * 390)
    with pytest.raises(BadInputError):
        bars_per_year(0)


def test_return_risk_and_tail_metrics_follow_their_definitions() -> None:
    rng = np.random.default_rng(3)
    equity = 1000 * np.cumprod(1 + rng.normal(0.001, 0.02, 500))
    close = np.linspace(10, 20, 500)
    m = compute_metrics(equity, no_trades(), close, 252, initial_cash=1000)
    r = np.diff(np.r_[1000, equity]) / np.r_[1000, equity][:-1]
    assert m.total_return == pytest.approx(equity[-1] / 1000 - 1)
    assert m.cagr == pytest.approx((equity[-1] / 1000) ** (252 / 500) - 1)
    assert m.volatility == pytest.approx(r.std(ddof=1) * math.sqrt(252))
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    downside = math.sqrt(np.mean(np.minimum(r, 0) ** 2))
    assert m.sortino == pytest.approx(r.mean() / downside * math.sqrt(252))
    q = np.percentile(r, 5)  # linear interpolation, as empyrical's value_at_risk
    assert m.var_95 == pytest.approx(-q)
    assert m.cvar_95 == pytest.approx(-np.sort(r)[: int(0.05 * 499) + 1].mean())
    peak = np.maximum.accumulate(np.r_[1000, equity])
    assert m.max_drawdown == pytest.approx(np.max(1 - np.r_[1000, equity] / peak))
    assert m.calmar == pytest.approx(m.cagr / m.max_drawdown)
    assert m.buy_and_hold_return == pytest.approx(1.0)
    assert m.n_bars == 500 and m.final_equity == equity[-1]


def test_drawdown_duration_peak_to_recovery_in_bars_and_time() -> None:
    equity = np.array([100, 110, 100, 90, 105, 111, 100.0])
    ts = np.arange(7, dtype=np.int64) * DAY_NS
    max_dd, bars, seconds = drawdown_stats(equity, 100.0, ts)
    assert max_dd == pytest.approx(1 - 90 / 110)
    # peak at bar 1 (110), recovered at bar 5 (111): 4 bars, 4 days
    assert bars == 4 and seconds == 4 * 86_400
    never = np.array([100, 90, 95.0])
    assert drawdown_stats(never, 100.0, None)[1] == 2  # from the start to the last bar
    assert drawdown_stats(np.array([100, 101, 102.0]), 100.0, None)[:2] == (0.0, 0)


def test_trade_statistics_and_exposure() -> None:
    close = np.array([10, 11, 12, 11, 10, 9, 10, 12, 13, 14.0])
    n = close.shape[0]
    le = np.zeros(n, bool)
    lx = np.zeros(n, bool)
    le[[0, 4, 7]] = True
    lx[[2, 5]] = True
    r = run_backtest(close, close, close, close, Signals.build(n, long_entry=le, long_exit=lx),
                     BacktestConfig(initial_cash=100, whole_units=False))
    ts = np.arange(n, dtype=np.int64) * DAY_NS
    m = r.metrics(close, 252, ts)
    closed = r.trades.pnl[:2]
    assert closed[0] > 0 > closed[1]
    assert m.win_rate == 0.5
    assert m.profit_factor == pytest.approx(closed[0] / -closed[1])
    assert m.expectancy == pytest.approx(closed.mean())
    assert m.n_trades == 3 and m.open_trades == 1
    assert m.avg_holding_bars == pytest.approx((2 + 1) / 2)
    assert m.avg_holding_seconds == pytest.approx(1.5 * 86_400)
    # held at the closes of bars 0, 1, 4, 7, 8, 9
    assert m.exposure == pytest.approx(6 / 10)


def test_degenerate_curves_give_nan_or_inf_not_errors() -> None:
    flat = np.full(10, 100.0)
    m = compute_metrics(flat, no_trades(), flat, 252, initial_cash=100)
    assert m.total_return == 0 and m.max_drawdown == 0
    assert math.isnan(m.sharpe) and math.isnan(m.calmar) and math.isnan(m.win_rate)
    up = 100 * 1.01 ** np.arange(1, 11)
    assert compute_metrics(up, no_trades(), up, 252, initial_cash=100).sortino == math.inf
    with pytest.raises(BadInputError):
        compute_metrics(np.zeros(0), no_trades(), np.zeros(0), 252, initial_cash=100)


def test_kernel_summary_matches_compute_metrics() -> None:
    rng = np.random.default_rng(5)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, 400)))
    sig = Signals.build(400, long_entry=rng.random(400) < 0.05,
                        long_exit=rng.random(400) < 0.05, short_entry=rng.random(400) < 0.05)
    r = run_backtest(close, close * 1.01, close * 0.99, close, sig,
                     BacktestConfig(direction="both", fee_pct=0.001))
    m = r.metrics(close, 365)
    rows = np.column_stack([r.trades.entry_idx, r.trades.exit_idx, r.trades.entry_price,
                            r.trades.exit_price, r.trades.size, r.trades.pnl, r.trades.ret,
                            r.trades.fees, r.trades.reason]).astype(float)
    out = np.empty(len(SUMMARY_FIELDS))
    summary_nb(r.equity, rows, 10_000.0, 365.0, out)
    for name, value in zip(SUMMARY_FIELDS, out, strict=True):
        assert value == pytest.approx(getattr(m, name), rel=1e-9, nan_ok=True), name


@pytest.mark.parametrize("zero_share", [0.0, 0.5, 0.97, 1.0])
@pytest.mark.parametrize("p", [0.0, 0.05, 0.5, 0.99, 1.0])
def test_value_at_risk_equals_numpy_with_many_ties(zero_share: float, p: float) -> None:
    rng = np.random.default_rng(int(zero_share * 100) + int(p * 1000))
    r = rng.normal(0.0005, 0.01, 2_001)
    r[rng.random(r.shape[0]) < zero_share] = 0.0
    q, tail = value_at_risk(r, p)
    assert q == pytest.approx(np.percentile(r, 100 * p), abs=1e-15)
    k = int(p * (r.shape[0] - 1))
    assert tail == pytest.approx(np.sort(r)[: k + 1].mean(), abs=1e-15)


@pytest.mark.parametrize("zero_share", [0.0, 0.9, 0.99])
def test_var_of_a_backtest_curve_is_the_var_of_its_bar_returns(zero_share: float) -> None:
    rng = np.random.default_rng(11)
    r = rng.normal(0.0, 0.01, 3_000)
    r[rng.random(r.shape[0]) < zero_share] = 0.0
    equity = 500 * np.cumprod(1 + r)
    m = compute_metrics(equity, no_trades(), None, 252, initial_cash=500,
                        buy_and_hold_return=0.0)
    returns = equity / np.r_[500, equity[:-1]] - 1
    q, tail = value_at_risk(returns)
    assert m.var_95 == pytest.approx(-q, rel=1e-12)
    assert m.cvar_95 == pytest.approx(-tail, rel=1e-12)
