"""Universe mode (independent accounts) and portfolio mode (shared cash, position limit)."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from signalfactory.domain.backtest import (
    SUMMARY_FIELDS,
    BacktestConfig,
    Signals,
    mask_instrument_starts,
    run_backtest,
    run_portfolio,
    run_universe,
)
from signalfactory.domain.bars import BarSeries, BarUniverse
from signalfactory.domain.errors import BadInputError

DAY = 86_400 * 10**9


def series(rng: np.random.Generator, name: str, n: int, first_day: int = 0) -> BarSeries:
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.005, n))
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    ts = (np.arange(n, dtype=np.int64) + first_day) * DAY
    return BarSeries(name, ts, open_, high, low, close, np.ones(n))


def sma_signals(u: BarUniverse) -> Signals:
    parts = [Signals.crossover(talib.SMA(s.close, 5), talib.SMA(s.close, 20)) for s in u]
    return Signals(*(np.concatenate([getattr(p, f) for p in parts]) if parts else
                     np.zeros(0, bool)
                     for f in ("long_entry", "long_exit", "short_entry", "short_exit")))


@pytest.fixture(scope="module")
def universe() -> BarUniverse:
    rng = np.random.default_rng(11)
    return BarUniverse.from_series(
        [series(rng, f"S{i}", n) for i, n in enumerate([300, 0, 250, 400, 30, 310])])


CONFIG = BacktestConfig(direction="both", fee_pct=0.001, stop_loss=0.08, fill="next_open")


def test_each_instrument_matches_its_own_single_backtest(universe: BarUniverse) -> None:
    result = run_universe(universe, sma_signals(universe), CONFIG, keep_equity=True)
    for i, s in enumerate(universe):
        if len(s) == 0:
            assert result.summary[i, SUMMARY_FIELDS.index("n_trades")] == 0
            continue
        sig = Signals.crossover(talib.SMA(s.close, 5), talib.SMA(s.close, 20))
        single = run_backtest(s.open, s.high, s.low, s.close, sig, CONFIG)
        assert result.final_equity[i] == single.final_equity
        mine = result.trades_of(i)
        assert np.array_equal(mine.entry_idx, single.trades.entry_idx)
        assert np.array_equal(mine.pnl, single.trades.pnl)
        a, b = universe.offsets[i], universe.offsets[i + 1]
        assert np.allclose(result.equity[a:b], single.equity, rtol=1e-6)
        m = single.metrics(s.close, 252)
        assert result.column("sharpe")[i] == pytest.approx(m.sharpe, rel=1e-9)
        assert result.column("max_drawdown")[i] == pytest.approx(m.max_drawdown, rel=1e-9)


def test_chunking_and_signal_callables_do_not_change_results(universe: BarUniverse) -> None:
    whole = run_universe(universe, sma_signals(universe), CONFIG)
    calls: list[int] = []

    def per_chunk(sub: BarUniverse) -> Signals:
        calls.append(sub.n_instruments)
        return sma_signals(sub)

    chunked = run_universe(universe, per_chunk, CONFIG, chunk_bars=320)
    assert len(calls) > 2 and sum(calls) == universe.n_instruments
    assert np.array_equal(whole.summary, chunked.summary, equal_nan=True)
    assert np.array_equal(whole.trades.pnl, chunked.trades.pnl)
    assert np.array_equal(whole.trade_offsets, chunked.trade_offsets)
    lean = run_universe(universe, sma_signals(universe), CONFIG, with_metrics=False)
    assert np.array_equal(lean.final_equity, whole.final_equity, equal_nan=True)
    assert np.array_equal(lean.total_return, whole.total_return, equal_nan=True)
    assert np.array_equal(lean.column("n_trades"), whole.column("n_trades"))
    assert np.isnan(lean.column("sharpe")).all()


def test_one_masked_talib_call_equals_per_instrument_signals(universe: BarUniverse) -> None:
    fast = mask_instrument_starts(talib.SMA(universe.close, 5), universe.offsets, 4)
    slow = mask_instrument_starts(talib.SMA(universe.close, 20), universe.offsets, 19)
    whole = Signals.crossover(fast, slow)
    per = sma_signals(universe)
    for name in ("long_entry", "long_exit"):
        assert np.array_equal(getattr(whole, name), getattr(per, name))
    unmasked = Signals.crossover(talib.SMA(universe.close, 5), talib.SMA(universe.close, 20))
    assert not np.array_equal(unmasked.long_entry | unmasked.long_exit,
                              per.long_entry | per.long_exit)  # the mask is what makes it right


def test_universe_rejects_misaligned_signals(universe: BarUniverse) -> None:
    with pytest.raises(BadInputError):
        run_universe(universe, Signals.build(3), CONFIG)


def test_single_instrument_portfolio_equals_the_single_engine() -> None:
    s = series(np.random.default_rng(2), "A", 300)
    sig = Signals.crossover(talib.SMA(s.close, 5), talib.SMA(s.close, 20))
    for config in (CONFIG, BacktestConfig(fee_pct=0.002, trailing_stop=0.05, take_profit=0.1)):
        single = run_backtest(s.open, s.high, s.low, s.close, sig, config)
        port = run_portfolio(BarUniverse.from_series([s]), sig, config, max_positions=1)
        assert port.final_equity == pytest.approx(single.final_equity, rel=1e-12)
        assert np.allclose(port.equity, single.equity, rtol=1e-12)
        assert np.array_equal(port.trades.reason, single.trades.reason)


def flat_universe(n_inst: int, n: int, closes: list[float] | None = None) -> BarUniverse:
    out = []
    for i in range(n_inst):
        c = np.full(n, closes[i] if closes else 10.0)
        out.append(BarSeries(f"S{i}", np.arange(n, dtype=np.int64) * DAY, c, c, c, c,
                             np.ones(n)))
    return BarUniverse.from_series(out)


def test_position_limit_and_tie_break_by_score_then_instrument_order() -> None:
    u = flat_universe(4, 5)
    le = np.zeros(u.n_bars, bool)
    le[u.offsets[:-1] + 1] = True  # every instrument signals at bar 1
    sig = Signals.build(u.n_bars, long_entry=le)
    config = BacktestConfig(initial_cash=1000, size_value=0.25)
    by_order = run_portfolio(u, sig, config, max_positions=2)
    assert sorted(by_order.instrument.tolist()) == [0, 1]
    score = np.zeros(u.n_bars)
    score[u.offsets[2] + 1] = 5.0
    score[u.offsets[3] + 1] = 3.0
    by_score = run_portfolio(u, sig, config, max_positions=2, score=score)
    assert by_score.instrument.tolist() == [2, 3]
    nan_score = np.full(u.n_bars, np.nan)
    nan_score[u.offsets[1] + 1] = 1.0
    # NaN ranks last: the only scored instrument takes the single slot
    assert run_portfolio(u, sig, config, max_positions=1,
                         score=nan_score).instrument.tolist() == [1]
    assert run_portfolio(u, sig, config, max_positions=1).instrument.tolist() == [0]


def test_shared_cash_limits_entries_and_sizes_from_portfolio_equity() -> None:
    u = flat_universe(3, 4, closes=[10.0, 20.0, 50.0])
    le = np.zeros(u.n_bars, bool)
    le[u.offsets[:-1] + 1] = True
    sig = Signals.build(u.n_bars, long_entry=le)
    r = run_portfolio(u, sig, BacktestConfig(initial_cash=1000, size_value=0.5),
                      max_positions=3)
    # 500 -> 50 units of S0; 500 -> 25 units of S1; no cash left for S2
    assert r.instrument.tolist() == [0, 1]
    assert r.trades.size.tolist() == [50.0, 25.0]
    assert r.final_equity == pytest.approx(1000)
    assert r.exposure == pytest.approx(3 / 4)


def test_union_timestamps_and_marking_at_last_close() -> None:
    a = BarSeries("A", np.array([0, 2, 4], dtype=np.int64) * DAY, *(np.array([10.0, 20, 30]),) * 4,
                  np.ones(3))
    b = BarSeries("B", np.array([1, 2, 3], dtype=np.int64) * DAY, *(np.array([5.0, 5, 5]),) * 4,
                  np.ones(3))
    u = BarUniverse.from_series([a, b])
    le = np.zeros(6, bool)
    le[0] = True
    r = run_portfolio(u, Signals.build(6, long_entry=le), BacktestConfig(initial_cash=100),
                      max_positions=1)
    assert r.times.tolist() == [t * DAY for t in range(5)]
    # 10 units of A at 10; A has no bar at days 1 and 3, so it is marked at its last close
    assert r.equity.tolist() == [100, 100, 200, 200, 300]
    m = r.metrics(252)
    assert m.total_return == pytest.approx(2.0)
    assert m.buy_and_hold_return == pytest.approx((2.0 + 0.0) / 2)


def test_portfolio_validates_its_inputs(universe: BarUniverse) -> None:
    sig = sma_signals(universe)
    with pytest.raises(BadInputError):
        run_portfolio(universe, sig, CONFIG, max_positions=0)
    with pytest.raises(BadInputError):
        run_portfolio(universe, sig, CONFIG, max_positions=2, score=np.zeros(3))


def test_risk_sizing_reads_each_instruments_own_atr(universe: BarUniverse) -> None:
    config = BacktestConfig(sizing="risk", size_value=0.01, atr_multiple=2.0, whole_units=False)
    atr = np.concatenate([talib.ATR(s.high, s.low, s.close, 14) if len(s) > 14 else
                          np.full(len(s), np.nan) for s in universe])
    result = run_universe(universe, sma_signals(universe), config, atr=atr)
    for i, s in enumerate(universe):
        if len(s) <= 14:
            continue
        sig = Signals.crossover(talib.SMA(s.close, 5), talib.SMA(s.close, 20))
        a, b = universe.offsets[i], universe.offsets[i + 1]
        single = run_backtest(s.open, s.high, s.low, s.close, sig, config, atr=atr[a:b])
        assert np.array_equal(result.trades_of(i).size, single.trades.size)
        assert result.final_equity[i] == single.final_equity
    with pytest.raises(BadInputError, match="ATR"):
        run_universe(universe, sma_signals(universe), config)
