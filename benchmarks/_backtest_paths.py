"""The end-to-end paths that benchmarks/backtest.py times, one module for warm and cold runs.

Each case has a data builder (numpy arrays only, saved to / loaded from an ``.npz`` so a
fresh process gets the same bars without generating them), one function per side that runs
the whole path and returns what the checks compare (trade counts and final equities, one
per backtest), and nothing else shared between the sides. Imports of either side's library
happen inside its functions, so a fresh process started for one side (``python
_backtest_paths.py CASE SIDE DATA.npz``) pays that side's imports and first call only: this
is the cold figure.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

# numba's OpenMP workers spin-wait after each parallel region by default; on a 2-core box that
# steals the core the next (serial) step needs. Passive waiting must be chosen before the
# OpenMP runtime starts (see the closing note of issue 4).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import numpy.typing as npt

CASH = 10_000.0
# A deliberately wrong engine (--wrong-engine): ours charges this much more fee per side,
# which the agreement checks must catch.
WRONG_FEE_DELTA = 0.0001
CASES = ("single", "universe", "sweep", "goog")
SIDES = ("ours", "ref")

Data = dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class Outcome:
    """What both sides must agree on: per backtest, the trade count and the final equity."""

    n_trades: npt.NDArray[np.int64]
    final_equity: npt.NDArray[np.float64]


def drop_last_trade(out: Outcome) -> Outcome:
    """A wrong engine for --wrong-engine last-trade: one trade fewer in every backtest."""
    return Outcome(np.maximum(out.n_trades - 1, 0), out.final_equity)


def prices(rng: np.random.Generator, n: int, vol: float = 0.001) -> tuple[np.ndarray, ...]:
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0, vol / 4, n))
    high = np.maximum(open_, close) * (1 + vol)
    low = np.minimum(open_, close) * (1 - vol)
    return open_, high, low, close


def data_single(n: int) -> Data:
    o, h, lo, c = prices(np.random.default_rng(1), n)
    return {"open": o, "high": h, "low": lo, "close": c}


def data_universe(n_inst: int, n_bars: int) -> Data:
    rng = np.random.default_rng(2)
    rows = [prices(rng, n_bars, 0.02) for _ in range(n_inst)]
    return {k: np.stack([r[i] for r in rows]) for i, k in enumerate(("open", "high", "low",
                                                                     "close"))}


def data_sweep(n: int) -> Data:
    o, h, lo, c = prices(np.random.default_rng(3), n, 0.01)
    return {"open": o, "high": h, "low": lo, "close": c}


def data_goog() -> Data:
    from backtesting.test import GOOG

    out: Data = {k.lower(): GOOG[k].to_numpy(dtype=float)
                 for k in ("Open", "High", "Low", "Close", "Volume")}
    out["ts"] = GOOG.index.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return out


def _config(fee: float, wrong: bool, whole_units: bool = False) -> Any:
    from signalfactory.domain.backtest import BacktestConfig

    # Fractional units keep a random walk trading to the end (with whole units it can price
    # the account out of the market); GOOG uses whole units, as backtesting.py does.
    return BacktestConfig(fee_pct=fee + (WRONG_FEE_DELTA if wrong else 0.0),
                          initial_cash=CASH, whole_units=whole_units)


def _one(n_trades: float, final: float) -> Outcome:
    return Outcome(np.array([int(n_trades)], dtype=np.int64), np.array([float(final)]))


# --- ours -------------------------------------------------------------------------------------

def ours_single(d: Data, fee: float, wrong: bool = False) -> Outcome:
    """SMA(10)/SMA(30) signals, simulation and every metric of `compute_metrics`."""
    import talib

    from signalfactory.domain.backtest import Signals, compute_metrics, run_backtest

    o, h, lo, c = d["open"], d["high"], d["low"], d["close"]
    sig = Signals.crossover(talib.SMA(c, 10), talib.SMA(c, 30))
    result = run_backtest(o, h, lo, c, sig, _config(fee, wrong))
    compute_metrics(result.equity, result.trades, c, 252, initial_cash=CASH)
    return _one(len(result.trades), result.final_equity)


def ours_universe_input(d: Data) -> Any:
    from signalfactory.domain.bars import BarSeries, BarUniverse

    n_inst, n_bars = d["close"].shape
    ts = np.arange(n_bars, dtype=np.int64) * 86_400 * 10**9
    return BarUniverse.from_series([
        BarSeries(f"S{i}", ts, d["open"][i], d["high"][i], d["low"][i], d["close"][i],
                  np.ones(n_bars)) for i in range(n_inst)])


def ours_universe(universe: Any, fee: float, wrong: bool = False) -> Outcome:
    """`run_universe` in one call, signals built per chunk, total return per instrument."""
    import talib

    from signalfactory.domain.backtest import Signals, run_universe
    from signalfactory.domain.backtest.signals import mask_instrument_starts

    def signals(sub: Any) -> Signals:
        # one TA-Lib call per line for the whole chunk; windows straddling two instruments
        # are masked (see mask_instrument_starts)
        fast = mask_instrument_starts(talib.SMA(sub.close, 10), sub.offsets, 9)
        slow = mask_instrument_starts(talib.SMA(sub.close, 30), sub.offsets, 29)
        return Signals.crossover(fast, slow)

    r = run_universe(universe, signals, _config(fee, wrong), with_metrics=False)
    return Outcome(r.column("n_trades").astype(np.int64), r.column("final_equity"))


def sweep_params() -> list[dict[str, float]]:
    from signalfactory.domain.backtest import grid

    params: list[dict[str, float]] = grid(lambda p: p["fast"] < p["slow"], fast=range(5, 51, 5),
                                          slow=range(10, 201, 5))
    return params


def ours_sweep(d: Data, fee: float, wrong: bool = False) -> Outcome:
    """`CrossoverSweeper` over the 345 (fast, slow) pairs, one SMA per distinct window."""
    import talib

    from signalfactory.domain.backtest import SUMMARY_FIELDS, CrossoverSweeper, optimise

    o, h, lo, c = d["open"], d["high"], d["low"], d["close"]
    sweeper = CrossoverSweeper(o, h, lo, c, lambda w: talib.SMA(c, int(w)), _config(fee, wrong))
    summary = optimise(sweeper, sweep_params(), "total_return", 0, len(c)).summary
    return Outcome(summary[:, SUMMARY_FIELDS.index("n_trades")].astype(np.int64),
                   summary[:, SUMMARY_FIELDS.index("final_equity")])


def ours_goog(d: Data, fee: float, wrong: bool = False) -> Outcome:
    """backtesting.py's SMA(10)/SMA(30) example, whole units, with every metric."""
    import talib

    from signalfactory.domain.backtest import Signals, compute_metrics, run_backtest

    o, h, lo, c = d["open"], d["high"], d["low"], d["close"]
    sig = Signals.crossover(talib.SMA(c, 10), talib.SMA(c, 30))
    result = run_backtest(o, h, lo, c, sig, _config(fee, wrong, whole_units=True))
    compute_metrics(result.equity, result.trades, c, 252, initial_cash=CASH)
    # backtesting.py counts closed trades only; a position still open at the end is not one
    return _one(len(result.trades.closed()), result.final_equity)


# --- the references ---------------------------------------------------------------------------

def _vbt_outcome(pf: Any) -> Outcome:
    counts = np.atleast_1d(np.asarray(pf.trades.count(), dtype=np.int64))
    finals = np.atleast_1d(np.asarray(pf.final_value(), dtype=np.float64))
    return Outcome(counts, finals)


def ref_single(d: Data, fee: float) -> Outcome:
    """vectorbt: MA.run x2, crossed above/below, from_signals, total_return."""
    import pandas as pd
    import vectorbt as vbt

    close = pd.Series(d["close"])
    fast, slow = vbt.MA.run(close, 10), vbt.MA.run(close, 30)
    pf = vbt.Portfolio.from_signals(close, fast.ma_crossed_above(slow),
                                    fast.ma_crossed_below(slow), init_cash=CASH,
                                    size=np.inf, fees=fee)
    pf.total_return()
    return _vbt_outcome(pf)


def ref_universe_input(d: Data) -> Any:
    import pandas as pd

    return pd.DataFrame(d["close"].T.copy())


def ref_universe(frame: Any, fee: float) -> Outcome:
    """vectorbt: the same pipeline on a bars x instruments frame."""
    import vectorbt as vbt

    fast, slow = vbt.MA.run(frame, 10), vbt.MA.run(frame, 30)
    pf = vbt.Portfolio.from_signals(frame, fast.ma_crossed_above(slow),
                                    fast.ma_crossed_below(slow), init_cash=CASH,
                                    size=np.inf, fees=fee)
    pf.total_return()
    return _vbt_outcome(pf)


def ref_sweep(d: Data, fee: float) -> Outcome:
    """vectorbt: MA.run with run_unique on the pair columns, crossed, from_signals."""
    import pandas as pd
    import vectorbt as vbt

    params = sweep_params()
    close = pd.Series(d["close"])
    fast = vbt.MA.run(close, [int(p["fast"]) for p in params], short_name="fast",
                      run_unique=True)
    slow = vbt.MA.run(close, [int(p["slow"]) for p in params], short_name="slow",
                      run_unique=True)
    entries = fast.ma_crossed_above(slow.ma.to_numpy())
    exits = fast.ma_crossed_below(slow.ma.to_numpy())
    pf = vbt.Portfolio.from_signals(close, entries, exits, init_cash=CASH, size=np.inf,
                                    fees=fee)
    pf.total_return()
    return _vbt_outcome(pf)


def ref_goog_input(d: Data) -> Any:
    import pandas as pd

    return pd.DataFrame({k.capitalize(): d[k] for k in ("open", "high", "low", "close",
                                                         "volume")},
                        index=pd.to_datetime(d["ts"]))


def ref_goog(frame: Any, fee: float) -> Outcome:
    """backtesting.py: its README's SmaCross strategy, trade on close, exclusive orders."""
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    def sma(values: Any, k: int) -> Any:
        return pd.Series(values).rolling(k).mean()

    class SmaCross(Strategy):
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, 10)
            self.slow = self.I(sma, self.data.Close, 30)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    bt = Backtest(frame, SmaCross, cash=CASH, commission=fee, trade_on_close=True,
                  exclusive_orders=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = bt.run()
    return _one(stats["# Trades"], stats["Equity Final [$]"])


# --- one run in a fresh process (the cold figure) ---------------------------------------------

def run_cold(case: str, side: str, data: Data, fee: float) -> Outcome:
    if case == "single":
        return ours_single(data, fee) if side == "ours" else ref_single(data, fee)
    if case == "universe":
        if side == "ours":
            return ours_universe(ours_universe_input(data), fee)
        return ref_universe(ref_universe_input(data), fee)
    if case == "sweep":
        return ours_sweep(data, fee) if side == "ours" else ref_sweep(data, fee)
    if side == "ours":
        return ours_goog(data, fee)
    return ref_goog(ref_goog_input(data), fee)


if __name__ == "__main__":
    # python _backtest_paths.py CASE SIDE DATA.npz FEE: imports, loads the bars, runs once.
    case_arg, side_arg, path_arg, fee_arg = sys.argv[1:5]
    with np.load(path_arg) as npz:
        loaded = {k: npz[k] for k in npz.files}
    out = run_cold(case_arg, side_arg, loaded, float(fee_arg))
    print(int(out.n_trades.sum()), float(out.final_equity.sum()))
