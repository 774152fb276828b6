"""Sweeps: grids, random search, the parallel crossover kernel, ranking, OOS, walk-forward."""

from __future__ import annotations

import math

import numpy as np
import pytest
import talib

from signalfactory.domain.backtest import (
    SUMMARY_FIELDS,
    BacktestConfig,
    CrossoverSweeper,
    Signals,
    SignalSweeper,
    grid,
    optimise,
    random_search,
    run_backtest,
    split_test,
    walk_forward,
)
from signalfactory.domain.backtest.sweeps import rank
from signalfactory.domain.errors import BadInputError

N = 3_000
rng = np.random.default_rng(21)
CLOSE = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.015, N)))
OPEN = CLOSE * np.exp(rng.normal(0, 0.003, N))
HIGH = np.maximum(OPEN, CLOSE) * 1.004
LOW = np.minimum(OPEN, CLOSE) * 0.996
CONFIG = BacktestConfig(direction="both", fee_pct=0.001, whole_units=False)
PARAMS = grid(lambda p: p["fast"] < p["slow"], fast=range(5, 51, 5), slow=range(10, 201, 5))


def sma_sweeper(calls: list[float] | None = None) -> CrossoverSweeper:
    def line(w: float) -> np.ndarray:
        if calls is not None:
            calls.append(w)
        return talib.SMA(CLOSE, int(w))

    return CrossoverSweeper(OPEN, HIGH, LOW, CLOSE, line, CONFIG)


def test_grid_and_random_search() -> None:
    assert len(PARAMS) == 345
    assert PARAMS[0] == {"fast": 5, "slow": 10}
    a = random_search({"fast": range(5, 51, 5), "slow": range(10, 201, 5)}, 20, seed=7,
                      constraint=lambda p: p["fast"] < p["slow"])
    b = random_search({"fast": range(5, 51, 5), "slow": range(10, 201, 5)}, 20, seed=7,
                      constraint=lambda p: p["fast"] < p["slow"])
    assert a == b and len(a) == 20 and len({tuple(p.values()) for p in a}) == 20
    assert all(p in PARAMS for p in a)
    assert len(random_search({"x": [1, 2]}, 10, seed=1)) == 2


def test_crossover_sweep_matches_single_backtests_and_computes_each_line_once() -> None:
    calls: list[float] = []
    sweeper = sma_sweeper(calls)
    result = optimise(sweeper, PARAMS, "sharpe", 0, N)
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 40  # 5..200 step 5
    for i in (0, 57, 200, 344):
        p = PARAMS[i]
        sig = Signals.crossover(talib.SMA(CLOSE, int(p["fast"])), talib.SMA(CLOSE, int(p["slow"])))
        m = run_backtest(OPEN, HIGH, LOW, CLOSE, sig, CONFIG).metrics(CLOSE, 252)
        for name in SUMMARY_FIELDS:
            assert result.summary[i, SUMMARY_FIELDS.index(name)] == pytest.approx(
                getattr(m, name), rel=1e-9, nan_ok=True), name
    sharpe = result.summary[:, SUMMARY_FIELDS.index("sharpe")]
    assert result.best == PARAMS[int(np.nanargmax(sharpe))]
    top = result.table(3)
    assert [row["sharpe"] for row in top] == sorted((row["sharpe"] for row in top), reverse=True)


def test_generic_signal_sweeper_agrees_with_the_crossover_kernel() -> None:
    def make(p: dict[str, float]) -> Signals:
        return Signals.crossover(talib.SMA(CLOSE, int(p["fast"])), talib.SMA(CLOSE, int(p["slow"])))

    subset = PARAMS[::23]
    generic = SignalSweeper(OPEN, HIGH, LOW, CLOSE, make, CONFIG, workers=2)
    fast = sma_sweeper()
    a = generic.summaries(subset, 100, N)
    b = fast.summaries(subset, 100, N)
    assert np.allclose(a, b, rtol=1e-12, equal_nan=True)


def test_ranking_direction_nan_last_and_stable_ties() -> None:
    idx = SUMMARY_FIELDS.index
    summary = np.zeros((4, len(SUMMARY_FIELDS)))
    summary[:, idx("sharpe")] = [1.0, np.nan, 2.0, 1.0]
    summary[:, idx("max_drawdown")] = [0.3, 0.1, np.nan, 0.1]
    assert rank(summary, "sharpe").tolist() == [2, 0, 3, 1]
    assert rank(summary, "max_drawdown").tolist() == [1, 3, 0, 2]
    with pytest.raises(BadInputError, match="unknown metric"):
        rank(summary, "luck")


def test_split_test_replays_the_in_sample_leaders_out_of_sample() -> None:
    sweeper = sma_sweeper()
    result = split_test(sweeper, PARAMS, "total_return", N, in_sample=0.6, top=4)
    assert result.split == 1_800
    assert result.best == result.in_sample.best
    assert result.out_of_sample.params == [result.in_sample.params[int(i)]
                                           for i in result.in_sample.order[:4]]
    replay = sweeper.backtest(result.best, 1_800, N)
    oos_best = result.out_of_sample.row(0)
    assert oos_best["final_equity"] == pytest.approx(replay.final_equity, rel=1e-12)
    assert replay.trades.entry_idx.min() >= 1_800


def test_walk_forward_chains_out_of_sample_windows() -> None:
    sweeper = sma_sweeper()
    params = PARAMS[::10]
    result = walk_forward(sweeper, params, "sharpe", N, train=1_000, test=500,
                          initial_cash=CONFIG.initial_cash, bars_per_year=252)
    assert [w.test for w in result.windows] == [(1000, 1500), (1500, 2000), (2000, 2500),
                                                (2500, 3000)]
    assert result.equity.shape == (2_000,)
    growth = math.prod(1 + w.out_of_sample["total_return"] for w in result.windows)
    assert result.summary["total_return"] == pytest.approx(growth - 1, rel=1e-9)
    for w in result.windows:
        best_in_window = optimise(sweeper, params, "sharpe", *w.train).best
        assert w.best == best_in_window
    with pytest.raises(BadInputError):
        walk_forward(sweeper, params, "sharpe", N, train=N, test=10,
                     initial_cash=1.0, bars_per_year=252)


def test_sweep_inputs_are_validated() -> None:
    sweeper = sma_sweeper()
    with pytest.raises(BadInputError):
        optimise(sweeper, [], "sharpe", 0, N)
    with pytest.raises(BadInputError):
        sweeper.summaries(PARAMS[:2], 10, 5)
    with pytest.raises(BadInputError):
        CrossoverSweeper(OPEN, HIGH, LOW, CLOSE, lambda w: CLOSE,
                         BacktestConfig(sizing="risk", size_value=0.01))
