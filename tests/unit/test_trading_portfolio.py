"""Portfolio figures: PnL, combined curves, and the risk/return figures equal to
empyrical-reloaded's (the reference) within 1e-9, computed by the backtest's metrics code."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import empyrical
import numpy as np
import pytest

from signalfactory.domain.backtest import BacktestConfig, Signals, compute_metrics, run_backtest
from signalfactory.domain.errors import BadInputError
from signalfactory.domain.timestamps import datetime_to_ns
from signalfactory.domain.trading.orders import Fill, Position, Side
from signalfactory.domain.trading.portfolio import (
    DAY_NS,
    EquityCurve,
    bar_returns,
    combine_curves,
    daily_curve,
    figures,
    portfolio_figures,
    realised_pnl,
    round_trips,
    unrealised_pnl,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR_NS = 3600 * 10**9


def curve_of(returns: np.ndarray, initial: float = 1000.0, step_ns: int = DAY_NS) -> EquityCurve:
    ts = datetime_to_ns(T0) + step_ns * np.arange(returns.shape[0], dtype=np.int64)
    return EquityCurve(ts, initial * np.cumprod(1 + returns), initial)


@pytest.mark.parametrize(("seed", "n", "flat_share"), [(1, 500, 0.0), (2, 60, 0.3),
                                                       (3, 2_000, 0.9), (4, 21, 0.0)])
def test_figures_equal_empyrical(seed: int, n: int, flat_share: float) -> None:
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0004, 0.015, n)
    r[rng.random(n) < flat_share] = 0.0  # a bot mostly out of the market
    curve = curve_of(r)
    returns = bar_returns(curve)
    f = figures(curve, 365.0)
    tol = 1e-9
    assert f.sharpe == pytest.approx(empyrical.sharpe_ratio(returns, annualization=365),
                                     abs=tol)
    assert f.sortino == pytest.approx(empyrical.sortino_ratio(returns, annualization=365),
                                      abs=tol)
    assert f.max_drawdown == pytest.approx(-empyrical.max_drawdown(returns), abs=tol)
    assert f.var_95 == pytest.approx(-empyrical.value_at_risk(returns, cutoff=0.05), abs=tol)
    assert f.cvar_95 == pytest.approx(-empyrical.conditional_value_at_risk(returns, 0.05),
                                      abs=tol)
    assert f.volatility == pytest.approx(empyrical.annual_volatility(returns,
                                                                     annualization=365),
                                         abs=tol)
    assert f.total_return == pytest.approx(empyrical.cum_returns_final(returns), abs=tol)
    assert f.cagr == pytest.approx(empyrical.annual_return(returns, annualization=365),
                                   abs=tol)


def test_a_backtests_metrics_are_the_same_figures_as_empyrical() -> None:
    """The same numbers hold for a backtest (the same code computes both)."""
    rng = np.random.default_rng(9)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 700)))
    signals = Signals.build(700, long_entry=rng.random(700) < 0.04,
                            long_exit=rng.random(700) < 0.04)
    result = run_backtest(close, close, close, close, signals,
                          BacktestConfig(fee_pct=0.001, slippage_bps=5, whole_units=False))
    m = compute_metrics(result.equity, result.trades, close, 252, initial_cash=10_000)
    returns = result.equity / np.r_[10_000, result.equity[:-1]] - 1
    assert m.var_95 == pytest.approx(-empyrical.value_at_risk(returns), abs=1e-9)
    assert m.sharpe == pytest.approx(empyrical.sharpe_ratio(returns, annualization=252),
                                     abs=1e-9)
    assert m.max_drawdown == pytest.approx(-empyrical.max_drawdown(returns), abs=1e-9)


def test_combined_curves_carry_forward_and_count_starting_equity() -> None:
    a = EquityCurve(np.array([10, 20, 30], dtype=np.int64), np.array([101.0, 102.0, 99.0]),
                    100.0)
    b = EquityCurve(np.array([20, 25], dtype=np.int64), np.array([55.0, 60.0]), 50.0)
    total = combine_curves([a, b])
    assert total.ts.tolist() == [10, 20, 25, 30]
    assert total.equity.tolist() == [151.0, 157.0, 162.0, 159.0]
    assert total.initial == 150.0
    with pytest.raises(BadInputError):
        combine_curves([])
    with pytest.raises(BadInputError):
        EquityCurve(np.array([2, 1], dtype=np.int64), np.array([1.0, 2.0]), 1.0)
    with pytest.raises(BadInputError):
        EquityCurve(np.array([1], dtype=np.int64), np.array([1.0, 2.0]), 1.0)


def test_daily_curve_keeps_each_days_last_mark() -> None:
    start = datetime_to_ns(T0)
    ts = start + HOUR_NS * np.array([1, 5, 23, 25, 47, 49], dtype=np.int64)
    hourly = EquityCurve(ts, np.array([1.0, 2, 3, 4, 5, 6]), 1.0)
    daily = daily_curve(hourly)
    assert daily.equity.tolist() == [3.0, 5.0, 6.0]
    assert daily.ts.tolist() == [ts[2], ts[4], ts[5]]
    one = EquityCurve.of([(start, 9.0)], 1.0)
    assert len(daily_curve(one)) == 1


def test_pnl_and_portfolio_figures() -> None:
    held = [Position(1, "A", 2.0, 100.0, -1.0, T0), Position(1, "B", -3.0, 50.0, 10.0, T0),
            Position(1, "C", 0.0, 0.0, 4.0, T0)]
    marks = {"A": 110.0, "B": 45.0}
    assert realised_pnl(held) == 13.0
    assert unrealised_pnl(held, marks) == pytest.approx(20.0 + 15.0)
    assert unrealised_pnl(held, {}) == 0.0
    curve = curve_of(np.array([0.01, -0.02, 0.005]))
    pf = portfolio_figures(curve, held, marks, 365)
    assert pf.equity == curve.equity[-1] and pf.realised_pnl == 13.0
    assert pf.figures is not None and pf.figures.n_bars == 3
    empty = EquityCurve(np.zeros(0, dtype=np.int64), np.zeros(0), 500.0)
    nothing = portfolio_figures(empty, [], {}, 365)
    assert nothing.equity == 500.0 and nothing.figures is None


def fill(side: Side, qty: float, price: float, fee: float, minutes: int,
         symbol: str = "A") -> Fill:
    return Fill(account_id=1, order_id=1, trade_id=str(minutes), symbol=symbol, side=side,
                quantity=qty, price=price, fee=fee, fee_currency="USDT",
                executed_at=T0 + timedelta(minutes=minutes))


def test_round_trips_from_partial_fills_flips_and_open_positions() -> None:
    fills = [
        fill("buy", 1, 100, 0.1, 0), fill("buy", 1, 110, 0.1, 1),  # in at 105 avg
        fill("buy", 5, 20, 0.0, 2, symbol="B"),  # B opens later, stays open
        fill("sell", 1.5, 120, 0.2, 3), fill("sell", 0.5, 130, 0.1, 4),  # out at 122.5
        fill("sell", 3, 90, 0.3, 5),  # opens a short
        fill("buy", 4, 80, 0.4, 6),  # covers at 80 and flips long 1 @ 80
    ]
    trips = round_trips(fills, marks={"A": 85.0, "B": 25.0})
    assert [(t.symbol, t.is_open) for t in trips] == [("A", False), ("B", True), ("A", False),
                                                       ("A", True)]
    first, b, short, last = trips
    assert (first.size, first.entry_price) == (2.0, 105.0)
    assert first.exit_price == pytest.approx(122.5)
    assert first.fees == pytest.approx(0.5)
    assert first.pnl == pytest.approx(2 * (122.5 - 105) - 0.5)
    assert first.exit_at == T0 + timedelta(minutes=4)
    assert (short.size, short.entry_price, short.exit_price) == (-3.0, 90.0, 80.0)
    assert short.pnl == pytest.approx(30 - 0.3 - 0.4)
    assert (last.size, last.entry_price, last.exit_price) == (1.0, 80.0, 85.0)
    assert last.pnl == pytest.approx(5.0) and last.exit_at is None and last.exit_ns is None
    assert b.pnl == pytest.approx(25.0) and b.entry_ns == datetime_to_ns(T0) + 2 * 60 * 10**9
    no_mark = round_trips(fills[:1])
    assert no_mark[0].is_open and math.isnan(no_mark[0].exit_price)
