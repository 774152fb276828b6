"""What a user feels: CLI start-up and first calls, every figure from a fresh process.

Each case starts a new Python process (``sys.executable``), so imports, numba's cache load,
the migration check and the store's first read are all inside the figure; references run the
same way in the same run and ratios are printed beside them. Median of ``--runs`` processes
(best in brackets); between runs the OS page cache stays warm, as it does for a user.

Targets (issue 15, items 1 and 2):
- ``signalfactory --help`` and ``signalfactory version`` <= 150 ms;
- ``signalfactory scan`` (500 symbols x 2,520 bars) <= 1.5x a plain TA-Lib script that reads
  the same store and computes the same five indicators (its process start included);
- a one-symbol backtest <= 400 ms end to end;
- the first universe load in a fresh process <= 0.15 s (the warm figure beside it).

    .venv/bin/python benchmarks/cli_startup.py [--symbols 500] [--bars 2520] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header

SRC = str(Path(__file__).resolve().parents[1] / "src")
RULE = ("entry: crosses_above(sma(close, 10), sma(close, 30)) and rsi(close, 14) < 70 "
        "and atr(14) > 0 and close > ema(close, 50)")

# The reference: what a user would write by hand against the same store. It lists the
# registered segments with the stdlib sqlite3, maps the Arrow file, computes the five
# indicators of RULE per symbol with TA-Lib, evaluates the rule on the last bar and ranks.
PLAIN_TALIB = r"""
import sqlite3, sys
import numpy as np, pyarrow as pa, pyarrow.ipc as ipc, talib
home = sys.argv[1]
db = sqlite3.connect(home + "/signalfactory.db")
rels = [r[0] for r in db.execute(
    "select path from bar_segments where timeframe='1d' order by id")]
assert len(rels) == 1, rels
t = ipc.open_file(pa.memory_map(home + "/data/bars/" + rels[0], "r")).read_all()
inst, close, high, low = (t.column(c).to_numpy() for c in ("instrument_id", "close", "high",
                                                             "low"))
starts = np.concatenate(([0], np.flatnonzero(inst[1:] != inst[:-1]) + 1, [len(inst)]))
names = dict(db.execute("select id, symbol from instruments"))
hits = []
for a, b in zip(starts[:-1], starts[1:]):
    c, h, lo = close[a:b], high[a:b], low[a:b]
    f, s = talib.SMA(c, 10), talib.SMA(c, 30)
    rsi, atr, ema = talib.RSI(c, 14), talib.ATR(h, lo, c, 14), talib.EMA(c, 50)
    if f[-1] > s[-1] and f[-2] <= s[-2] and rsi[-1] < 70 and atr[-1] > 0 and c[-1] > ema[-1]:
        hits.append((rsi[-1], names[int(inst[a])]))
hits.sort()
print(len(starts) - 1, "instruments", len(hits), "signals", hits[:50])
"""

FIRST_LOAD = r"""
import time
t0 = time.perf_counter()
from signalfactory.bootstrap import build_platform
from signalfactory.domain.timeframes import Timeframe
from signalfactory.services.marketdata.bars import load_universe
t_import = time.perf_counter() - t0
platform = build_platform()
d1 = Timeframe.parse("1d")
t1 = time.perf_counter(); u = load_universe(platform, d1); first = time.perf_counter() - t1
t2 = time.perf_counter(); load_universe(platform, d1); warm = time.perf_counter() - t2
print(f"{t_import:.6f} {first:.6f} {warm:.6f} {len(u.symbols)}")
platform.close()
"""

FIRST_KERNEL = r"""
import time
import numpy as np
t0 = time.perf_counter()
from signalfactory.domain.backtest import BacktestConfig, Signals, run_backtest
t_import = time.perf_counter() - t0
rng = np.random.default_rng(1)
c = 100 + np.cumsum(rng.normal(0, 1, 2520))
sig = Signals.build(2520, long_entry=rng.random(2520) < 0.05, long_exit=rng.random(2520) < 0.05)
t1 = time.perf_counter(); run_backtest(c, c + 1, c - 1, c, sig, BacktestConfig())
first = time.perf_counter() - t1
t2 = time.perf_counter(); run_backtest(c, c + 1, c - 1, c, sig, BacktestConfig())
warm = time.perf_counter() - t2
print(f"{t_import:.6f} {first:.6f} {warm:.6f}")
"""


def run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    # argv is built in this script from sys.executable and fixed arguments
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def cold(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median and best wall time of ``runs`` fresh processes."""
    times = [run(argv, env)[0] for _ in range(runs)]
    return statistics.median(times), min(times)


def line(label: str, fig: tuple[float, float], note: str = "") -> None:
    print(f"{label:<52}: {fig[0] * 1000:8.1f} ms  (best {fig[1] * 1000:7.1f}){note}")


def verdict(value: float, target: float) -> str:
    return "MET" if value <= target else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=2520)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "SIGNALFACTORY_HOME": str(home), "NUMBA_CACHE_DIR": str(Path(tmp) / "numba")}
        sf = [py, "-m", "signalfactory"]
        run([*sf, "sample", "--symbols", str(args.symbols), "--bars", str(args.bars)], env)
        # One untimed pass of each path, so numba's on-disk cache is filled as after install.
        run([*sf, "scan", "--rule", RULE, "--top", "50", "--json"], env)
        run([*sf, "backtest", "--rule", RULE, "--symbol", "SAAA", "--fees", "0.0001"], env)

        header(f"fresh process each; median of {args.runs} (best)")
        t_pass = cold([py, "-c", "pass"], env, args.runs)
        line("python -c pass (reference)", t_pass)
        t_help = cold([*sf, "--help"], env, args.runs)
        line("signalfactory --help", t_help, f"  target <= 150 ms: {verdict(t_help[0], .15)}")
        t_version = cold([*sf, "version"], env, args.runs)
        line("signalfactory version", t_version,
             f"  target <= 150 ms: {verdict(t_version[0], .15)}")

        header(f"scan, {args.symbols} symbols x {args.bars} bars, five indicators")
        t_plain = cold([py, "-c", PLAIN_TALIB, str(home)], env, args.runs)
        line("plain TA-Lib script on the same store (reference)", t_plain)
        t_scan = cold([*sf, "scan", "--rule", RULE, "--top", "50", "--json"], env, args.runs)
        ratio = t_scan[0] / t_plain[0]
        line("signalfactory scan --rule ... --top 50", t_scan,
             f"  ratio {ratio:.2f} (target <= 1.5: {verdict(ratio, 1.5)})")

        header("one-symbol backtest, 2,520 bars (a new fee each run: never a stored result)")
        times = [run([*sf, "backtest", "--rule", RULE, "--symbol", "SAAB",
                      "--fees", f"0.000{i + 2}"], env)[0] for i in range(args.runs)]
        t_bt = statistics.median(times), min(times)
        line("signalfactory backtest --symbol SAAB", t_bt,
             f"  target <= 400 ms: {verdict(t_bt[0], .4)}")

        header("first calls inside a fresh process (in-process timers)")
        loads = [[float(x) for x in run([py, "-c", FIRST_LOAD], env)[1].split()]
                 for _ in range(args.runs)]
        first = statistics.median(r[1] for r in loads)
        print(f"{'imports for a universe load':<52}: "
              f"{statistics.median(r[0] for r in loads) * 1000:8.1f} ms")
        print(f"{'first universe load, fresh process':<52}: {first * 1000:8.1f} ms  "
              f"target <= 150 ms: {verdict(first, .15)}")
        print(f"{'second universe load, same process (warm)':<52}: "
              f"{statistics.median(r[2] for r in loads) * 1000:8.1f} ms")
        kernels = [[float(x) for x in run([py, "-c", FIRST_KERNEL], env)[1].split()]
                   for _ in range(args.runs)]
        print(f"{'import of the backtest engine (numba)':<52}: "
              f"{statistics.median(r[0] for r in kernels) * 1000:8.1f} ms")
        print(f"{'first run_backtest call, fresh process':<52}: "
              f"{statistics.median(r[1] for r in kernels) * 1000:8.1f} ms")
        print(f"{'second run_backtest call (warm)':<52}: "
              f"{statistics.median(r[2] for r in kernels) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
