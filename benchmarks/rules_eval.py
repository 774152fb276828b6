"""Rule evaluation over a whole universe vs. raw TA-Lib computing the same indicators.

The rule uses five indicators (sma 10, sma 30, rsi 14, adx 14, atr 14). The reference is a
plain Python loop calling TA-Lib for those five indicators on each symbol's slice, results
discarded. The evaluator does that work too, plus crosses, comparisons, and/or and the
default score, and returns entry/exit arrays for every bar. It is timed twice: keeping the
indicator values at signal bars (the default, what signal records need) and at every bar
(``values="all"``: five 100 MB arrays written to fresh memory). Data is synthetic and in
memory (the storage load is measured elsewhere).

Runs alternate (reference, evaluator, reference, ...) after one warm-up run of each, and the
best of --repeat is kept, both as wall time and as this process's CPU time: on a shared,
busy machine CPU time is the steadier figure.

    .venv/bin/python benchmarks/rules_eval.py [--symbols 5000] [--bars 2520] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
from collections.abc import Callable

import numpy as np
import talib

from signalfactory.domain.bars import BarUniverse
from signalfactory.domain.rules import check_rule, evaluate

RULE = """
entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70 and adx(14) > 20
exit: crosses_below(sma(close, 10), sma(close, 30)) or close < sma(close, 30) - 2 * atr(14)
"""


def synthetic_universe(n_symbols: int, n_bars: int, seed: int = 7) -> BarUniverse:
    rng = np.random.default_rng(seed)
    total = n_symbols * n_bars
    rets = rng.normal(0.0003, 0.015, (n_symbols, n_bars))
    start = np.exp(rng.uniform(np.log(5.0), np.log(500.0), (n_symbols, 1)))
    close = (start * np.exp(np.cumsum(rets, axis=1))).reshape(total)
    spread = np.abs(rng.normal(0.0, 0.01, total))
    open_ = close * (1.0 + rng.normal(0.0, 0.003, total))
    high = np.maximum(open_, close) * (1.0 + spread)
    low = np.minimum(open_, close) * (1.0 - spread)
    volume = np.round(rng.lognormal(13.0, 0.5, total))
    offsets = np.arange(n_symbols + 1, dtype=np.int64) * n_bars
    ts = np.tile(np.arange(n_bars, dtype=np.int64) * 86_400_000_000_000, n_symbols)
    return BarUniverse(symbols=tuple(f"S{i:05d}" for i in range(n_symbols)), offsets=offsets,
                       ts=ts, open=open_, high=high, low=low, close=close, volume=volume)


def raw_talib(universe: BarUniverse) -> None:
    """The reference: five TA-Lib calls per symbol in a Python loop; results discarded."""
    high, low, close = universe.high, universe.low, universe.close
    bounds = universe.offsets.tolist()
    for a, b in itertools.pairwise(bounds):
        h, lo, c = high[a:b], low[a:b], close[a:b]
        talib.SMA(c, 10)
        talib.SMA(c, 30)
        talib.RSI(c, 14)
        talib.ADX(h, lo, c, 14)
        talib.ATR(h, lo, c, 14)


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--block-rows", type=int, default=None,
                        help="evaluator block size in rows (default: the library's); "
                             "0 = the whole universe in one block")
    args = parser.parse_args()

    universe = synthetic_universe(args.symbols, args.bars)
    rule = check_rule(RULE)
    options: dict[str, int | None] = {}
    if args.block_rows is not None:
        options["block_rows"] = args.block_rows or None

    def run_rule() -> object:
        return evaluate(rule, universe, **options)  # type: ignore[arg-type]

    def run_rule_all() -> object:
        return evaluate(rule, universe, values="all", **options)  # type: ignore[arg-type]

    print(f"rule evaluation: {args.symbols} symbols x {args.bars} bars "
          f"({universe.n_bars:,} bars), five indicators")
    print(RULE.strip())
    runs = {"raw TA-Lib loop": lambda: raw_talib(universe),
            "evaluator, values at signals": run_rule,
            "evaluator, values at all bars": run_rule_all}
    for fn in runs.values():
        fn()  # warm-up: numba, first-touch memory
    best = {name: [np.inf, np.inf] for name in runs}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            wall, cpu = measure(fn)
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]

    result = evaluate(rule, universe, values="all")
    last = universe.n_instruments - 1
    np.testing.assert_allclose(result.values["rsi(close, 14)"][result.rows(last)],
                               talib.RSI(universe.series(last).close, 14), equal_nan=True)

    raw_wall, raw_cpu = best["raw TA-Lib loop"]
    print(f"{'':32}{'wall s':>8}{'cpu s':>8}{'ratio wall':>12}{'ratio cpu':>11}")
    for name, (wall, cpu) in best.items():
        print(f"{name:32}{wall:8.3f}{cpu:8.3f}{wall / raw_wall:12.2f}{cpu / raw_cpu:11.2f}")
    print(f"signals: {int(result.entry.sum()):,} entries, {int(result.exit.sum()):,} exits")


if __name__ == "__main__":
    main()
