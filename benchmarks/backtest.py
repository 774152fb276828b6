"""Backtest speed against vectorbt and backtesting.py, side by side in one run.

    .venv/bin/python benchmarks/backtest.py [--quick]

Cases (same data, same settings on both sides: 0.1 % fees, all-in, fractional units except
d; results are checked to agree before timing):

a. one symbol, 1,000,000 bars: SMA(10)/SMA(30) signals + simulation + final metrics
   (ours: every metric of `compute_metrics`; vectorbt: MA.run + crossed + from_signals +
   total_return);
b. a universe of 500 x 2,520 bars in one call, total return per instrument (ours:
   `run_universe`, signals built per chunk with one TA-Lib call per line over the concatenated
   chunk; vectorbt: the same pipeline on a 2,520 x 500 frame); the time with all summary
   metrics per instrument is printed too;
c. the sweep fast 5..50 x slow 10..200 step 5 (345 backtests) on 100,000 bars on all cores
   (ours: `CrossoverSweeper`, 40 SMAs computed once; vectorbt: MA.run with run_unique on the
   pair columns, crossed, from_signals, total_return);
d. backtesting.py's SMA(10)/SMA(30) example on GOOG against ours.

Each side is warmed up first (numba JIT), then timed as the best of several repeats. The
machine may be shared: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

# numba's OpenMP workers spin-wait after each parallel region by default; on a 2-core box that
# steals the core the next (serial) step needs and doubled the universe time here. Passive
# waiting must be chosen before the OpenMP runtime starts, i.e. before numba runs anything
# parallel. Deployments should set it too (see the closing note of issue 4).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
import talib

from signalfactory.domain.backtest import (
    SUMMARY_FIELDS,
    BacktestConfig,
    CrossoverSweeper,
    Signals,
    compute_metrics,
    grid,
    optimise,
    run_backtest,
    run_universe,
)
from signalfactory.domain.backtest.signals import mask_instrument_starts
from signalfactory.domain.bars import BarSeries, BarUniverse

FEE = 0.001
CASH = 10_000.0
# Fractional units keep every run trading to the end (with whole units a random walk can
# price the account out of the market, which leaves little to simulate on either side).
CONFIG = BacktestConfig(fee_pct=FEE, initial_cash=CASH, whole_units=False)


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up: JIT compilation and caches
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def prices(rng: np.random.Generator, n: int, vol: float = 0.001) -> tuple[np.ndarray, ...]:
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0, vol / 4, n))
    high = np.maximum(open_, close) * (1 + vol)
    low = np.minimum(open_, close) * (1 - vol)
    return open_, high, low, close


def line(title: str, ours: float, ref: float, unit: str, amount: float, target: float) -> None:
    ratio = ref / ours
    verdict = "ok" if ratio >= target else "MISSED"
    print(f"{title:<44} ours {amount / ours:>14,.0f} {unit}  ref {amount / ref:>14,.0f} {unit}"
          f"  ratio {ratio:6.1f}x  (target {target:g}x: {verdict})")


def case_single(vbt: Any, n: int, repeats: int) -> None:
    o, h, lo, c = prices(np.random.default_rng(1), n)
    parts: dict[str, float] = {}

    def ours() -> float:
        t0 = time.perf_counter()
        fast, slow = talib.SMA(c, 10), talib.SMA(c, 30)
        t1 = time.perf_counter()
        sig = Signals.crossover(fast, slow)
        t2 = time.perf_counter()
        result = run_backtest(o, h, lo, c, sig, CONFIG)
        t3 = time.perf_counter()
        m = compute_metrics(result.equity, result.trades, c, 252, initial_cash=CASH)
        t4 = time.perf_counter()
        for k, v in (("indicators", t1 - t0), ("signals", t2 - t1), ("simulation", t3 - t2),
                     ("metrics", t4 - t3)):
            parts[k] = min(parts.get(k, v), v)
        return m.total_return

    close = pd.Series(c)

    def ref() -> float:
        fast, slow = vbt.MA.run(close, 10), vbt.MA.run(close, 30)
        pf = vbt.Portfolio.from_signals(close, fast.ma_crossed_above(slow),
                                        fast.ma_crossed_below(slow), init_cash=CASH,
                                        size=np.inf, fees=FEE)
        return float(pf.total_return())

    t_ours, r_ours = best_of(ours, 4 * repeats)  # cheap: more tries at a quiet moment
    t_ref, r_ref = best_of(ref, repeats)
    assert abs(r_ours - r_ref) <= 1e-6 * max(1.0, abs(r_ref)), (r_ours, r_ref)
    line(f"a. one symbol, {n:,} bars", t_ours, t_ref, "bars/s", n, 10)
    print("   ours, where the time goes (ms): "
          + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in parts.items()))


def case_universe(vbt: Any, n_inst: int, n_bars: int, repeats: int) -> None:
    rng = np.random.default_rng(2)
    ts = np.arange(n_bars, dtype=np.int64) * 86_400 * 10**9
    series = [BarSeries(f"S{i}", ts, *prices(rng, n_bars, 0.02), np.ones(n_bars))
              for i in range(n_inst)]
    universe = BarUniverse.from_series(series)

    def signals(sub: BarUniverse) -> Signals:
        # one TA-Lib call per line for the whole chunk; windows straddling two instruments
        # are masked (see mask_instrument_starts)
        fast = mask_instrument_starts(talib.SMA(sub.close, 10), sub.offsets, 9)
        slow = mask_instrument_starts(talib.SMA(sub.close, 30), sub.offsets, 29)
        return Signals.crossover(fast, slow)

    def ours() -> np.ndarray:  # the same deliverable as the reference: total returns
        return run_universe(universe, signals, CONFIG, with_metrics=False).total_return

    frame = pd.DataFrame(universe.close.reshape(n_inst, n_bars).T)

    def ref() -> np.ndarray:
        fast, slow = vbt.MA.run(frame, 10), vbt.MA.run(frame, 30)
        pf = vbt.Portfolio.from_signals(frame, fast.ma_crossed_above(slow),
                                        fast.ma_crossed_below(slow), init_cash=CASH,
                                        size=np.inf, fees=FEE)
        return np.asarray(pf.total_return())

    t_ours, r_ours = best_of(ours, 4 * repeats)  # cheap: more tries at a quiet moment
    t_ref, r_ref = best_of(ref, repeats)
    assert np.allclose(r_ours, r_ref, rtol=1e-6, atol=1e-9)
    line(f"b. universe {n_inst} x {n_bars:,} in one call", t_ours, t_ref, "bars/s",
         n_inst * n_bars, 10)
    t_sig, sig = best_of(lambda: signals(universe), repeats)
    t_run, _ = best_of(lambda: run_universe(universe, sig, CONFIG, with_metrics=False), repeats)
    t_full, _ = best_of(lambda: run_universe(universe, sig, CONFIG), repeats)
    print(f"   ours, where the time goes (ms): signals {t_sig * 1e3:.1f}, simulation "
          f"{t_run * 1e3:.1f}; with all {len(SUMMARY_FIELDS)} summary metrics per instrument "
          f"the simulation step takes {t_full * 1e3:.1f}")


def case_sweep(vbt: Any, n: int, repeats: int) -> None:
    o, h, lo, c = prices(np.random.default_rng(3), n, 0.01)
    params = grid(lambda p: p["fast"] < p["slow"], fast=range(5, 51, 5),
                  slow=range(10, 201, 5))
    def ours() -> np.ndarray:
        sweeper = CrossoverSweeper(o, h, lo, c, lambda w: talib.SMA(c, int(w)), CONFIG)
        return optimise(sweeper, params, "total_return", 0, n).summary[:, 1]

    close = pd.Series(c)
    fast_w = [int(p["fast"]) for p in params]
    slow_w = [int(p["slow"]) for p in params]

    def ref() -> np.ndarray:
        fast = vbt.MA.run(close, fast_w, short_name="fast", run_unique=True)
        slow = vbt.MA.run(close, slow_w, short_name="slow", run_unique=True)
        entries = fast.ma_crossed_above(slow.ma.to_numpy())
        exits = fast.ma_crossed_below(slow.ma.to_numpy())
        pf = vbt.Portfolio.from_signals(close, entries, exits, init_cash=CASH, size=np.inf,
                                        fees=FEE)
        return np.asarray(pf.total_return())

    t_ours, r_ours = best_of(ours, 4 * repeats)  # cheap: more tries at a quiet moment
    t_ref, r_ref = best_of(ref, max(1, repeats // 3))
    assert np.allclose(r_ours, r_ref, rtol=1e-6, atol=1e-9)
    line(f"c. sweep {len(params)} backtests on {n:,} bars", t_ours, t_ref, "backtests/s",
         len(params), 10)


def case_goog(repeats: int) -> None:
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import GOOG

    def sma(values: pd.Series, k: int) -> pd.Series:
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

    c = GOOG.Close.to_numpy(dtype=float)
    o, h, lo = (GOOG[k].to_numpy(dtype=float) for k in ("Open", "High", "Low"))
    config = BacktestConfig(fee_pct=0.002, initial_cash=CASH)  # whole units, as backtesting.py

    def ours() -> float:
        sig = Signals.crossover(talib.SMA(c, 10), talib.SMA(c, 30))
        result = run_backtest(o, h, lo, c, sig, config)
        compute_metrics(result.equity, result.trades, c, 252, initial_cash=CASH)
        return result.final_equity

    def ref() -> float:
        bt = Backtest(GOOG, SmaCross, cash=CASH, commission=0.002, trade_on_close=True,
                      exclusive_orders=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(bt.run()["Equity Final [$]"])

    t_ours, r_ours = best_of(ours, repeats * 20)
    t_ref, r_ref = best_of(ref, repeats)
    assert abs(r_ours - r_ref) <= 1e-6 * r_ref, (r_ours, r_ref)
    ratio = t_ref / t_ours
    print(f"{'d. GOOG SMA(10/30) vs backtesting.py':<44} ours {t_ours * 1e3:10.3f} ms"
          f"        ref {t_ref * 1e3:10.1f} ms            ratio {ratio:6.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    import vectorbt as vbt

    repeats = 1 if args.quick else 5
    load = os.getloadavg()
    print(f"cores {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"vectorbt {vbt.__version__}")
    case_single(vbt, 100_000 if args.quick else 1_000_000, repeats)
    case_universe(vbt, 50 if args.quick else 500, 2_520, repeats)
    case_sweep(vbt, 10_000 if args.quick else 100_000, repeats)
    case_goog(repeats)
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
