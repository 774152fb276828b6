"""Cross-checks against backtesting.py and vectorbt (dev-only dependencies).

An SMA(10)/SMA(30) crossover, all-in with whole units, commission on each order, filled on the
signal bar's close, must produce the same trades (entry/exit bars, signed sizes) and the same
final equity (1e-6 relative) in all three engines: long-only, and long/short with flips.

Each engine derives its own signals (backtesting.py: pandas rolling means and
``lib.crossover``; vectorbt: ``MA.run`` and ``ma_crossed_above/below``; ours: TA-Lib and
`Signals.crossover`), so the signal definitions are cross-checked too. Reference settings:

- backtesting.py: ``trade_on_close=True`` (market orders fill at the signal bar's close),
  ``exclusive_orders=True`` (a new order closes the open position first: the flip),
  default ``size`` (all available cash in whole units), ``finalize_trades=False`` (the last
  trade stays open and equity is marked at the last close, as ours without ``close_at_end``).
  It never fills a signal on the very last bar (there is no later bar to process it), so the
  series used here have none.
- vectorbt: ``Portfolio.from_signals`` with ``size=np.inf``, ``size_granularity=1``, ``fees``,
  ``accumulate=False`` and short entries/exits for the flips (vectorbt 1.2 sizes an infinite
  short from the free cash, i.e. all in).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import talib

from signalfactory.domain.backtest import BacktestConfig, ExitReason, Signals, run_backtest

backtesting = pytest.importorskip("backtesting")
vbt = pytest.importorskip("vectorbt")

from backtesting import Backtest, Strategy  # noqa: E402
from backtesting.lib import crossover  # noqa: E402
from backtesting.test import GOOG  # noqa: E402

FAST, SLOW = 10, 30
CASH = 10_000.0


def sma(values: pd.Series, n: int) -> pd.Series:
    return pd.Series(values).rolling(n).mean()


class SmaLong(Strategy):
    def init(self) -> None:
        self.fast = self.I(sma, self.data.Close, FAST)
        self.slow = self.I(sma, self.data.Close, SLOW)

    def next(self) -> None:
        if crossover(self.fast, self.slow):
            self.buy()
        elif crossover(self.slow, self.fast):
            self.position.close()


class SmaFlip(SmaLong):
    def next(self) -> None:
        if crossover(self.fast, self.slow):
            self.buy()
        elif crossover(self.slow, self.fast):
            self.sell()


def synthetic(seed: int, n: int = 1_500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, n))), 2)
    open_ = np.round(close * np.exp(rng.normal(0, 0.01, n)), 2)
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    index = pd.date_range("2015-01-01", periods=n, freq="D")
    return pd.DataFrame({"Open": open_, "High": high, "Low": low, "Close": close,
                         "Volume": 1.0}, index=index)


DATASETS = {"GOOG": GOOG, "synthetic-1": synthetic(1), "synthetic-2": synthetic(2),
            "synthetic-3": synthetic(3, 2_000)}


def ours(df: pd.DataFrame, direction: str, fee: float):
    close = df.Close.to_numpy(dtype=float)
    sig = Signals.crossover(talib.SMA(close, FAST), talib.SMA(close, SLOW))
    assert not (sig.long_entry[-1] or sig.short_entry[-1]), "pick data without a last-bar signal"
    config = BacktestConfig(direction=direction, fee_pct=fee, initial_cash=CASH)  # type: ignore[arg-type]
    return run_backtest(df.Open, df.High, df.Low, close, sig, config)


@pytest.mark.parametrize("fee", [0.0, 0.002])
@pytest.mark.parametrize("direction", ["long", "both"])
@pytest.mark.parametrize("name", list(DATASETS))
def test_same_trades_and_equity_as_backtesting_py(name: str, direction: str, fee: float) -> None:
    df = DATASETS[name]
    mine = ours(df, direction, fee)
    bt = Backtest(df, SmaLong if direction == "long" else SmaFlip, cash=CASH, commission=fee,
                  trade_on_close=True, exclusive_orders=True, finalize_trades=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = bt.run()
    closed = stats["_trades"]
    still_open = stats["_strategy"].trades
    ref_entry = [*closed.EntryBar.tolist(), *(t.entry_bar for t in still_open)]
    ref_exit = closed.ExitBar.tolist()
    ref_size = [*closed.Size.tolist(), *(t.size for t in still_open)]
    t = mine.trades
    assert t.entry_idx.tolist() == ref_entry
    is_open = t.reason == ExitReason.OPEN
    assert t.exit_idx[~is_open].tolist() == ref_exit
    assert int(is_open.sum()) == len(still_open)
    assert t.size.tolist() == ref_size
    assert np.allclose(t.pnl[~is_open], closed.PnL.to_numpy(), rtol=1e-9)
    assert mine.final_equity == pytest.approx(stats["Equity Final [$]"], rel=1e-6)
    # backtesting.py processes a trade_on_close order in the next bar's step and only then
    # charges its commission, so on a fill bar its curve still lacks that bar's fees; every
    # other bar must agree (all bars when there is no commission).
    ref_equity = stats["_equity_curve"].Equity.to_numpy()
    same = np.ones(len(df), dtype=bool)
    if fee:
        same[t.entry_idx] = False
        same[t.exit_idx[~is_open]] = False
    assert np.allclose(mine.equity[same], ref_equity[same], rtol=1e-6)


@pytest.mark.parametrize("fee", [0.0, 0.002])
@pytest.mark.parametrize("direction", ["long", "both"])
@pytest.mark.parametrize("name", list(DATASETS))
def test_same_trades_and_equity_as_vectorbt(name: str, direction: str, fee: float) -> None:
    df = DATASETS[name]
    mine = ours(df, direction, fee)
    close = df.Close
    fast = vbt.MA.run(close, FAST)
    slow = vbt.MA.run(close, SLOW)
    up, down = fast.ma_crossed_above(slow), fast.ma_crossed_below(slow)
    shorts = {"short_entries": down, "short_exits": up} if direction == "both" else {}
    pf = vbt.Portfolio.from_signals(close, up, down, init_cash=CASH, size=np.inf,
                                    size_granularity=1, fees=fee, accumulate=False,
                                    **shorts)
    rec = pf.trades.records
    sign = np.where(rec["direction"] == 0, 1.0, -1.0)
    t = mine.trades
    assert t.entry_idx.tolist() == rec["entry_idx"].tolist()
    is_open = t.reason == ExitReason.OPEN
    assert t.exit_idx[~is_open].tolist() == rec["exit_idx"][rec["status"] == 1].tolist()
    assert t.size.tolist() == (sign * rec["size"]).tolist()
    assert np.allclose(t.pnl, rec["pnl"], rtol=1e-9)
    assert mine.final_equity == pytest.approx(float(pf.final_value()), rel=1e-6)
    assert np.allclose(mine.equity, pf.value().to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", ["GOOG", "synthetic-2"])
def test_fixed_fees_and_slippage_match_vectorbt(name: str) -> None:
    """Costs beyond the issue's minimum: per-order fixed fees and adverse slippage."""
    df = DATASETS[name]
    close = df.Close.to_numpy(dtype=float)
    sig = Signals.crossover(talib.SMA(close, FAST), talib.SMA(close, SLOW))
    config = BacktestConfig(fee_pct=0.001, fee_fixed=2.5, slippage_bps=10, initial_cash=CASH)
    mine = run_backtest(df.Open, df.High, df.Low, close, sig, config)
    pf = vbt.Portfolio.from_signals(df.Close, sig.long_entry, sig.long_exit, init_cash=CASH,
                                    size=np.inf, size_granularity=1, fees=0.001,
                                    fixed_fees=2.5, slippage=0.001)
    rec = pf.trades.records
    assert mine.trades.entry_idx.tolist() == rec["entry_idx"].tolist()
    assert mine.trades.size.tolist() == rec["size"].tolist()
    assert mine.final_equity == pytest.approx(float(pf.final_value()), rel=1e-6)
